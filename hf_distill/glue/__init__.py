"""GLUE (Wang et al. 2018): the task table, data loading and tokenisation, offline metrics, evaluation per split.

- `hf_distill.glue.tasks`: `GlueTask`, `GLUE_TASKS`, `get_task`, `main_metric`, `GLUE_CITATION`;
- `hf_distill.glue.data`: `load_glue` (Hub, local GLUE folder or user files) and `tokenize_glue`;
- `hf_distill.glue.metrics`: `compute_glue_metrics`, `make_compute_metrics` (and a local `evaluate` module);
- `hf_distill.glue.evaluation`: `evaluate_splits`, `score_model` (any model) and `predict_test_splits` (`run_glue.py`'s
  prediction files).
"""

from .data import load_glue, tokenize_glue, tokenize_transfer_set
from .evaluation import evaluate_splits, predict_test_splits, prediction_file_name, score_model
from .metrics import GLUE_METRIC_PATH, compute_glue_metrics, make_compute_metrics
from .tasks import GLUE_CITATION, GLUE_TASKS, HUB_DATASET, GlueTask, get_task, main_metric

__all__ = [
    "GLUE_CITATION",
    "GLUE_METRIC_PATH",
    "GLUE_TASKS",
    "HUB_DATASET",
    "GlueTask",
    "compute_glue_metrics",
    "evaluate_splits",
    "get_task",
    "load_glue",
    "main_metric",
    "make_compute_metrics",
    "predict_test_splits",
    "prediction_file_name",
    "score_model",
    "tokenize_glue",
    "tokenize_transfer_set",
]

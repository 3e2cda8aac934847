"""GLUE metrics, computed offline with scikit-learn and SciPy.

`evaluate.load("glue", ...)` fetches a metric script from the Hub and so fails offline. The keys and values here are
those of the `glue` metric in `evaluate`, plus the `combined_score` that transformers' `run_glue.py` reports for tasks
with two metrics. The same computation is also packaged as a local `evaluate` metric module (`glue_metric.py`, loaded
with `evaluate.load(hf_distill.glue.GLUE_METRIC_PATH, task)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef
from transformers import (
    EvalPrediction,
)
from transformers.utils import logging

from .tasks import GlueTask, get_task

logger = logging.get_logger(__name__)

# `evaluate.load(GLUE_METRIC_PATH, task)`: the same metric as a local `evaluate` module (`glue_metric.py`).
GLUE_METRIC_PATH = str(Path(__file__).with_name("glue_metric.py"))


def compute_glue_metrics(
    task: str | GlueTask, predictions: Iterable[float] | np.ndarray, labels: Iterable[float] | np.ndarray
) -> dict[str, float]:
    """Compute the GLUE metrics of `task` offline, with the keys of `evaluate`'s `glue` metric.

    - CoLA: `matthews_correlation`;
    - STS-B: `pearson`, `spearmanr` and their mean `combined_score`;
    - MRPC, QQP: `accuracy`, `f1` (of the positive class 1, "equivalent" / "duplicate") and their mean
      `combined_score`;
    - SST-2, MNLI, QNLI, RTE, WNLI: `accuracy`.

    Args:
        task (`str` or `GlueTask`): the task.
        predictions (array-like of shape `(num_examples,)`):
            Predicted class ids, or predicted scores for STS-B. Logits must be reduced first (`make_compute_metrics`
            does it).
        labels (array-like of shape `(num_examples,)`): the reference class ids or scores.

    Returns:
        `dict[str, float]`: the metrics. A correlation is `nan` when either input is constant.
    """
    task = get_task(task)
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape:
        raise ValueError(
            f"predictions and labels must be 1-D arrays of equal length, got shapes {predictions.shape} and "
            f"{labels.shape}; reduce logits with argmax (or use make_compute_metrics) first."
        )
    if predictions.size == 0:
        raise ValueError("Cannot compute GLUE metrics on zero examples.")

    if task.main_metric == "pearson":
        result = {
            "pearson": float(pearsonr(predictions, labels)[0]),
            "spearmanr": float(spearmanr(predictions, labels)[0]),
        }
    elif task.main_metric == "matthews_correlation":
        return {"matthews_correlation": float(matthews_corrcoef(labels, predictions))}
    else:
        result = {"accuracy": float(np.mean(predictions == labels))}
        if task.main_metric == "f1":
            # zero_division=0.0 is sklearn's default value, made explicit to silence its warning.
            result["f1"] = float(f1_score(labels, predictions, zero_division=0.0))
        else:
            return result
    result["combined_score"] = float(np.mean(list(result.values())))
    return result


def make_compute_metrics(task: str | GlueTask) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a `compute_metrics` function for `Trainer` that turns model outputs into `compute_glue_metrics`.

    Args:
        task (`str` or `GlueTask`): the task.

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`: takes the `EvalPrediction` of an evaluation loop whose
        predictions are logits of shape `(num_examples, num_labels)` (argmax is taken) or, for STS-B, scores of shape
        `(num_examples, 1)` or `(num_examples,)`. When the model returns several outputs, the logits are the first.
    """
    task = get_task(task)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            # Models that also return hidden states or attentions put the logits first.
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        labels = eval_prediction.label_ids
        labels = np.asarray(labels[0] if isinstance(labels, (tuple, list)) else labels)
        if predictions.ndim != 2 or predictions.shape[-1] != task.num_labels:
            if not (task.is_regression and predictions.ndim == 1):
                raise ValueError(
                    f"{task.name} expects predictions of shape (num_examples, {task.num_labels}), got "
                    f"{predictions.shape}; check the model's num_labels."
                )
        if task.is_regression:
            predictions = predictions.reshape(-1)
        else:
            predictions = np.argmax(predictions, axis=-1)
        return compute_glue_metrics(task, predictions, labels)

    return compute_metrics

"""Evaluation and prediction over a task's splits: metrics per validation split, `run_glue.py`'s prediction files."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from transformers import (
    Trainer,
)
from transformers.utils import logging

from .tasks import GlueTask

logger = logging.get_logger(__name__)


def evaluate_splits(trainer: Trainer, eval_sets: dict[str, Dataset]) -> dict[str, float]:
    """Evaluate on each validation split; MNLI's two splits get their own metric keys.

    Args:
        trainer (`Trainer`): A trainer whose `compute_metrics` computes the GLUE metrics. Under several processes the
            predictions are gathered over the whole split before the metrics are computed.
        eval_sets (`dict[str, Dataset]`): Validation splits by name.

    Returns:
        `dict[str, float]`: Metrics keyed `eval_<metric>`, or `eval_<split>_<metric>` when there are several splits.
    """
    metrics: dict[str, float] = {}
    for split, dataset in eval_sets.items():
        prefix = "eval" if len(eval_sets) == 1 else f"eval_{split}"
        metrics.update(trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix))
    return metrics


def prediction_file_name(task: GlueTask, split: str) -> str:
    """`run_glue.py`'s file name for a split's predictions: `predict_results_<task>.txt`, MNLI mismatched `-mm`."""
    suffix = "-mm" if split.endswith("mismatched") else ""
    return f"predict_results_{task.name}{suffix}.txt"


def predict_test_splits(
    trainer: Trainer, test_sets: dict[str, Dataset], task: GlueTask, output_dir: str | Path
) -> list[Path]:
    """Predict each test split with the student and write `run_glue.py`'s files: a header `index\\tprediction`, then
    one row per example, the label name for classification tasks and the score (3 decimals) for STS-B.

    The `label` column (-1 on unlabelled test rows) is dropped first, so no loss is computed on it. Only the main
    process writes. Returns the files written (empty on other processes).
    """
    written = []
    for split, dataset in test_sets.items():
        rows = dataset.remove_columns([c for c in ("label", "idx") if c in dataset.column_names])
        predictions = trainer.predict(rows, metric_key_prefix=f"predict_{split}").predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        if not trainer.is_world_process_zero():
            continue
        values = predictions.squeeze(-1) if task.is_regression else predictions.argmax(-1)
        path = Path(output_dir) / prediction_file_name(task, split)
        lines = ["index\tprediction"]
        for index, value in enumerate(values.tolist()):
            lines.append(f"{index}\t{value:3.3f}" if task.is_regression else f"{index}\t{task.label_names[value]}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        logger.info("Wrote %d predictions of %s to %s", len(values), split, path)
        written.append(path)
    return written

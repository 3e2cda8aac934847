"""Evaluation and prediction over a task's splits: metrics per validation split (of a `Trainer`'s model or of any
model, int8 and ONNX Runtime included), `run_glue.py`'s prediction files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import (
    EvalPrediction,
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


def score_model(
    model: Callable[..., Any],
    eval_sets: dict[str, Dataset],
    *,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    compute_metrics: Callable[[EvalPrediction], dict[str, float]],
    batch_size: int = 64,
) -> dict[str, float]:
    """Evaluate any model that maps a batch to logits, `Trainer` or not: an int8 or ONNX Runtime model
    (`hf_distill.quantize`, `hf_distill.OnnxModel`) as well as a PyTorch one, with the keys of `evaluate_splits`.

    Batches are padded by `data_collator`; only the columns the collator turns into tensors and the model takes are
    passed (`labels` and `idx` are held back, so no loss is computed). A PyTorch module runs in eval mode under
    `torch.inference_mode()` on its own device, and its training flag is restored afterwards.

    Args:
        model (`Callable`): A module or callable taking `input_ids`, `attention_mask` (and `token_type_ids` when the
            tokenizer makes them) and returning an output with `logits` (or the logits themselves).
        eval_sets (`dict[str, Dataset]`): Tokenised validation splits with a `label` column, by name.
        data_collator (`Callable`): Pads a list of rows into a batch of tensors (e.g. `DataCollatorWithPadding`).
        compute_metrics (`Callable`): E.g. `make_compute_metrics(task)`.
        batch_size (`int`, *optional*, defaults to 64): Rows per forward pass.

    Returns:
        `dict[str, float]`: Metrics keyed `eval_<metric>`, or `eval_<split>_<metric>` when there are several splits.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    is_module = isinstance(model, nn.Module)
    was_training = model.training if is_module else False
    parameter = next(model.parameters(), None) if is_module else None
    device = parameter.device if parameter is not None else torch.device("cpu")
    inputs = {"input_ids", "attention_mask", "token_type_ids"}
    metrics: dict[str, float] = {}
    try:
        if is_module:
            model.eval()
        for split, dataset in eval_sets.items():
            prefix = "eval" if len(eval_sets) == 1 else f"eval_{split}"
            columns = [c for c in dataset.column_names if c in inputs]
            logits, labels = [], []
            for start in range(0, len(dataset), batch_size):
                rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
                batch = data_collator([{c: row[c] for c in columns} for row in rows])
                with torch.inference_mode():
                    output = model(**{key: value.to(device) for key, value in batch.items()})
                output = getattr(output, "logits", output)
                if not isinstance(output, torch.Tensor):
                    raise ValueError(
                        f"{type(model).__name__} returned no logits (got {type(output).__name__}), so it cannot be "
                        "scored; pass a model with a task head (AutoModelForSequenceClassification)"
                    )
                logits.append(output.float().cpu().numpy())
                labels.append(np.asarray(rows["label"]))
            prediction = EvalPrediction(predictions=np.concatenate(logits), label_ids=np.concatenate(labels))
            metrics.update({f"{prefix}_{key}": value for key, value in compute_metrics(prediction).items()})
    finally:
        if is_module:
            model.train(was_training)
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

"""Compression after distillation: a distilled student taken further by head pruning (with optional recovery
distillation from the unpruned student) and int8, each variant saved and scored, for the report and the recipe.

The methods themselves live in their own modules (`head_pruning`, `quantization`, `onnx_export`); this one chains
them and checks the flags that ask for them before any work starts.
"""

from __future__ import annotations

import copy
import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import EvalPrediction, PreTrainedModel
from transformers.utils import logging

from .arguments import DistillationTrainingArguments
from .glue.evaluation import score_model
from .head_pruning import SUPPORTED_MODEL_TYPES as PRUNABLE_MODEL_TYPES
from .head_pruning import head_importance, heads_to_prune, prune_heads
from .measure import count_parameters, size_on_disk
from .quantization import BACKENDS, check_backend, quantize, save_quantized

logger = logging.get_logger(__name__)


@dataclass
class CompressedModel:
    """One compressed variant of a student.

    Args:
        name (`str`): The row name, e.g. `"student int8 (onnxruntime)"` or `"student, 30% heads pruned + recovery"`.
        model (`Any`): The model: a `PreTrainedModel`, an int8 module or an `OnnxModel`.
        method (`dict[str, Any]`): What was done: `int8_backend`, `pruned_heads_fraction`, `pruned_heads` (layer to
            original head ids), `recovery_epochs`.
        parameters (`int`): Its parameter count; an int8 model counts the weights of the model it was quantized
            from (the same weights, stored in 8 bits).
        metrics (`dict[str, float]`): Its evaluation metrics, keyed like `Trainer.evaluate()`'s.
        path (`str`, *optional*): Where it was saved.
    """

    name: str
    model: Any
    method: dict[str, Any]
    parameters: int
    metrics: dict[str, float] = field(default_factory=dict)
    path: str | None = None

    def row(self) -> dict[str, Any]:
        """The variant for `results.json`: name, method, parameters, size on disk of its saved files and metrics."""
        return {
            "name": self.name,
            "method": self.method,
            "parameters": self.parameters,
            "size_bytes": size_on_disk(self.path) if self.path is not None else None,
            "metrics": self.metrics,
            "path": self.path,
        }


def check_int8_backend(backend: str) -> None:
    """Check that an int8 backend exists and its packages are installed, before any work.

    Raises:
        ValueError: If `backend` is not one of `hf_distill.quantization.BACKENDS`.
        ImportError: If a package it needs is missing; the message names the extra that installs it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"int8 backend {backend!r} is not supported; choose one of {', '.join(BACKENDS)}")
    check_backend(backend)


def check_compression_flags(
    *,
    int8: bool,
    int8_backend: str,
    prune_fractions: Sequence[float] | None,
    recovery_epochs: float,
    model_type: str | None,
    num_heads: int | None = None,
    world_size: int = 1,
    int8_backend_given: bool = False,
) -> None:
    """Check the recipe's compression flags against the student's architecture, before any work starts.

    Args:
        int8 (`bool`): Whether int8 rows are asked for.
        int8_backend (`str`): The backend they use.
        prune_fractions (`Sequence[float]`, *optional*): Fractions of the student's heads to prune, one row each.
        recovery_epochs (`float`): Epochs of recovery distillation for each pruned student (0: none).
        model_type (`str`, *optional*): The student's `config.model_type` (`None` for a tiny student).
        num_heads (`int`, *optional*): The student's attention heads per layer: at most `1 - 1/num_heads` of them
            can be pruned, since every layer keeps one.
        world_size (`int`, *optional*, defaults to 1): The processes of the run; recovery runs in one.
        int8_backend_given (`bool`, *optional*, defaults to `False`): Whether the backend was chosen explicitly; a
            backend chosen without `int8` would be ignored, so it is refused.

    Raises:
        ValueError: On a fraction outside (0, 1) or repeated, a negative or non-finite `recovery_epochs`, recovery
            asked for without pruning or in a multi-process run, or pruning asked for on an architecture without
            prunable heads.
        ImportError: See `check_int8_backend`.
    """
    if int8_backend_given and not int8:
        raise ValueError(
            f"--int8_backend {int8_backend} chooses the backend of the int8 rows, but --int8 is not set; add --int8, "
            "or drop --int8_backend"
        )
    if int8 and int8_backend not in BACKENDS:
        raise ValueError(f"int8 backend {int8_backend!r} is not supported; choose one of {', '.join(BACKENDS)}")
    fractions = list(prune_fractions or [])
    for fraction in fractions:
        if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 < fraction < 1):
            raise ValueError(
                f"--prune_heads takes fractions of the student's attention heads strictly between 0 and 1, got "
                f"{fraction!r}; e.g. --prune_heads 0.3 0.5"
            )
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"--prune_heads lists a fraction twice: {fractions}; list each once")
    if not (math.isfinite(recovery_epochs) and recovery_epochs >= 0):
        raise ValueError(f"--prune_recovery_epochs must be a finite number >= 0, got {recovery_epochs}")
    if recovery_epochs > 0 and not fractions:
        raise ValueError(
            f"--prune_recovery_epochs {recovery_epochs:g} recovers pruned students, but --prune_heads prunes none; "
            "pass --prune_heads too, or drop --prune_recovery_epochs"
        )
    if recovery_epochs > 0 and world_size > 1:
        raise ValueError(
            f"--prune_recovery_epochs trains each pruned student after the run, in the main process alone, but this "
            f"run has {world_size} processes; run it in one process, or drop --prune_recovery_epochs"
        )
    if fractions and model_type not in PRUNABLE_MODEL_TYPES:
        raise ValueError(
            f"--prune_heads prunes attention heads, which the {model_type or 'tiny'} student does not support; "
            f"supported model types: {', '.join(PRUNABLE_MODEL_TYPES)}. Drop --prune_heads."
        )
    if fractions and num_heads is not None and max(fractions) > 1 - 1 / num_heads:
        raise ValueError(
            f"--prune_heads {max(fractions):g} prunes more heads than exist to prune: the student has {num_heads} "
            f"heads per layer and keeps one in each layer, so at most {1 - 1 / num_heads:.3g} of them can go. Pass "
            "smaller fractions"
        )
    if fractions and int8 and int8_backend == "torchao":
        raise ValueError(
            "--int8_backend torchao reloads each model with from_pretrained, which cannot rebuild pruned heads, so "
            "the pruned students could not be made int8; use --int8_backend onnxruntime or torch with --prune_heads"
        )
    if int8:  # last: a combination that cannot work is refused as such, installed or not
        check_int8_backend(int8_backend)


def recovery_arguments(
    args: DistillationTrainingArguments, epochs: float, output_dir: str
) -> DistillationTrainingArguments:
    """The arguments of a pruned student's recovery distillation: the run's optimisation and output-level loss
    settings (soft targets, labels, hidden-state cosine) for `epochs` epochs, writing to `output_dir`.

    Layer terms, teacher routes, co-training and checkpoints are left out: the teacher is the unpruned student,
    whose heads the pruned one no longer has, and the run is short.
    """
    kept = (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "weight_decay",
        "warmup_steps",
        "lr_scheduler_type",
        "seed",
        "temperature",
        "alpha_kd",
        "alpha_task",
        "alpha_cos",
        "train_sampling_strategy",
        "use_cpu",
        "bf16",
        "fp16",
        "logging_steps",
        "disable_tqdm",
        "max_grad_norm",
    )
    return DistillationTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        save_strategy="no",
        report_to="none",
        **{name: getattr(args, name) for name in kept},
    )


def percent(fraction: float) -> str:
    """`0.3` as `"30%"` (one decimal when needed: `"12.5%"`)."""
    return f"{fraction * 100:.3g}%"


def compress_student(
    student: PreTrainedModel,
    *,
    output_dir: str | Path,
    args: DistillationTrainingArguments,
    train_dataset: Dataset,
    eval_sets: dict[str, Dataset],
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    compute_metrics: Callable[[EvalPrediction], dict[str, float]],
    int8_backend: str | None = None,
    prune_fractions: Sequence[float] = (),
    recovery_epochs: float = 0.0,
    importance_rows: int = 2048,
    tokenizer: Any = None,
) -> list[CompressedModel]:
    """Prune and quantize copies of a trained student; score and save each. The student itself is left as it is.

    For each fraction, the heads' importance (Michel et al., 2019) is measured once on the first `importance_rows`
    training rows, the least important heads of the whole model are removed, and with `recovery_epochs > 0` the
    pruned model is then distilled from the unpruned student (`DistillationTrainer`, the run's own settings for
    that many epochs). With `int8_backend`, the student and each final pruned student are also quantized.

    Variants are saved under `output_dir/compressed/<name>` (pushed to the Hub with the run): pruned models with
    `save_pretrained` (reload with `hf_distill.load_pruned`), int8 ones with `save_quantized` (reload with
    `hf_distill.load_quantized`).

    Args:
        student (`PreTrainedModel`): The trained student.
        output_dir (`str` or `Path`): The run's output directory.
        args (`DistillationTrainingArguments`): The run's arguments; recovery reuses them.
        train_dataset (`Dataset`): Tokenised training rows with labels (importance and recovery).
        eval_sets (`dict[str, Dataset]`): The validation splits the variants are scored on.
        data_collator (`Callable`): Pads rows into batches.
        compute_metrics (`Callable`): The task's metrics.
        int8_backend (`str`, *optional*): The int8 backend; `None` makes no int8 variant.
        prune_fractions (`Sequence[float]`): Fractions of the heads to prune, one variant each.
        recovery_epochs (`float`, *optional*, defaults to 0): Recovery distillation epochs (0: none).
        importance_rows (`int`, *optional*, defaults to 2048): Training rows the head importance is measured on.
        tokenizer (*optional*): Saved beside each variant, and used for the ONNX export's input names.

    Returns:
        `list[CompressedModel]`: The variants in order: int8 student, then per fraction the pruned student (before
        recovery), the recovered one and its int8 version.
    """
    from .trainer import DistillationTrainer  # the trainer imports this package's modules

    root = Path(output_dir) / "compressed"
    variants: list[CompressedModel] = []

    def add(name: str, model: Any, method: dict[str, Any], source: PreTrainedModel) -> None:
        # "student, 30.6% heads pruned + recovery" -> "30.6pct_heads_pruned_recovery"
        path = root / re.sub(r"[^\w.]+", "_", name.removeprefix("student").replace("%", "pct")).strip("_")
        if "int8_backend" in method:
            save_quantized(model, path)
        else:
            model.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        metrics = score_model(
            model,
            eval_sets,
            data_collator=data_collator,
            compute_metrics=compute_metrics,
            batch_size=args.per_device_eval_batch_size,
        )
        logger.info("%s: %s (saved to %s)", name, metrics, path)
        variants.append(
            CompressedModel(
                name=name,
                model=model,
                method=method,
                parameters=count_parameters(source),
                metrics=metrics,
                path=str(path),
            )
        )

    if int8_backend is not None:
        add(
            f"student int8 ({int8_backend})",
            quantize(student, int8_backend, tokenizer=tokenizer),
            {"int8_backend": int8_backend},
            student,
        )
    if prune_fractions:
        rows = train_dataset.select(range(min(importance_rows, len(train_dataset))))
        columns = [c for c in rows.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "label")]
        loader = DataLoader(
            rows.select_columns(columns),
            batch_size=args.per_device_eval_batch_size,
            collate_fn=data_collator,
        )
        importance = head_importance(student, loader)
    for fraction in prune_fractions:
        heads = heads_to_prune(importance, fraction)
        pruned = prune_heads(copy.deepcopy(student), heads)
        removed = sum(len(ids) for ids in heads.values())
        total = int(importance.numel())
        method = {
            "pruned_heads_fraction": fraction,
            "pruned_heads": {str(k): v for k, v in heads.items()},
            "pruned_heads_count": removed,
            "heads": total,
        }
        # Named after what was removed: on a small model the count is the fraction rounded (1 of 4 for 30%).
        name = f"student, {percent(removed / total)} heads pruned"
        add(name, pruned, method, pruned)
        if recovery_epochs > 0:
            recovered = copy.deepcopy(pruned)
            with tempfile.TemporaryDirectory() as work:  # save_strategy "no": nothing is kept there
                trainer = DistillationTrainer(
                    model=recovered,
                    teacher_model=student,
                    args=recovery_arguments(args, recovery_epochs, work),
                    train_dataset=train_dataset,
                    data_collator=data_collator,
                )
                trainer.train()
            name = f"{name} + recovery"
            method = {**method, "recovery_epochs": recovery_epochs}
            add(name, recovered, method, recovered)
            pruned = recovered
        if int8_backend is not None:
            add(
                f"{name}, int8 ({int8_backend})",
                quantize(pruned, int8_backend, tokenizer=tokenizer),
                {**method, "int8_backend": int8_backend},
                pruned,
            )
    return variants

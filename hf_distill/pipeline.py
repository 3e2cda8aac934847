"""Steps of a GLUE distillation run that recipes call: tokenisation, the teacher stage and evaluation.

The recipe `recipes/glue_distill.py` stays a thin script; everything it does beyond parsing arguments lives here or in
`hf_distill.glue` and `hf_distill.report`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging

from .checks import check_label_order, has_custom_label_names
from .glue import GlueTask, main_metric
from .modeling import check_model_reference

logger = logging.get_logger(__name__)

TEACHER_DONE_FILE = "hf_distill_teacher.json"


def tokenize_glue(
    raw: DatasetDict,
    task: GlueTask,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int = 128,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> DatasetDict:
    """Tokenise the text columns of a GLUE `DatasetDict`, keeping `label`; padding is left to the collator.

    Args:
        raw (`DatasetDict`): From `hf_distill.glue.load_glue`.
        task (`GlueTask`): The task, for its text columns.
        tokenizer (`PreTrainedTokenizerBase`): The teacher's tokenizer.
        max_seq_length (`int`, *optional*, defaults to 128): Truncation length; at most the model's limit.
        max_train_samples (`int`, *optional*): Keep the first N training rows (debugging, quick runs).
        max_eval_samples (`int`, *optional*): Keep the first N rows of each validation split.

    Returns:
        `DatasetDict`: Splits with `input_ids`, `attention_mask` (and `token_type_ids`) and `label`.

    Raises:
        ValueError: If `max_seq_length` exceeds the tokenizer's limit or a sample limit is not positive.
    """
    limit = tokenizer.model_max_length
    if max_seq_length < 1 or (limit is not None and limit < 1e9 and max_seq_length > limit):
        raise ValueError(
            f"max_seq_length={max_seq_length} is outside 1..{limit}, the limit of this tokenizer/model; "
            f"pass --max_seq_length {min(128, limit)} or less"
        )
    for name, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive number of rows, got {value}")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[key] for key in task.text_keys]
        return tokenizer(*texts, truncation=True, max_length=max_seq_length)

    processed = {}
    for split, dataset in raw.items():
        if split == "test":
            continue
        limit_rows = max_train_samples if split == "train" else max_eval_samples
        if limit_rows is not None:
            dataset = dataset.select(range(min(limit_rows, len(dataset))))
        if len(dataset) == 0:
            raise ValueError(f"the {split} split of {task.name} is empty; check the data files or sample limits")
        for key in task.text_keys:
            if key not in dataset.column_names:
                raise ValueError(
                    f"the {split} split has no text column {key!r} (columns: {dataset.column_names}); rename the "
                    f"column or pass a file with the {task.name} columns {list(task.text_keys)}"
                )
            empty = sum(1 for text in dataset[key] if text is None or not str(text).strip())
            if empty == len(dataset):
                raise ValueError(
                    f"the text column {key!r} of the {split} split is empty in all {empty} rows; check the file's "
                    "columns and delimiter"
                )
            if empty:
                logger.warning("%d of %d rows of %s[%r] have empty text", empty, len(dataset), split, key)
        drop = [c for c in dataset.column_names if c not in ("label",)]
        processed[split] = dataset.map(encode, batched=True, remove_columns=drop, desc=f"Tokenizing {split}")
    return DatasetDict(processed)


def chance_level(task: GlueTask, labels: list[int] | list[float]) -> float:
    """The main metric a trivial predictor reaches: the majority-class share for accuracy, 0 for correlations, and
    the F1 of always predicting the positive class for F1."""
    metric = main_metric(task)
    if metric == "accuracy":
        return max(Counter(labels).values()) / len(labels)
    if metric == "f1":
        positives = sum(1 for label in labels if label == 1)
        return 2 * positives / (positives + len(labels))
    return 0.0


def warn_if_near_chance(
    task: GlueTask,
    metrics: dict[str, float],
    labels: list[int] | list[float],
    *,
    margin: float = 0.05,
    error: bool = False,
) -> bool:
    """Log a loud warning (or raise, with `error=True`) when the teacher's main dev metric is within `margin` of
    chance.

    A teacher that was never fine-tuned on the task produces near-uniform soft targets; distilling it trains a useless
    student with perfectly normal-looking losses. Returns whether the warning was given.

    Raises:
        ValueError: With `error=True`, when the teacher is near chance.
    """
    key = next((k for k in metrics if k.endswith(main_metric(task))), None)
    if key is None:
        return False
    chance = chance_level(task, labels)
    if metrics[key] <= chance + margin:
        if error:
            raise ValueError(
                f"the teacher is near chance on {task.name}: {key} = {metrics[key]:.4f}, chance level {chance:.4f}; "
                f"fine-tune it first (--teacher_finetune_epochs 3) or pass a teacher fine-tuned on {task.name}"
            )
        logger.warning(
            "\n%s\nTHE TEACHER IS NEAR CHANCE on %s: %s = %.4f, chance level %.4f.\nDistilling it will give a useless "
            "student. Fine-tune it first (--teacher_finetune_epochs 3) or pass a teacher fine-tuned on %s.\n%s",
            "!" * 100,
            task.name,
            key,
            metrics[key],
            chance,
            task.name,
            "!" * 100,
        )
        return True
    return False


def dataset_fingerprint(dataset: Dataset, columns: tuple[str, ...] = ("input_ids", "label")) -> str:
    """A content hash of a tokenised dataset's model inputs and labels (rows in order), for telling data apart."""
    digest = hashlib.sha256()
    # An Arrow slice honours a `select`ed subset (an indices mapping), where `dataset.data` is the whole table.
    table = dataset.with_format("arrow")[0 : len(dataset)]
    for column in columns:
        if column in dataset.column_names:
            digest.update(column.encode())
            values = table.column(column).to_pylist()
            digest.update(json.dumps(values, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]


def teacher_stage_settings(
    *,
    task: GlueTask,
    base: str,
    epochs: float,
    learning_rate: float,
    args: TrainingArguments,
    train_dataset: Dataset,
) -> dict[str, Any]:
    """What a fine-tuned teacher depends on: the task, the base model, the data and the training settings.

    A saved teacher is reused only when all of these match (`check_teacher_reuse`)."""
    return {
        "task": task.name,
        "base": base,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "train_rows": len(train_dataset),
        "train_data": dataset_fingerprint(train_dataset),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "seed": args.seed,
    }


def check_teacher_reuse(output_dir: str | Path, settings: dict[str, Any]) -> bool:
    """Whether `output_dir` holds a finished teacher fine-tuned with exactly `settings`.

    Returns `False` when there is none (the teacher will be trained). Run this before any work: a saved teacher of
    another task, base model, data or setting is refused, never silently reused nor overwritten.

    Raises:
        ValueError: Naming each setting that differs, and the fix.
    """
    marker = Path(output_dir) / TEACHER_DONE_FILE
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    recorded = saved.get("settings", {}) if isinstance(saved, dict) else {}
    differences = [
        f"{key}: saved {recorded.get(key)!r}, now {value!r}"
        for key, value in settings.items()
        if recorded.get(key) != value
    ]
    if differences:
        raise ValueError(
            f"{output_dir} holds a teacher fine-tuned with other settings ({'; '.join(differences)}), so it cannot be "
            "reused for this run. Use another --output_dir, or delete that _teacher directory to fine-tune again "
            "(nothing was changed)"
        )
    return True


def finetune_teacher(
    teacher: PreTrainedModel,
    *,
    task: GlueTask,
    base: str,
    args: TrainingArguments,
    epochs: float,
    output_dir: str | Path,
    train_dataset: Dataset,
    learning_rate: float | None = None,
    **trainer_kwargs: Any,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Fine-tune a pre-trained teacher on the task with a plain `Trainer`, or reuse an earlier run's result.

    The tuned teacher is saved under `output_dir` together with a marker file written last, which records what the
    teacher depends on (`teacher_stage_settings`: task, base model, data, settings). A run interrupted while saving
    is not mistaken for a finished teacher, and a teacher of another task, base or data is refused, never reused
    (`check_teacher_reuse`, which runs before any training).

    Args:
        teacher (`PreTrainedModel`): The pre-trained teacher with a (new) task head.
        task (`GlueTask`): The task.
        base (`str`): The name or path the teacher was loaded from.
        args (`TrainingArguments`): The run's arguments; a copy with `output_dir` and `num_train_epochs` replaced is
            used, and `args` itself is not changed.
        epochs (`float`): Fine-tuning epochs.
        output_dir (`str` or `Path`): Where the tuned teacher is saved.
        train_dataset (`Dataset`): The tokenised training set.
        learning_rate (`float`, *optional*): The teacher's learning rate; by default that of `args`.
        **trainer_kwargs: `data_collator`, `processing_class`, ... for `Trainer`.

    Returns:
        `tuple[PreTrainedModel, dict[str, Any]]`: The fine-tuned teacher, and the settings it was fine-tuned with.
    """
    learning_rate = args.learning_rate if learning_rate is None else learning_rate
    settings = teacher_stage_settings(
        task=task, base=base, epochs=epochs, learning_rate=learning_rate, args=args, train_dataset=train_dataset
    )
    output_dir = Path(output_dir)
    if check_teacher_reuse(output_dir, settings):
        logger.info("Reusing the fine-tuned teacher in %s (same task, base model, data and settings)", output_dir)
        return AutoModelForSequenceClassification.from_pretrained(output_dir), settings
    teacher_args = dataclasses.replace(
        args,
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        max_steps=-1,
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
    )
    trainer = Trainer(model=teacher, args=teacher_args, train_dataset=train_dataset, **trainer_kwargs)
    trainer.train()
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        (output_dir / TEACHER_DONE_FILE).write_text(json.dumps({"settings": settings}, indent=1) + "\n")
    trainer.accelerator.wait_for_everyone()
    return trainer.model, settings


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


def evaluate_teacher(
    teacher: PreTrainedModel, *, args: TrainingArguments, eval_sets: dict[str, Dataset], **kwargs
) -> dict:
    """Evaluate the teacher with a plain `Trainer` on each validation split (see `evaluate_splits`).

    The evaluation uses a copy of `args` with `push_to_hub=False`: a `Trainer` made with `push_to_hub=True` creates the
    Hub repository at construction, and only the student's trainer should touch it.

    Args:
        teacher (`PreTrainedModel`): The teacher.
        args (`TrainingArguments`): The run's arguments (not changed).
        eval_sets (`dict[str, Dataset]`): Validation splits by name.
        **kwargs: `data_collator`, `compute_metrics`, ... for `Trainer`.

    Returns:
        `dict`: The teacher's metrics.
    """
    eval_args = dataclasses.replace(args, push_to_hub=False)
    return evaluate_splits(Trainer(model=teacher, args=eval_args, **kwargs), eval_sets)


def load_task_model(
    name_or_path: str, task: GlueTask, *, require_head: bool = False, **kwargs: Any
) -> PreTrainedModel:
    """Load a sequence classifier for a GLUE task, keeping the label mapping of an already fine-tuned checkpoint.

    A checkpoint with named classes (a fine-tuned teacher) keeps its own `id2label`, which is checked against the
    task's label order and count; passing the task's mapping instead would silently relabel its outputs. A
    pre-trained checkpoint (generic or no names) gets the task's head: label count, names and problem type.

    Args:
        name_or_path (`str`): A Hub id or local directory.
        task (`GlueTask`): The task.
        require_head (`bool`, *optional*, defaults to `False`):
            Refuse a checkpoint without trained classifier weights (a teacher that is not fine-tuned here).
        **kwargs: For `from_pretrained` (e.g. `cache_dir`).

    Raises:
        ValueError: If a fine-tuned checkpoint has another label count or label order than the task, or, with
            `require_head`, if the checkpoint has no sequence-classification head or lacks some of its weights.
    """
    check_model_reference(name_or_path, what="teacher")
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any("ForSequenceClassification" in a for a in architectures)
    if require_head and not is_classifier:
        raise ValueError(
            f"the teacher {name_or_path} is a {architectures[0] if architectures else 'base model'} checkpoint "
            f"without a sequence-classification head, so its classifier would start at random and give random soft "
            f"targets. Pass a teacher fine-tuned on {task.name}, or add --teacher_finetune_epochs 3 to fine-tune it "
            "first"
        )
    head_kwargs: dict[str, Any] = {}
    if is_classifier and has_custom_label_names(config.id2label):
        if config.num_labels != task.num_labels:
            raise ValueError(
                f"{name_or_path} classifies {config.num_labels} labels but {task.name} has {task.num_labels}; "
                f"pass a model fine-tuned on {task.name}, or a pre-trained one with --teacher_finetune_epochs"
            )
        check_label_order(config.id2label, task.label_names)
    else:
        head_kwargs = task.model_config_kwargs
    model, info = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, output_loading_info=True, **head_kwargs, **kwargs
    )
    missing = sorted(info.get("missing_keys") or [])
    if require_head and missing:
        raise ValueError(
            f"the teacher {name_or_path} has no weights for {missing[:6]} ({len(missing)} missing), which would start "
            f"at random. Pass a teacher fine-tuned on {task.name}, or add --teacher_finetune_epochs 3"
        )
    return model


def check_push_arguments(args: TrainingArguments) -> None:
    """Raise `ValueError` for `--push_to_hub` without `--hub_model_id`, before hours of training are spent: the
    repository name would otherwise be guessed from the output directory."""
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id <user or org>/<model name>, e.g. me/minilm-l3-sst2")


def warn_if_cpu_launch_is_single_process(args: TrainingArguments) -> bool:
    """Warn when a multi-process CPU launch does not give one distributed run.

    - `accelerate launch --cpu --num_processes N` (N > 1) starts ONE process: accelerate's `--cpu` flag uses its
      simple launcher unless `--mpirun_hostfile` is given, though it still sets `MASTER_ADDR`.
    - `accelerate launch --multi_gpu --num_processes N` on a machine without GPUs starts N processes, but without
      `--use_cpu true` each of them trains alone (world size 1): N independent runs writing the same output dir.

    Returns whether a warning was given.
    """
    launched_for_many = "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ
    if launched_for_many and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        logger.warning(
            "accelerate launch --cpu with --num_processes > 1 started ONE process (accelerate uses its simple "
            "launcher for --cpu). For several CPU processes use: accelerate launch --multi_gpu --num_processes N "
            "... --use_cpu true"
        )
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.world_size == 1:
        logger.warning(
            "%s processes were launched but each trains alone (world size 1); on a machine without GPUs pass "
            "--use_cpu true so that they form one distributed run",
            os.environ["WORLD_SIZE"],
        )
        return True
    return False

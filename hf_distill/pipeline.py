"""Steps of a GLUE distillation run that recipes call: tokenisation, the teacher stage and evaluation.

The recipe `recipes/glue_distill.py` stays a thin script; everything it does beyond parsing arguments lives here or in
`hf_distill.glue` and `hf_distill.report`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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

from .checkpoints import latest_complete_checkpoint
from .checks import check_label_order, has_custom_label_names
from .glue import GlueTask, main_metric
from .modeling import check_model_reference, max_sequence_length

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
        limit_rows = max_train_samples if split == "train" else None if split.startswith("test") else max_eval_samples
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


def check_max_seq_length(max_seq_length: int, tokenizer: PreTrainedTokenizerBase, *models: PreTrainedModel) -> None:
    """Raise `ValueError` when `--max_seq_length` exceeds what the tokenizer or any of the models can take.

    The tokenizer's `model_max_length` is often unset (a huge sentinel), so each model's own position limit
    (`hf_distill.modeling.max_sequence_length`) is checked too: a longer input fails in the teacher's forward in the
    middle of training, or in the latency step after it, with nothing saved.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit is not None and tokenizer_limit < 1e9:
        limits.append((int(tokenizer_limit), "the tokenizer's model_max_length"))
    for model in models:
        limit = max_sequence_length(model.config)
        if limit is not None:
            limits.append((limit, f"{type(model).__name__}'s position limit"))
    if max_seq_length < 1:
        raise ValueError(f"--max_seq_length must be a positive number of tokens, got {max_seq_length}")
    for limit, what in limits:
        if max_seq_length > limit:
            raise ValueError(
                f"--max_seq_length {max_seq_length} exceeds {what} ({limit} tokens); pass --max_seq_length "
                f"{min(128, limit)} (or at most {limit})"
            )


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
    finetuned_epochs: float = 0.0,
) -> bool:
    """Log a loud warning (or raise, with `error=True`) when the teacher's main dev metric is within `margin` of
    chance.

    A teacher that was never fine-tuned on the task produces near-uniform soft targets; distilling it trains a useless
    student with perfectly normal-looking losses. The advice names what was done: a teacher this run fine-tuned
    (`finetuned_epochs > 0`) needs more epochs, data or another learning rate, not "fine-tuning". Returns whether the
    warning was given.

    Raises:
        ValueError: With `error=True`, when the teacher is near chance.
    """
    key = next((k for k in metrics if k.endswith(main_metric(task))), None)
    if key is None:
        return False
    chance = chance_level(task, labels)
    if metrics[key] > chance + margin:
        return False
    if finetuned_epochs > 0:
        advice = (
            f"This run fine-tuned it for {finetuned_epochs:g} epochs, which was not enough: raise "
            "--teacher_finetune_epochs, train on more rows (--max_train_samples), or change --teacher_learning_rate"
        )
    else:
        advice = f"Fine-tune it first (--teacher_finetune_epochs 3) or pass a teacher fine-tuned on {task.name}"
    summary = f"the teacher is near chance on {task.name}: {key} = {metrics[key]:.4f}, chance level {chance:.4f}"
    if error:
        raise ValueError(f"{summary}; {advice[0].lower()}{advice[1:]}")
    banner = "!" * 100
    logger.warning(
        "\n%s\nWARNING, %s.\nDistilling it will give a useless student. %s.\n%s", banner, summary, advice, banner
    )
    return True


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


# `TrainingArguments` fields that cannot change the fine-tuned weights (where results go, what is logged, evaluation,
# the distillation terms of the later student run). Every other field is recorded: a field added by a newer
# transformers is compared too, so that an unknown setting refuses a reuse rather than hiding a difference.
_NOT_TEACHER_SETTINGS = frozenset(
    {
        "output_dir", "run_name", "report_to", "disable_tqdm", "push_to_hub", "resume_from_checkpoint", "do_train",
        "do_eval", "do_predict", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
        "prediction_loss_only", "per_device_eval_batch_size", "batch_eval_metrics", "skip_memory_metrics",
        "restore_callback_states_from_checkpoint", "torch_empty_cache_steps", "local_rank", "use_cpu", "project",
        "trackio_space_id", "temperature", "alpha_kd", "alpha_task", "alpha_cos", "alpha_mse",
    }
)  # fmt: skip
_NOT_TEACHER_PREFIXES = ("logging_", "log_", "save_", "eval_", "hub_", "include_", "dataloader_", "ddp_", "fsdp")


def _base_identity(base: str) -> dict[str, Any]:
    """A base model's identity: a Hub id as given, or a local directory's resolved path and a hash of its weights
    (the same folder reached by another path is the same base; new weights saved under the same path are not)."""
    path = Path(base)
    if not path.is_dir():
        return {"hub_id": base}
    digest = hashlib.sha256()
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(weights.name.encode())
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return {"path": str(path.resolve()), "weights": digest.hexdigest()[:16]}


def teacher_stage_settings(
    *, task: GlueTask, base: str, teacher_args: TrainingArguments, train_dataset: Dataset
) -> dict[str, Any]:
    """What a fine-tuned teacher depends on: the task, the base model (identity and weights), the data (a content
    hash) and every training setting that can change the weights (`teacher_args`, the arguments it is trained with).

    A saved teacher is reused only when all of these match (`check_teacher_reuse`)."""
    training = {
        key: value
        for key, value in teacher_args.to_dict().items()
        if key not in _NOT_TEACHER_SETTINGS and not key.startswith(_NOT_TEACHER_PREFIXES)
    }
    return {
        "task": task.name,
        "base": _base_identity(base),
        "train_rows": len(train_dataset),
        "train_data": dataset_fingerprint(train_dataset),
        "world_size": teacher_args.world_size,
        "training": training,
    }


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved X, now Y` for each setting that differs, nested dicts by dotted key."""
    found = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return found


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
    differences = _differences(recorded, settings)
    if differences:
        raise ValueError(
            f"{output_dir} holds a teacher fine-tuned with other settings ({'; '.join(differences[:6])}"
            f"{'; ...' if len(differences) > 6 else ''}), so it cannot be "
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
    teacher_args = dataclasses.replace(
        args,
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        learning_rate=args.learning_rate if learning_rate is None else learning_rate,
        max_steps=-1,
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        push_to_hub=False,
        resume_from_checkpoint=None,
    )
    settings = teacher_stage_settings(task=task, base=base, teacher_args=teacher_args, train_dataset=train_dataset)
    output_dir = Path(output_dir)
    if check_teacher_reuse(output_dir, settings):
        logger.info("Reusing the fine-tuned teacher in %s (same task, base model, data and settings)", output_dir)
        return AutoModelForSequenceClassification.from_pretrained(output_dir), {**settings, "reused": True}
    trainer = Trainer(model=teacher, args=teacher_args, train_dataset=train_dataset, **trainer_kwargs)
    trainer.train()
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        (output_dir / TEACHER_DONE_FILE).write_text(json.dumps({"settings": settings}, indent=1) + "\n")
    trainer.accelerator.wait_for_everyone()
    return trainer.model, {**settings, "reused": False}


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

    The evaluation uses a copy of `args` for a one-off evaluation: `push_to_hub=False` (a `Trainer` made with
    `push_to_hub=True` creates the Hub repository at construction, and only the student's trainer should touch it),
    no evaluation strategy nor best-model tracking (those are for the student's training: inherited, they made
    `Trainer` demand an `eval_dataset` of its own), and no reporting (an evaluation without training made the
    TensorBoard callback write an untagged event file into the current directory). The teacher's metrics go to
    `results.json` and the card.

    Args:
        teacher (`PreTrainedModel`): The teacher.
        args (`TrainingArguments`): The run's arguments (not changed).
        eval_sets (`dict[str, Dataset]`): Validation splits by name.
        **kwargs: `data_collator`, `compute_metrics`, ... for `Trainer`.

    Returns:
        `dict`: The teacher's metrics.
    """
    eval_args = dataclasses.replace(
        args,
        push_to_hub=False,
        eval_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        report_to="none",
    )
    return evaluate_splits(Trainer(model=teacher, args=eval_args, **kwargs), eval_sets)


def load_task_model(
    name_or_path: str, task: GlueTask, *, require_head: bool = False, what: str = "teacher", **kwargs: Any
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
        what (`str`, *optional*, defaults to `"teacher"`): The model's role, for the error messages.
        **kwargs: For `from_pretrained` (e.g. `cache_dir`).

    Raises:
        ValueError: If a fine-tuned checkpoint has another label count or label order than the task, or, with
            `require_head`, if the checkpoint has no sequence-classification head or lacks some of its weights.
    """
    check_model_reference(name_or_path, what=what)
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any("ForSequenceClassification" in a for a in architectures)
    if require_head and not is_classifier:
        raise ValueError(
            f"the {what} {name_or_path} is a {architectures[0] if architectures else 'base model'} checkpoint "
            f"without a sequence-classification head, so its classifier would start at random and give random soft "
            f"targets. Pass a teacher fine-tuned on {task.name}, or add --teacher_finetune_epochs 3 to fine-tune it "
            "first"
        )
    head_kwargs: dict[str, Any] = {}
    if (
        is_classifier
        and config.num_labels != task.num_labels
        and (require_head or has_custom_label_names(config.id2label))
    ):
        raise ValueError(
            f"the {what} {name_or_path} classifies {config.num_labels} labels but {task.name} has {task.num_labels}; "
            f"pass a model fine-tuned on {task.name}, or a pre-trained one with --teacher_finetune_epochs"
        )
    if is_classifier and has_custom_label_names(config.id2label):
        check_label_order(config.id2label, task.label_names)
    else:
        # A pre-trained checkpoint gets the task's head; an untrained head of another size is replaced, not loaded.
        head_kwargs = {**task.model_config_kwargs, "ignore_mismatched_sizes": is_classifier}
    model, info = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, output_loading_info=True, **head_kwargs, **kwargs
    )
    missing = sorted(info.get("missing_keys") or [])
    if require_head and missing:
        raise ValueError(
            f"the {what} {name_or_path} has no weights for {missing[:6]} ({len(missing)} missing), which would start "
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


def check_run_flags(
    args: TrainingArguments,
    *,
    test_file: str | None = None,
    teacher_finetune_epochs: float = 0.0,
    teacher_learning_rate: float | None = None,
) -> None:
    """Raise `ValueError` for `run_glue.py` flags that this recipe would otherwise ignore.

    The recipe always distils the student and evaluates it (the report and the card need both), so `--do_train` and
    `--do_eval` are accepted as what it does; `--do_eval` without `--do_train` asks for an evaluation-only run,
    which it has no mode for. `--do_predict` is honoured (`predict_test_splits`); `--test_file` needs it.
    """
    explicit_eval = args.do_eval and args.eval_strategy == "no"  # `eval_strategy` alone also sets do_eval
    if explicit_eval and not args.do_train:
        raise ValueError(
            "--do_eval without --do_train asks for an evaluation-only run, but this recipe always distils a student "
            "and then evaluates it; add --do_train (or drop --do_eval), or evaluate a saved student with "
            "Trainer.evaluate"
        )
    if test_file is not None and not args.do_predict:
        raise ValueError(f"--test_file {test_file} is only read for predictions; add --do_predict")
    if not math.isfinite(teacher_finetune_epochs) or teacher_finetune_epochs < 0:
        raise ValueError(
            f"--teacher_finetune_epochs must be >= 0 (0 uses the teacher as given), got {teacher_finetune_epochs}"
        )
    if teacher_learning_rate is not None and not (math.isfinite(teacher_learning_rate) and teacher_learning_rate > 0):
        raise ValueError(f"--teacher_learning_rate must be a positive number, got {teacher_learning_rate}")


def plan_resume(output_dir: str | Path, resume_from_checkpoint: str | bool | None) -> str | bool | None:
    """What a run into `output_dir` resumes from, decided before any work; never a silent restart over a run.

    - `--resume_from_checkpoint` given: it is used as given (the trainer verifies it).
    - `output_dir` holds a finished run (`results.json`, or a saved student): `ValueError` with the fixes, since
      starting again would replace the student, its checkpoints, `results.json` and the card (transformers 5
      removed `--overwrite_output_dir`).
    - `output_dir` holds checkpoints of an interrupted run: the newest complete one, as `run_glue.py` does, logged.
    - Otherwise `None`: a new run.
    """
    output_dir = Path(output_dir)
    if resume_from_checkpoint not in (None, False, ""):
        wants_newest = resume_from_checkpoint is True or (
            isinstance(resume_from_checkpoint, str)
            and resume_from_checkpoint.strip().lower() in ("true", "1", "yes")
            and not Path(resume_from_checkpoint).is_dir()
        )
        if wants_newest and latest_complete_checkpoint(output_dir, allow_unmarked=True) is None:
            raise ValueError(
                f"--resume_from_checkpoint true but {output_dir} holds no complete checkpoint to resume from; drop "
                "the flag to start a new run, or pass the --output_dir of the run to continue"
            )
        return resume_from_checkpoint
    if not output_dir.is_dir():
        return None
    finished = [
        name for name in ("results.json", "model.safetensors", "pytorch_model.bin") if (output_dir / name).exists()
    ]
    if finished:
        raise ValueError(
            f"--output_dir {output_dir} already holds a finished run ({', '.join(finished)}); a new run would replace "
            "its student, checkpoints, results.json and card. Pass another --output_dir, pass "
            "--resume_from_checkpoint true to continue from its newest checkpoint, or delete the directory to start "
            "again (nothing was changed)"
        )
    checkpoint = latest_complete_checkpoint(output_dir, allow_unmarked=True)
    if checkpoint is not None:
        logger.warning(
            "Resuming from %s, the newest complete checkpoint of the interrupted run in %s. To start from scratch, "
            "pass another --output_dir or delete that one.",
            checkpoint,
            output_dir,
        )
        return checkpoint
    return None

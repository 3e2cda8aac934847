"""The teacher stage of a run: load a teacher for the task, fine-tune it (or reuse an identical earlier one), evaluate
it, and warn when it is near chance. The home of the teacher modes to come (cached outputs, ensembles, routes)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging

from .checks import check_label_order, check_teacher_student, has_custom_label_names
from .glue import GlueTask, main_metric
from .glue.evaluation import evaluate_splits
from .modeling import check_model_reference

logger = logging.get_logger(__name__)


TEACHER_DONE_FILE = "hf_distill_teacher.json"


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


NEAR_CHANCE_MARGIN = 0.05


def is_near_chance(score: float, chance: float, *, margin: float = NEAR_CHANCE_MARGIN) -> bool:
    """Whether a main-metric `score` is within `margin` of the `chance` level (`chance_level`)."""
    return score <= chance + margin


def warn_if_near_chance(
    task: GlueTask,
    metrics: dict[str, float],
    labels: list[int] | list[float],
    *,
    margin: float = NEAR_CHANCE_MARGIN,
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
    if not is_near_chance(metrics[key], chance, margin=margin):
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


def load_masked_lm(name_or_path: str, *, what: str = "teacher", **kwargs: Any) -> PreTrainedModel:
    """Load a `*ForMaskedLM` model whose masked-LM head is trained, for task-agnostic distillation.

    A checkpoint without the head's weights (a sentence encoder such as all-MiniLM-L6-v2, a `BertModel`) would get a
    head at random: its predictions, the soft targets of `L_kd`, would be noise. It is refused.

    Raises:
        ValueError: For a missing local path, or a checkpoint that lacks masked-LM head weights.
    """
    check_model_reference(name_or_path, what=what)
    model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        architectures = getattr(model.config, "architectures", None) or ["a base model"]
        raise ValueError(
            f"the {what} {name_or_path} ({architectures[0]}) has no trained masked-LM head: {missing[:4]} "
            f"({len(missing)} weights) would start at random, and so would its predictions. Pass a masked-LM "
            "checkpoint, such as bert-base-uncased or distilbert-base-uncased"
        )
    return model


def prepare_teacher(
    teacher: PreTrainedModel,
    *,
    task: GlueTask,
    base: str,
    args: TrainingArguments,
    eval_sets: dict[str, Dataset],
    train_dataset: Dataset,
    finetune_epochs: float = 0.0,
    learning_rate: float | None = None,
    output_dir: str | Path,
    fail_on_chance: bool = False,
    **trainer_kwargs: Any,
) -> tuple[PreTrainedModel, dict[str, float], dict[str, Any] | None]:
    """The whole teacher stage: fine-tune (or reuse) when `finetune_epochs > 0`, evaluate, warn near chance.

    Args:
        teacher (`PreTrainedModel`): The loaded teacher (`load_task_model`).
        task (`GlueTask`), base (`str`), args (`TrainingArguments`): As in `finetune_teacher`.
        eval_sets (`dict[str, Dataset]`): The validation splits to evaluate on.
        train_dataset (`Dataset`): The tokenised training set, for fine-tuning.
        finetune_epochs (`float`, *optional*, defaults to 0): Fine-tuning epochs; 0 uses the teacher as given.
        learning_rate (`float`, *optional*): The fine-tuning learning rate; by default that of `args`.
        output_dir (`str` or `Path`): Where a fine-tuned teacher is saved (`<output_dir>/_teacher` in the recipe).
        fail_on_chance (`bool`, *optional*): Raise instead of warning when the teacher is near chance.
        **trainer_kwargs: `data_collator`, `processing_class`, `compute_metrics` for the `Trainer`s.

    Returns:
        `tuple`: The teacher to distil, its metrics, and its fine-tuning record (`None` when not fine-tuned).
    """
    stage = None
    compute_metrics = trainer_kwargs.pop("compute_metrics", None)
    if finetune_epochs > 0:
        teacher, stage = finetune_teacher(
            teacher,
            task=task,
            base=base,
            args=args,
            epochs=finetune_epochs,
            learning_rate=learning_rate,
            output_dir=output_dir,
            train_dataset=train_dataset,
            **trainer_kwargs,
        )
    collator = trainer_kwargs.get("data_collator")
    metrics = evaluate_teacher(
        teacher, args=args, eval_sets=eval_sets, data_collator=collator, compute_metrics=compute_metrics
    )
    labels = list(next(iter(eval_sets.values()))["label"])
    warn_if_near_chance(task, metrics, labels, error=fail_on_chance, finetuned_epochs=finetune_epochs)
    return teacher, metrics, stage


def load_additional_teachers(
    paths: list[str] | None, task: GlueTask, teacher: PreTrainedModel, **kwargs: Any
) -> list[PreTrainedModel]:
    """Load a recipe's `--additional_teachers`: fine-tuned classifiers that share the teacher's vocabulary and labels.

    They join the teacher in an ensemble, or precede it on a route. Each must have its trained head (a random one
    gives random soft targets) and is checked against the teacher before the teacher is fine-tuned.
    """
    models = []
    for path in paths or []:
        model = load_task_model(path, task, require_head=True, what="additional teacher", **kwargs)
        try:
            check_teacher_student(model, teacher, terms=set())
        except ValueError as error:
            raise ValueError(f"additional teacher {path}: {error}") from None
        models.append(model)
    return models


def run_teachers(teacher: Any, additional: list[Any], *, route: bool) -> list[Any]:
    """The teachers in the order they teach: the teacher first in an ensemble, last (the final one) on a route."""
    return [*additional, teacher] if route else [teacher, *additional]


def describe_teachers(names: list[str], *, route: bool) -> str:
    """One name for the card and `results.json`: `a + b` for an ensemble, `early → final` for a route."""
    return (" → " if route else " + ").join(names)

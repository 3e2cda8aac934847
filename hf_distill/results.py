"""The numbers of a run: `DistillationReport` (metrics of both models, retention, size, speed, settings), written
as `results.json` and as the printed teacher/student table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from transformers import (
    PreTrainedModel,
)
from transformers.utils import logging

from .arguments import DistillationTrainingArguments
from .glue import GlueTask, get_task
from .losses import LOSS_TERMS
from .measure import collect_versions, count_parameters, machine_info, size_on_disk

logger = logging.get_logger(__name__)


# Entries of `Trainer.evaluate()` that describe the evaluation run rather than the model's quality. They are kept in
# `results.json` but left out of tables, retention and the model card. `loss` is among them because the evaluation
# loss of a distillation run mixes the loss terms and is not comparable between teacher and student.
_BOOKKEEPING_METRICS = frozenset(
    {"loss", "runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time", "masked_tokens"}
)
# Metrics where lower is better (`hf_distill.perplexity`); every other metric is higher-is-better.
_LOWER_IS_BETTER_METRICS = frozenset({"perplexity", "mlm_loss"})


def is_bookkeeping(name: str) -> bool:
    """Whether a metric describes the evaluation run (`runtime`, `loss`, ...) rather than quality, also under a split
    prefix (`validation_matched_runtime`). A quality metric named like one (`mlm_loss`) is not."""
    if is_lower_better(name):
        return False
    return any(name == entry or name.endswith("_" + entry) for entry in _BOOKKEEPING_METRICS)


# `TrainingArguments` fields worth stating in a model card, in the order shown there.
_HYPERPARAMETERS: tuple[str, ...] = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "optim",
    "seed",
    "bf16",
    "fp16",
)


def is_lower_better(name: str) -> bool:
    """Whether lower values of a metric are better (`perplexity`, `mlm_loss`), also under a split prefix."""
    return any(name == entry or name.endswith("_" + entry) for entry in _LOWER_IS_BETTER_METRICS)


def retention(
    student_score: float | None, teacher_score: float | None, *, lower_is_better: bool = False
) -> float | None:
    """The student's score as a percentage of the teacher's: `student / teacher * 100`.

    For a lower-is-better metric (perplexity) the ratio is inverted, `teacher / student * 100`, so that 100% still
    means "as good as the teacher" and less means worse.

    Args:
        student_score (`float`, *optional*): The student's value of the metric.
        teacher_score (`float`, *optional*): The teacher's value of the same metric.
        lower_is_better (`bool`, *optional*, defaults to `False`): Whether lower values are better.

    Returns:
        `float` or `None`: The percentage, or `None` when it means nothing: a teacher score of 0 or below (a Matthews
        correlation can be), or a missing or non-finite score.
    """
    if student_score is None or teacher_score is None:
        return None
    if not (math.isfinite(student_score) and math.isfinite(teacher_score)) or teacher_score <= 0:
        return None
    if lower_is_better:
        return teacher_score / student_score * 100 if student_score > 0 else None
    return student_score / teacher_score * 100


def _glue_task(task: str) -> GlueTask | None:
    """The `GlueTask` named `task`, or `None` when it is not a GLUE task."""
    try:
        return get_task(task)
    except ValueError:
        return None


def _strip_eval_prefix(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key.removeprefix("eval_"): value for key, value in metrics.items()}


def _jsonable(value: Any) -> Any:
    """`value` with string keys, lists for tuples and `None` for non-finite floats, so that JSON keeps it as is."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class DistillationReport:
    """The numbers of one distillation run, for `results.json`, `format_table` and `model_card`.

    Build it with `DistillationReport.from_models` after training, or field by field.

    Args:
        task (`str`):
            The task, e.g. `"sst2"`. A GLUE task name is normalised to its Hub config name.
        teacher_metrics (`dict[str, float]`):
            The teacher's evaluation metrics, e.g. the result of `Trainer.evaluate()`. An `eval_` prefix is removed.
        student_metrics (`dict[str, float]`):
            The student's evaluation metrics on the same data, likewise.
        teacher_parameters (`int`): The teacher's parameter count (`count_parameters`).
        student_parameters (`int`): The student's parameter count.
        teacher_size_bytes (`int`): The teacher's weights on disk (`size_on_disk`).
        student_size_bytes (`int`): The student's weights on disk.
        temperature (`float`): The softmax temperature of the soft targets.
        loss_weights (`dict[str, float]`): The loss weights by argument name (`"alpha_kd"`, ...).
        teacher (`str`, *optional*): The Hub id or path of the teacher that was distilled.
        teacher_finetuning (`dict[str, Any]`, *optional*):
            When the run fine-tuned the teacher first: what it was fine-tuned with (`base` model, `task`, `epochs`,
            `learning_rate`, the data fingerprint, ...), from `hf_distill.pipeline.teacher_stage_settings`.
        student_start (`str`, *optional*): The model a given student started from (`--student_model_name_or_path`):
            its layers then come from there, not from this teacher.
        teacher_layers (`list[int]`, *optional*): The teacher layers the student was initialised from (0-based).
        teacher_num_layers (`int`, *optional*): The teacher's layer count.
        student_type (`str`, *optional*, defaults to `"transformer"`): `"bilstm"` or `"textcnn"` for a tiny student
            (`make_tiny_student`), whose embedding start is `embedding_init`.
        embedding_init (`str`, *optional*): A tiny student's embedding start (`"teacher"` or `"random"`).
        transfer_set (`dict[str, Any]`, *optional*): The augmentation rules, seed and row counts of a transfer set
            (`hf_distill.augment`) the student was trained on.
        train_rows (`int`, *optional*): The rows the student trained on (a transfer set's rows included).
        eval_rows (`int`, *optional*): The rows both models were scored on (of the first validation split).
        main_metric (`str`, *optional*):
            The metric that retention is computed on; defaults to the GLUE task's main metric (`glue.main_metric`).
            Required for a task outside GLUE.
        latency (`dict[str, Any]`, *optional*):
            The result of `measure_latency` for models named `"teacher"` and `"student"` (and the compressed
            variants, by their names, when there are any).
        compression (`list[dict[str, Any]]`, *optional*):
            The student's compressed variants (`hf_distill.compression.CompressedModel.row()`): name, method (int8
            backend, pruned heads, recovery epochs), parameters, size on disk and metrics.
        training_time_s (`float`, *optional*): The training time in seconds (`train_runtime`).
        hyperparameters (`dict[str, Any]`, *optional*): Training settings to state, e.g. the learning rate.
        versions (`dict[str, str]`, *optional*, defaults to `collect_versions()`): Library versions.
        machine (`dict[str, Any]`, *optional*, defaults to `machine_info()`): The machine.

    Raises:
        ValueError: If the main metric is unknown or missing from either metrics dict, or `latency` lacks the teacher
            or the student.
    """

    task: str
    teacher_metrics: dict[str, float]
    student_metrics: dict[str, float]
    teacher_parameters: int
    student_parameters: int
    teacher_size_bytes: int
    student_size_bytes: int
    temperature: float
    loss_weights: dict[str, float]
    teacher: str | None = None
    teacher_finetuning: dict[str, Any] | None = None
    student_start: str | None = None
    teacher_layers: list[int] | None = None
    teacher_num_layers: int | None = None
    student_type: str = "transformer"
    embedding_init: str | None = None
    transfer_set: dict[str, Any] | None = None
    train_rows: int | None = None
    eval_rows: int | None = None
    main_metric: str | None = None
    latency: dict[str, Any] | None = None
    compression: list[dict[str, Any]] | None = None
    training_time_s: float | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=collect_versions)
    machine: dict[str, Any] = field(default_factory=machine_info)

    def __post_init__(self) -> None:
        glue_task = _glue_task(self.task)
        if glue_task is not None:
            self.task = glue_task.name
        if self.main_metric is None:
            if glue_task is None:
                raise ValueError(
                    f"task {self.task!r} is not a GLUE task, so its main metric is unknown; pass main_metric="
                )
            self.main_metric = glue_task.main_metric
            if len(glue_task.validation_splits) > 1:
                # MNLI: the metric of the first (matched) split is the headline, as on the GLUE leaderboard.
                self.main_metric = f"{glue_task.validation_splits[0]}_{self.main_metric}"
        self.teacher_metrics = _strip_eval_prefix(self.teacher_metrics)
        self.student_metrics = _strip_eval_prefix(self.student_metrics)
        for who, metrics in (("teacher", self.teacher_metrics), ("student", self.student_metrics)):
            if self.main_metric not in metrics:
                raise ValueError(
                    f"the {who} metrics have no {self.main_metric!r} (the main metric of {self.task}); they have "
                    f"{sorted(metrics)}. Pass the metrics of an evaluation with compute_metrics, or set main_metric="
                )
        if self.latency is not None and not {"teacher", "student"} <= set(self.latency.get("results", {})):
            raise ValueError(
                "latency must come from measure_latency({'teacher': ..., 'student': ...}); its results hold "
                f"{sorted(self.latency.get('results', {}))}"
            )
        for row in self.compression or []:
            row["metrics"] = _strip_eval_prefix(row["metrics"])
            if self.main_metric not in row["metrics"]:
                raise ValueError(
                    f"the compressed variant {row['name']!r} has no {self.main_metric!r} among its metrics "
                    f"{sorted(row['metrics'])}; score it on the same data as the student"
                )

    @classmethod
    def from_models(
        cls,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        *,
        task: str,
        teacher_metrics: Mapping[str, float],
        student_metrics: Mapping[str, float],
        args: DistillationTrainingArguments,
        latency: dict[str, Any] | None = None,
        compression: list[dict[str, Any]] | None = None,
        training_time_s: float | None = None,
        teacher_name: str | None = None,
        teacher_finetuning: dict[str, Any] | None = None,
        main_metric: str | None = None,
        transfer_set: dict[str, Any] | None = None,
        train_rows: int | None = None,
        eval_rows: int | None = None,
        student_start: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> DistillationReport:
        """Build a report from the two models and the training arguments, measuring sizes on the way.

        The teacher layers come from `student.config.distillation`, which `make_student` records. Sizes are measured
        by saving each model to a temporary directory.

        Args:
            teacher (`PreTrainedModel`): The teacher.
            student (`PreTrainedModel`): The trained student.
            task (`str`): The task name.
            teacher_metrics (`Mapping[str, float]`): The teacher's evaluation metrics.
            student_metrics (`Mapping[str, float]`): The student's evaluation metrics.
            args (`DistillationTrainingArguments`): The arguments the student was trained with.
            latency (`dict[str, Any]`, *optional*): `measure_latency({"teacher": ..., "student": ...}, ...)`.
            compression (`list[dict[str, Any]]`, *optional*): See the class docstring.
            training_time_s (`float`, *optional*): The training time, e.g. `train_result.metrics["train_runtime"]`.
            teacher_name (`str`, *optional*):
                The teacher's Hub id or path; defaults to the one `make_student` recorded, else the teacher's
                `config.name_or_path`.
            teacher_finetuning (`dict[str, Any]`, *optional*): See the class docstring.
            main_metric (`str`, *optional*): See the class docstring.
            transfer_set (`dict[str, Any]`, *optional*): See the class docstring.
            train_rows (`int`, *optional*), eval_rows (`int`, *optional*): See the class docstring.
            student_start (`str`, *optional*): See the class docstring. The student's own record of an earlier
                distillation (`config.distillation`) then describes that earlier run, and is not read.
            settings (`Mapping[str, Any]`, *optional*): More settings to state beside the hyperparameters (a recipe's
                own, e.g. `mlm_probability`).

        Returns:
            `DistillationReport`: The report.
        """
        record = {} if student_start else getattr(student.config, "distillation", None) or {}
        # `lr_scheduler_type` and `optim` are enums; their values are the strings a user passes.
        hyperparameters = {
            name: value.value if isinstance(value := getattr(args, name), Enum) else value
            for name in _HYPERPARAMETERS
            if hasattr(args, name)
        }
        hyperparameters["total_train_batch_size"] = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        )
        hyperparameters.update(settings or {})
        return cls(
            task=task,
            teacher_metrics=dict(teacher_metrics),
            student_metrics=dict(student_metrics),
            teacher_parameters=count_parameters(teacher),
            student_parameters=count_parameters(student),
            teacher_size_bytes=size_on_disk(teacher),
            student_size_bytes=size_on_disk(student),
            temperature=args.temperature,
            loss_weights={term.flag: getattr(args, term.flag) for term in LOSS_TERMS.values()},
            teacher=teacher_name or record.get("teacher") or teacher.config.name_or_path or None,
            teacher_finetuning=teacher_finetuning,
            student_start=student_start,
            teacher_layers=record.get("teacher_layers"),
            teacher_num_layers=record.get("teacher_num_layers", teacher.config.num_hidden_layers),
            student_type=record.get("student_type", "transformer"),
            embedding_init=record.get("embedding_init"),
            transfer_set=transfer_set,
            train_rows=train_rows,
            eval_rows=eval_rows,
            main_metric=main_metric,
            latency=latency,
            compression=compression,
            training_time_s=training_time_s,
            hyperparameters=hyperparameters,
        )

    @property
    def quality_metrics(self) -> list[str]:
        """The metric names to compare, main metric first: those of either model, minus run bookkeeping."""
        names = [self.main_metric]
        for metrics in (self.teacher_metrics, self.student_metrics):
            names += [
                name
                for name, value in metrics.items()
                if name not in names and not is_bookkeeping(name) and isinstance(value, (int, float))
            ]
        return names

    @property
    def retention(self) -> float | None:
        """The student's main metric as a percentage of the teacher's (see `retention`)."""
        return retention(
            self.student_metrics[self.main_metric],
            self.teacher_metrics[self.main_metric],
            lower_is_better=is_lower_better(self.main_metric),
        )

    @property
    def speedups(self) -> dict[int, float]:
        """The student's speedup over the teacher by batch size; empty when latency was not measured."""
        if self.latency is None:
            return {}
        return {size: entry["speedup"] for size, entry in self.latency["results"]["student"].items()}

    def to_dict(self) -> dict[str, Any]:
        """The content of `results.json`: every field, plus `retention_percent` and `speedup`.

        Keys are strings and non-finite numbers are `None` (JSON has no NaN), so the dict survives a JSON round trip
        unchanged.
        """
        return _jsonable({**asdict(self), "retention_percent": self.retention, "speedup": self.speedups})

    def save_json(self, path: str | os.PathLike) -> None:
        """Write `to_dict()` to `path` as indented JSON, creating the parent directory if needed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _number(value: Any, digits: int = 4) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _layers(report: DistillationReport) -> str:
    """E.g. "teacher layers 0, 2, 4 of 6"."""
    of = f" of {report.teacher_num_layers}" if report.teacher_num_layers is not None else ""
    if report.teacher_layers is None:
        return f"teacher layers (not recorded){of}"
    return "teacher layers " + ", ".join(str(layer) for layer in report.teacher_layers) + of


def _metric_rows(report: DistillationReport) -> list[tuple[str, str, str, str]]:
    """(metric, teacher, student, retention) for each quality metric, the main one first and marked."""
    rows = []
    for name in report.quality_metrics:
        teacher, student = report.teacher_metrics.get(name), report.student_metrics.get(name)
        label = f"{name} (main)" if name == report.main_metric else name
        kept = retention(student, teacher, lower_is_better=is_lower_better(name))
        rows.append((label, _number(teacher), _number(student), _percent(kept)))
    return rows


def _size_speed_rows(report: DistillationReport) -> list[tuple[str, str, str]]:
    """(quantity, teacher, student) for parameters, size on disk, latency and speedup at each batch size."""
    rows = [
        ("parameters", f"{report.teacher_parameters:,}", f"{report.student_parameters:,}"),
        (
            "size on disk (MB)",
            _number(report.teacher_size_bytes / 1e6, 2),
            _number(report.student_size_bytes / 1e6, 2),
        ),
    ]
    if report.latency is not None:
        teacher, student = report.latency["results"]["teacher"], report.latency["results"]["student"]
        for size in report.latency["batch_sizes"]:
            rows.append(
                (
                    f"latency, batch {size} (ms)",
                    _number(teacher[size]["median_s"] * 1e3, 2),
                    _number(student[size]["median_s"] * 1e3, 2),
                )
            )
        for size in report.latency["batch_sizes"]:
            # Relative to the teacher, so its own column is 1 by definition.
            rows.append((f"speedup, batch {size}", "1.00x", f"{student[size]['speedup']:.2f}x"))
    return rows


def compression_rows(report: DistillationReport) -> list[tuple[str, ...]]:
    """(model, main metric, drop against the student in points, parameters, size in MB, then the speedup over the
    teacher at each measured batch size) for the student and each compressed variant; empty without variants."""
    if not report.compression:
        return []
    sizes = report.latency["batch_sizes"] if report.latency is not None else []
    results = report.latency["results"] if report.latency is not None else {}
    reference = report.student_metrics.get(report.main_metric)
    entries = [
        {
            "name": "student",
            "metrics": report.student_metrics,
            "parameters": report.student_parameters,
            "size_bytes": report.student_size_bytes,
        },
        *report.compression,
    ]
    rows = []
    for entry in entries:
        value = entry["metrics"].get(report.main_metric)
        drop = (
            100 * (reference - value)
            if isinstance(value, (int, float)) and isinstance(reference, (int, float))
            else float("nan")
        )
        speedups = [
            f"{results[entry['name']][size]['speedup']:.2f}x" if entry["name"] in results else "n/a" for size in sizes
        ]
        size = entry.get("size_bytes")
        rows.append(
            (
                entry["name"],
                _number(value),
                _number(drop, 2),
                f"{entry['parameters']:,}",
                _number(size / 1e6, 2) if isinstance(size, int) else "n/a",
                *speedups,
            )
        )
    return rows


def compression_header(report: DistillationReport) -> tuple[str, ...]:
    """The column names of `compression_rows`."""
    sizes = report.latency["batch_sizes"] if report.latency is not None else []
    return (
        "model",
        report.main_metric,
        "drop vs student (points)",
        "parameters",
        "size (MB)",
        *(f"speedup vs teacher, batch {size}" for size in sizes),
    )


def format_table(report: DistillationReport) -> str:
    """Render a report as a plain-text table: teacher and student side by side, and the student's retention.

    Args:
        report (`DistillationReport`): The report.

    Returns:
        `str`: The table, one row per line, with a title line naming the task and the kept layers.
    """
    rows: list[tuple[str, str, str]] = [("", "teacher", "student")]
    for label, teacher, student, _ in _metric_rows(report):
        rows.append((label, teacher, student))
    rows.append((f"retention ({report.main_metric})", "", _percent(report.retention)))
    rows += _size_speed_rows(report)
    if report.training_time_s is not None:
        rows.append(("training time (s)", "", _number(report.training_time_s, 1)))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    teacher = f" (teacher: {report.teacher})" if report.teacher else ""
    origin = f"from {_layers(report)}" if report.student_type == "transformer" else f"({report.student_type})"
    if report.student_start:
        origin = f"started from {report.student_start}"
    lines = [f"{report.task}: student {origin}{teacher}"]
    lines += [
        f"{label:<{widths[0]}}  {teacher:>{widths[1]}}  {student:>{widths[2]}}".rstrip()
        for label, teacher, student in rows
    ]
    data = describe_data(report)
    if data:
        lines.append(data)
    compressed = compression_rows(report)
    if compressed:
        table = [compression_header(report), *compressed]
        widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
        lines.append("Compressed students:")
        lines += [
            "  ".join(
                f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}" for i, cell in enumerate(row)
            ).rstrip()
            for row in table
        ]
    return "\n".join(lines)


def _epochs(count: float) -> str:
    return f"{count:g} epoch" + ("" if count == 1 else "s")


def describe_data(report: DistillationReport) -> str | None:
    """One line on what the scores mean: how the teacher was made, what the student trained on, what both were
    scored on. `None` when the report records none of it."""
    parts = []
    stage = report.teacher_finetuning
    if stage:
        epochs = stage.get("training", {}).get("num_train_epochs")
        rows = stage.get("train_rows")
        parts.append(
            "teacher fine-tuned here"
            + (f" for {_epochs(epochs)}" if isinstance(epochs, (int, float)) else "")
            + (f" on {rows:,} train rows" if rows else "")
        )
    elif report.teacher:
        parts.append("teacher used as given")
    if report.train_rows:
        epochs = report.hyperparameters.get("num_train_epochs")
        steps = report.hyperparameters.get("max_steps")
        if isinstance(steps, int) and steps > 0:  # `max_steps` overrides `num_train_epochs`
            length = f" for {steps} optimizer steps"
        else:
            length = f" for {_epochs(epochs)}" if isinstance(epochs, (int, float)) else ""
        parts.append(f"student trained{length} on {report.train_rows:,} rows")
    if report.eval_rows:
        parts.append(f"both scored on {report.eval_rows:,} {report.task} validation rows")
    return ("What the numbers mean: " + "; ".join(parts) + ".") if parts else None

"""What a run produced, written down: `DistillationReport` (`results.json`), the printed table and the model card.

The card's loss terms and citations come from the registry in `hf_distill.losses` (`LOSS_TERMS`, `CITATIONS`), and
GLUE's from `hf_distill.glue.GLUE_CITATION`; sizes and latency from `hf_distill.measure`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import (
    PreTrainedModel,
)
from transformers.utils import logging

from .arguments import DistillationTrainingArguments
from .glue import GLUE_CITATION, HUB_DATASET, GlueTask, get_task
from .losses import CITATIONS, LOSS_TERMS, LossTerm
from .measure import collect_versions, count_parameters, machine_info, size_on_disk

logger = logging.get_logger(__name__)


# Entries of `Trainer.evaluate()` that describe the evaluation run rather than the model's quality. They are kept in
# `results.json` but left out of tables, retention and the model card. `loss` is among them because the evaluation
# loss of a distillation run mixes the loss terms and is not comparable between teacher and student.
_BOOKKEEPING_METRICS = frozenset(
    {"loss", "runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time"}
)


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


def retention(student_score: float | None, teacher_score: float | None) -> float | None:
    """The student's score as a percentage of the teacher's: `student / teacher * 100`.

    Args:
        student_score (`float`, *optional*): The student's value of a higher-is-better metric.
        teacher_score (`float`, *optional*): The teacher's value of the same metric.

    Returns:
        `float` or `None`: The percentage, or `None` when it means nothing: a teacher score of 0 or below (a Matthews
        correlation can be), or a missing or non-finite score.
    """
    if student_score is None or teacher_score is None:
        return None
    if not (math.isfinite(student_score) and math.isfinite(teacher_score)) or teacher_score <= 0:
        return None
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
        teacher_layers (`list[int]`, *optional*): The teacher layers the student was initialised from (0-based).
        teacher_num_layers (`int`, *optional*): The teacher's layer count.
        main_metric (`str`, *optional*):
            The metric that retention is computed on; defaults to the GLUE task's main metric (`glue.main_metric`).
            Required for a task outside GLUE.
        latency (`dict[str, Any]`, *optional*):
            The result of `measure_latency` for models named `"teacher"` and `"student"`.
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
    teacher_layers: list[int] | None = None
    teacher_num_layers: int | None = None
    main_metric: str | None = None
    latency: dict[str, Any] | None = None
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
        training_time_s: float | None = None,
        teacher_name: str | None = None,
        teacher_finetuning: dict[str, Any] | None = None,
        main_metric: str | None = None,
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
            training_time_s (`float`, *optional*): The training time, e.g. `train_result.metrics["train_runtime"]`.
            teacher_name (`str`, *optional*):
                The teacher's Hub id or path; defaults to the one `make_student` recorded, else the teacher's
                `config.name_or_path`.
            teacher_finetuning (`dict[str, Any]`, *optional*): See the class docstring.
            main_metric (`str`, *optional*): See the class docstring.

        Returns:
            `DistillationReport`: The report.
        """
        record = getattr(student.config, "distillation", None) or {}
        # `lr_scheduler_type` and `optim` are enums; their values are the strings a user passes.
        hyperparameters = {
            name: value.value if isinstance(value := getattr(args, name), Enum) else value
            for name in _HYPERPARAMETERS
            if hasattr(args, name)
        }
        hyperparameters["total_train_batch_size"] = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        )
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
            teacher_layers=record.get("teacher_layers"),
            teacher_num_layers=record.get("teacher_num_layers", teacher.config.num_hidden_layers),
            main_metric=main_metric,
            latency=latency,
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
                if name not in names and name not in _BOOKKEEPING_METRICS and isinstance(value, (int, float))
            ]
        return names

    @property
    def retention(self) -> float | None:
        """The student's main metric as a percentage of the teacher's (see `retention`)."""
        return retention(self.student_metrics[self.main_metric], self.teacher_metrics[self.main_metric])

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


def _term_of(flag: str) -> LossTerm | None:
    """The registry entry of a weight argument (`"alpha_cos"`), or `None` for a name the registry does not know."""
    return next((term for term in LOSS_TERMS.values() if term.flag == flag), None)


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
        rows.append((label, _number(teacher), _number(student), _percent(retention(student, teacher))))
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
    lines = [f"{report.task}: student from {_layers(report)}{teacher}"]
    lines += [
        f"{label:<{widths[0]}}  {teacher:>{widths[1]}}  {student:>{widths[2]}}".rstrip()
        for label, teacher, student in rows
    ]
    return "\n".join(lines)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _is_hub_id(name: str) -> bool:
    """Whether `name` looks like a Hub repository id (`name` or `owner/name`) rather than a local path."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not name.startswith(".")


def _usage(model_id: str, pipeline_tag: str, glue_task: GlueTask | None) -> str:
    if pipeline_tag != "text-classification":
        return f'from transformers import pipeline\n\nmodel = pipeline("{pipeline_tag}", model="{model_id}")'
    # STS-B has one regression output: the raw score is wanted, not a softmax over a single logit.
    options = ', function_to_apply="none"' if glue_task is not None and glue_task.is_regression else ""
    if glue_task is not None and glue_task.sentence2_key is not None:
        call = 'classifier({"text": "A man is playing a guitar.", "text_pair": "A person plays an instrument."})'
    else:
        call = 'classifier("A charming and affecting journey.")'
    return (
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_id}"{options})\n'
        f"print({call})"
    )


CARD_TAG = "hf-distill"


def is_distillation_card(path: str | os.PathLike) -> bool:
    """Whether `path` is a model card written by `model_card`: its metadata carries the `hf-distill` tag.

    `DistillationTrainer.create_model_card` (which `push_to_hub` calls) keeps such a card instead of writing
    `Trainer`'s generic one, which knows nothing of the teacher.
    """
    if not os.path.isfile(path):
        return False
    try:
        tags = ModelCard.load(path).data.tags or []
    except Exception:  # an unreadable or hand-written README is simply not ours
        return False
    return CARD_TAG in tags


def hub_base_model(teacher: str | os.PathLike | None, *, explicit: str | None = None) -> str | None:
    """The Hub id to record as the card's `base_model`, or `None` when none is known.

    In order: `explicit` (a flag such as `--base_model_id`); the teacher reference itself when it is a Hub id rather
    than an existing local path; the `_name_or_path` that a local teacher's own `config.json` records, when that is
    a Hub id. A local path is never returned: the Hub would not resolve it, and it would publish the user's
    directory layout.

    Raises:
        ValueError: If `explicit` is not a Hub id.
    """
    if explicit is not None:
        if not _is_hub_id(explicit) or os.path.exists(explicit):
            raise ValueError(f"--base_model_id must be a Hub model id such as 'owner/name', got {explicit!r}")
        return explicit
    if teacher is None:
        return None
    reference = os.fspath(teacher)
    if not os.path.exists(reference):
        return reference if _is_hub_id(reference) else None
    config = Path(reference) / "config.json"
    try:
        recorded = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(recorded, str) and _is_hub_id(recorded) and not os.path.exists(recorded):
        return recorded
    return None


def model_card(
    report: DistillationReport,
    *,
    model_name: str,
    base_model: str | None,
    dataset_name: str = HUB_DATASET,
    dataset_config: str | None = None,
    hub_model_id: str | None = None,
    pipeline_tag: str = "text-classification",
    eval_rows: int | None = None,
    eval_rows_available: int | None = None,
    validation_file: str | os.PathLike | None = None,
) -> str:
    """Write a Hugging Face model card (`README.md`) for the student of a report.

    The YAML front matter is produced by `huggingface_hub.ModelCardData`, so the Hub parses it: `base_model`,
    `library_name: transformers`, `tags` (`distillation`, `hf-distill` and the pipeline tag), `datasets`, `metrics`,
    `pipeline_tag` and a `model-index` with the student's results. The body says what the model is, which teacher
    layers it kept, the loss weights and temperature, the metrics of teacher and student side by side with retention,
    size and speed (measured in one run, see `measure_latency`), how to use it, the training settings and versions,
    and the BibTeX of Hinton et al. (2015), Sanh et al. (2019), Tang et al. (2019) when its MSE term was used, and
    GLUE when the dataset is GLUE.

    Args:
        report (`DistillationReport`): The report.
        model_name (`str`): The card's title and the `model-index` name.
        base_model (`str`, *optional*):
            The teacher's Hub id (see `hub_base_model`); `None` leaves `base_model` out. A local path is refused.
        dataset_name (`str`, *optional*, defaults to `"nyu-mll/glue"`): The Hub id of the dataset.
        dataset_config (`str`, *optional*): The dataset configuration; defaults to `report.task`.
        hub_model_id (`str`, *optional*): The student's Hub id for the usage snippet; defaults to `model_name`.
        pipeline_tag (`str`, *optional*, defaults to `"text-classification"`): The Hub pipeline tag.
        eval_rows (`int`, *optional*): The rows the scores were measured on (of the first validation split).
        eval_rows_available (`int`, *optional*): The rows that split has; when larger than `eval_rows`, the
            `model-index` and the text say the scores are from a subset.
        validation_file (`str` or `os.PathLike`, *optional*): The user's file the scores were measured on instead of
            the dataset's own split; the `model-index` then names that file, not the dataset.

    Returns:
        `str`: The card, front matter first.

    Raises:
        ValueError: If `base_model` is a local path.
    """
    if base_model is not None and (not _is_hub_id(base_model) or os.path.exists(base_model)):
        raise ValueError(
            f"base_model {base_model!r} is a local path, which the Hub cannot resolve; pass a Hub id or None (see "
            "hf_distill.report.hub_base_model)"
        )
    dataset_config = dataset_config or report.task
    glue_task = _glue_task(dataset_config) if dataset_name in (HUB_DATASET, "glue") else None
    pretty_dataset = f"GLUE {glue_task.local_dir}" if glue_task is not None else dataset_name
    split = glue_task.validation_splits[0] if glue_task is not None else None
    # What the scores were measured on: the dataset's split, a subset of it, or the user's own file.
    measured_type, measured_name = dataset_name, pretty_dataset
    if validation_file is not None:
        measured_type = "local-file"
        measured_name = f"{Path(validation_file).name} ({eval_rows} rows, the user's {dataset_config} file)"
        split = "validation"
    elif eval_rows is not None and eval_rows_available is not None and eval_rows < eval_rows_available:
        measured_name = (
            f"{pretty_dataset} ({split or 'evaluation'} subset: first {eval_rows} of {eval_rows_available} rows)"
        )
    elif eval_rows is not None:
        measured_name = f"{pretty_dataset} ({split or 'evaluation'}, {eval_rows} rows)"
    # `combined_score` is the mean of two metrics, not a metric of its own.
    metric_names = [name for name in report.quality_metrics if name != "combined_score"]
    eval_results = [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=measured_type,
            dataset_name=measured_name,
            dataset_config=dataset_config,
            dataset_split=split,
            metric_type=name,
            metric_value=report.student_metrics[name],
        )
        for name in metric_names
        if _number(report.student_metrics.get(name)) != "n/a"
    ]
    card_data = ModelCardData(
        base_model=base_model,
        datasets=[dataset_name] if validation_file is None else None,
        library_name="transformers",
        metrics=metric_names,
        model_name=model_name,
        pipeline_tag=pipeline_tag,
        tags=["distillation", CARD_TAG, pipeline_tag],
        eval_results=eval_results or None,
    )

    if base_model is not None:
        teacher_link = f"[{base_model}](https://huggingface.co/{base_model})"
    else:
        teacher_link = "a local teacher"
    dataset_link = (
        f"[{dataset_name}](https://huggingface.co/datasets/{dataset_name})"
        if _is_hub_id(dataset_name)
        else dataset_name
    )
    used = [name for name, weight in report.loss_weights.items() if weight]
    terms_used = [_term_of(flag) for flag in used]
    objective = " + ".join(
        f"{report.loss_weights[flag]:g} · {term.symbol if term else flag}" for flag, term in zip(used, terms_used)
    )
    terms = "\n".join(
        f"- `{term.symbol}` (`{term.flag}`): {term.description}" for term in terms_used if term is not None
    )
    share = report.student_parameters / report.teacher_parameters * 100 if report.teacher_parameters else None

    if report.latency is None:
        speed_note = "Latency was not measured."
    else:
        latency = report.latency
        devices = set(latency.get("devices", {}).values()) - {"cpu"}
        where = ", ".join(sorted(devices)) if devices else report.machine.get("processor") or "CPU"
        speed_note = (
            f"Latency is the median over {latency['repeats']} forward passes on sequences of {latency['seq_len']} "
            f"tokens (warm-up passes per model: {latency['warmup']}), teacher and student interleaved in one run "
            f"({where}, {latency['num_threads']} torch threads). "
            "Speedup is the teacher's time divided by the student's in the same round (median over rounds): it is "
            "the reliable figure. Absolute times depend on the machine and its load."
        )
    hyperparameters = dict(report.hyperparameters)
    hyperparameters["temperature"] = report.temperature
    hyperparameters.update(report.loss_weights)
    if report.training_time_s is not None:
        hyperparameters["training_time_s"] = round(report.training_time_s, 1)

    # Knowledge distillation itself and DistilBERT's layer-copying initialisation, then the papers of the loss terms.
    papers = dict.fromkeys(["hinton2015", "sanh2019", *(term.paper for term in terms_used if term is not None)])
    citations = [CITATIONS[paper] for paper in papers if paper is not None]
    if glue_task is not None:
        citations.append(GLUE_CITATION)

    finetuning_note = None
    if report.teacher_finetuning:
        stage = report.teacher_finetuning
        training = stage.get("training", {})
        when = "by an earlier run into the same directory (reused)" if stage.get("reused") else "by this run"
        finetuning_note = (
            f"The teacher was first fine-tuned from {teacher_link} on `{stage.get('task')}` {when} "
            f"({training.get('num_train_epochs')} epochs, learning rate {training.get('learning_rate')}, "
            f"{stage.get('train_rows')} training rows); the teacher scores below are that fine-tuned teacher's."
        )
    sections = [
        f"# {model_name}",
        f"This model is a student distilled from {teacher_link} with hf-distill (knowledge distillation as a drop-in "
        f"Hugging Face `Trainer`), on the `{dataset_config}` configuration of {dataset_link}"
        + (f" ({pretty_dataset})." if glue_task is not None else "."),
        "## Model description",
        f"The student was initialised from {_layers(report)} (0-based), copied with their weights; "
        "the embeddings and the task head were copied as they are, as in DistilBERT (Sanh et al., 2019). It has "
        f"{report.student_parameters:,} parameters"
        + (f", {share:.1f}% of the teacher's {report.teacher_parameters:,}." if share is not None else "."),
        *([finetuning_note] if finetuning_note else []),
        f"It was trained on the loss `{objective}` at temperature T = {report.temperature:g}:\n\n{terms}",
        "## Evaluation results",
        f"Measured on {measured_name}, main metric `{report.main_metric}`. Retention is the student's score "
        "as a percentage of the teacher's.",
        _markdown_table(("Metric", "Teacher", "Student", "Retention"), _metric_rows(report)),
        "## Size and speed",
        _markdown_table(("", "Teacher", "Student"), _size_speed_rows(report)),
        speed_note,
        "## How to use",
        f"```python\n{_usage(hub_model_id or model_name, pipeline_tag, glue_task)}\n```",
        "## Training procedure",
        f"Distilled from {teacher_link} with these settings:",
        "\n".join(f"- {name}: {value}" for name, value in hyperparameters.items()),
        "### Framework versions",
        "\n".join(f"- {name}: {version}" for name, version in report.versions.items()),
        "## Citation",
        "```bibtex\n" + "\n\n".join(citations) + "\n```",
    ]
    return f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"

"""The Hugging Face model card of a distilled student (`README.md`), and the rules for its `base_model`.

The card's loss terms and citations come from the registry in `hf_distill.losses` (`LOSS_TERMS`, `CITATIONS`), and
GLUE's from `hf_distill.glue.GLUE_CITATION`; its numbers from a `hf_distill.results.DistillationReport`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel
from transformers.utils import logging

from .arguments import DistillationTrainingArguments
from .glue import GLUE_CITATION, HUB_DATASET, GlueTask
from .losses import CITATIONS, LOSS_TERMS, LossTerm
from .measure import measure_latency
from .results import (
    DistillationReport,
    _glue_task,
    _layers,
    _metric_rows,
    _number,
    _size_speed_rows,
    compression_header,
    compression_rows,
    is_lower_better,
)

if TYPE_CHECKING:
    from .compression import CompressedModel

logger = logging.get_logger(__name__)


def _term_of(flag: str) -> LossTerm | None:
    """The registry entry of a weight argument (`"alpha_cos"`), or `None` for a name the registry does not know."""
    return next((term for term in LOSS_TERMS.values() if term.flag == flag), None)


def _split_of(metric: str, glue_task: GlueTask | None) -> str | None:
    """The validation split a metric name is prefixed with (MNLI's `validation_mismatched_accuracy`), if any."""
    for name in glue_task.validation_splits if glue_task is not None and len(glue_task.validation_splits) > 1 else ():
        if metric.startswith(name + "_"):
            return name
    return None


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _is_hub_id(name: str) -> bool:
    """Whether `name` looks like a Hub repository id (`name` or `owner/name`) rather than a local path."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not name.startswith(".")


def _usage(model_id: str, pipeline_tag: str, glue_task: GlueTask | None, *, tiny_student: bool = False) -> str:
    # A BiLSTM or TextCNN student is an architecture transformers knows only once hf_distill has registered it.
    imports = (
        "import hf_distill  # registers the student's architecture with the Auto classes\n" if tiny_student else ""
    )
    if pipeline_tag != "text-classification":
        return f'{imports}from transformers import pipeline\n\nmodel = pipeline("{pipeline_tag}", model="{model_id}")'
    # STS-B has one regression output: the raw score is wanted, not a softmax over a single logit.
    options = ', function_to_apply="none"' if glue_task is not None and glue_task.is_regression else ""
    if glue_task is not None and glue_task.sentence2_key is not None:
        call = 'classifier({"text": "A man is playing a guitar.", "text_pair": "A person plays an instrument."})'
    else:
        call = 'classifier("A charming and affecting journey.")'
    return (
        f"{imports}from transformers import pipeline\n\n"
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
    dataset_name: str | None = HUB_DATASET,
    dataset_config: str | None = None,
    hub_model_id: str | None = None,
    pipeline_tag: str = "text-classification",
    eval_rows: int | None = None,
    eval_rows_available: int | None = None,
    validation_file: str | os.PathLike | None = None,
    corpus: str | None = None,
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
        dataset_name (`str`, *optional*, defaults to `"nyu-mll/glue"`): The Hub id of the dataset; `None` with
            `corpus` for text that is not on the Hub.
        dataset_config (`str`, *optional*): The dataset configuration; defaults to `report.task`.
        hub_model_id (`str`, *optional*): The student's Hub id for the usage snippet; defaults to `model_name`.
        pipeline_tag (`str`, *optional*, defaults to `"text-classification"`): The Hub pipeline tag.
        eval_rows (`int`, *optional*): The rows the scores were measured on (of the first validation split).
        eval_rows_available (`int`, *optional*): The rows that split has; when larger than `eval_rows`, the
            `model-index` and the text say the scores are from a subset.
        validation_file (`str` or `os.PathLike`, *optional*): The user's file the scores were measured on instead of
            the dataset's own split; the `model-index` then names that file, not the dataset.
        corpus (`str`, *optional*): What a task-agnostic (masked-LM) student was trained on, in words (e.g. "the
            sentences of GLUE (sst2, cola) as unlabelled text"); the scores are then on its held-out split.

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
    dataset_config = dataset_config or (None if corpus is not None else report.task)
    glue_task = _glue_task(dataset_config) if dataset_name in (HUB_DATASET, "glue") and dataset_config else None
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
    if corpus is not None:
        measured_type, split = (dataset_name if dataset_name and _is_hub_id(dataset_name) else "text"), "validation"
        measured_name = f"the held-out split of {corpus}" + (f" ({eval_rows} examples)" if eval_rows else "")
    # `combined_score` is the mean of two metrics, not a metric of its own.
    metric_names = [name for name in report.quality_metrics if name != "combined_score"]
    eval_results = [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=measured_type,
            dataset_name=measured_name,
            dataset_config=dataset_config,
            dataset_split=_split_of(name, glue_task) or split,
            metric_type=name,
            metric_value=report.student_metrics[name],
        )
        for name in metric_names
        if _number(report.student_metrics.get(name)) != "n/a"
    ]
    card_data = ModelCardData(
        base_model=base_model,
        datasets=[dataset_name] if validation_file is None and dataset_name else None,
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
        if dataset_name and _is_hub_id(dataset_name)
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
    tiny = report.student_type != "transformer"
    papers = dict.fromkeys(
        [
            "hinton2015",
            "tang2019" if tiny or report.transfer_set else "sanh2019",
            *(["kim2014"] if report.student_type == "textcnn" else []),
            *(term.paper for term in terms_used if term is not None),
            *(["michel2019"] if any("pruned_heads" in row["method"] for row in report.compression or []) else []),
        ]
    )
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
        f"Hugging Face `Trainer`), on "
        + (
            f"{corpus}, task-agnostically (masked language modelling, as DistilBERT's pre-training phase)."
            if corpus is not None
            else f"the `{dataset_config}` configuration of {dataset_link}"
            + (f" ({pretty_dataset})." if glue_task is not None else ".")
        ),
        "## Model description",
        _student_description(report)
        + f" It has {report.student_parameters:,} parameters"
        + (f", {share:.1f}% of the teacher's {report.teacher_parameters:,}." if share is not None else "."),
        *([_transfer_set_description(report.transfer_set)] if report.transfer_set else []),
        *([finetuning_note] if finetuning_note else []),
        f"It was trained on the loss `{objective}` at temperature T = {report.temperature:g}:\n\n{terms}",
        "## Evaluation results",
        f"Measured on {measured_name}, main metric `{report.main_metric}`. Retention is the student's score "
        "as a percentage of the teacher's"
        + (
            " (for a lower-is-better metric such as perplexity, the teacher's as a percentage of the student's)."
            if any(is_lower_better(name) for name in report.quality_metrics)
            else "."
        ),
        _markdown_table(("Metric", "Teacher", "Student", "Retention"), _metric_rows(report)),
        "## Size and speed",
        _markdown_table(("", "Teacher", "Student"), _size_speed_rows(report)),
        speed_note,
        *_compression_section(report),
        "## How to use",
        f"```python\n{_usage(hub_model_id or model_name, pipeline_tag, glue_task, tiny_student=tiny)}\n```",
        "## Training procedure",
        f"Distilled from {teacher_link} with these settings:",
        "\n".join(f"- {name}: {value}" for name, value in hyperparameters.items()),
        "### Framework versions",
        "\n".join(f"- {name}: {version}" for name, version in report.versions.items()),
        "## Citation",
        "```bibtex\n" + "\n\n".join(citations) + "\n```",
    ]
    return f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def _compression_section(report: DistillationReport) -> list[str]:
    """The card's "Compressed variants" section: each int8 or pruned variant of the student, the flags that made
    it, its score, size and speed; nothing when the run made none."""
    rows = compression_rows(report)
    if not rows:
        return []
    flags = []
    methods = [row["method"] for row in report.compression]
    backends = {method["int8_backend"] for method in methods if "int8_backend" in method}
    fractions = sorted({method["pruned_heads_fraction"] for method in methods if "pruned_heads_fraction" in method})
    recovery = {method["recovery_epochs"] for method in methods if "recovery_epochs" in method}
    if backends:
        flags.append(f"`--int8 --int8_backend {', '.join(sorted(backends))}`")
    if fractions:
        flags.append("`--prune_heads " + " ".join(f"{fraction:g}" for fraction in fractions) + "`")
    if recovery:
        flags.append(f"`--prune_recovery_epochs {', '.join(f'{epochs:g}' for epochs in sorted(recovery))}`")
    return [
        "## Compressed variants",
        f"Made by the same run ({' '.join(flags)}) from the student above, scored on the same rows and timed in the "
        "same interleaved run. Pruning removes the attention heads of least importance over the whole model (Michel "
        "et al., 2019), physically; a recovered variant was then distilled from the unpruned student. Each is in the "
        "repository's `compressed/` folder: reload a pruned one with `hf_distill.load_pruned(path)`, an int8 one "
        "with `hf_distill.load_quantized(path)`.",
        _markdown_table(compression_header(report), rows),
    ]


_TINY_STUDENT_NAMES = {
    "bilstm": "a bidirectional LSTM sequence classifier (`hf_distill.BiLSTMForSequenceClassification`, Tang et al., "
    "2019)",
    "textcnn": "a convolutional sequence classifier (`hf_distill.TextCNNForSequenceClassification`, Kim, 2014)",
}


def _student_description(report: DistillationReport) -> str:
    if report.student_start:
        return (
            f"The student started from the given model `{report.student_start}`, weights and all (not from layers "
            "of this teacher); a head that model lacked started at random."
        )
    if report.student_type == "transformer":
        return (
            f"The student was initialised from {_layers(report)} (0-based), copied with their weights; the embeddings "
            "and the task head were copied as they are, as in DistilBERT (Sanh et al., 2019)."
        )
    start = "the teacher's input embeddings" if report.embedding_init == "teacher" else "random embeddings"
    name = _TINY_STUDENT_NAMES.get(report.student_type, f"a {report.student_type} model")
    return (
        f"The student is {name} that reads the teacher's tokenizer; its token embeddings started from {start}. "
        "Load it after `import hf_distill`, which registers its architecture with the transformers Auto classes."
    )


def _transfer_set_description(transfer: dict[str, Any]) -> str:
    labelled = transfer.get("labelled_rows", 0)
    variants = transfer.get("rows", 0) - labelled
    return (
        f"It was trained on a transfer set (Tang et al., 2019): the {labelled} labelled training rows and {variants} "
        f"variants of them ({transfer.get('n_iter')} drawn per row, duplicates dropped; each word masked with "
        f"probability {transfer.get('p_mask')} or replaced by a word of the same part-of-speech tag with probability "
        f"{transfer.get('p_pos')}, then cut to an n-gram of 1 to {transfer.get('max_ngram')} words with probability "
        f"{transfer.get('p_ng')}; seed {transfer.get('seed')}). The variants carry the teacher's outputs and no gold "
        "label: the task loss used the labelled rows only."
    )


def write_report_and_card(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    *,
    output_dir: str | os.PathLike,
    task: str,
    teacher_metrics: Mapping[str, float],
    student_metrics: Mapping[str, float],
    args: DistillationTrainingArguments,
    seq_len: int,
    latency_repeats: int = 5,
    training_time_s: float | None = None,
    compressed: Sequence[CompressedModel] = (),
    **card_kwargs: Any,
) -> DistillationReport:
    """Measure latency (teacher and student interleaved; `latency_repeats=0` skips it), then write `results.json`
    and the model card `README.md` into `output_dir`. Call it on the main process only.

    Args:
        teacher (`PreTrainedModel`), student (`PreTrainedModel`): The two models.
        output_dir (`str` or `os.PathLike`): The run's output directory.
        task, teacher_metrics, student_metrics, args, training_time_s: As in `DistillationReport.from_models`.
        seq_len (`int`): The sequence length of the latency inputs.
        latency_repeats (`int`, *optional*, defaults to 5): Interleaved rounds of `measure_latency`.
        compressed (`Sequence[CompressedModel]`, *optional*): The student's int8 and pruned variants
            (`hf_distill.compression.compress_student`), timed in the same run and reported beside it.
        **card_kwargs: `teacher_name`, `teacher_finetuning`, `transfer_set`, `train_rows`, `main_metric`,
            `student_start`, `settings` for the report,
            `eval_rows` for both; the rest (`base_model`, `hub_model_id`, ...) for `model_card`.

    Returns:
        `DistillationReport`: The report written.
    """
    latency = None
    if latency_repeats > 0:
        latency = measure_latency(
            {"teacher": teacher, "student": student, **{variant.name: variant.model for variant in compressed}},
            vocab_size=teacher.config.vocab_size,
            seq_len=seq_len,
            repeats=latency_repeats,
        )
    report = DistillationReport.from_models(
        teacher,
        student,
        task=task,
        teacher_metrics=teacher_metrics,
        student_metrics=student_metrics,
        args=args,
        latency=latency,
        compression=[variant.row() for variant in compressed] or None,
        training_time_s=training_time_s,
        teacher_name=card_kwargs.pop("teacher_name", None),
        teacher_finetuning=card_kwargs.pop("teacher_finetuning", None),
        transfer_set=card_kwargs.pop("transfer_set", None),
        train_rows=card_kwargs.pop("train_rows", None),
        eval_rows=card_kwargs.get("eval_rows"),
        main_metric=card_kwargs.pop("main_metric", None),
        student_start=card_kwargs.pop("student_start", None),
        settings=card_kwargs.pop("settings", None),
    )
    output_dir = Path(output_dir)
    report.save_json(output_dir / "results.json")
    card = model_card(report, model_name=output_dir.name, **card_kwargs)
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    return report

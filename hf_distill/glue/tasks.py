"""The nine GLUE tasks (Wang et al. 2018), described with the names of the Hub dataset `nyu-mll/glue`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
from transformers.utils import logging

logger = logging.get_logger(__name__)


HUB_DATASET = "nyu-mll/glue"


GLUE_CITATION = (
    "@inproceedings{wang2018glue,\n"
    "  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},\n"
    "  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and\n"
    "          Bowman, Samuel R.},\n"
    "  booktitle={Proceedings of the 2018 EMNLP Workshop BlackboxNLP: Analyzing and Interpreting Neural Networks\n"
    "             for NLP},\n"
    "  pages={353--355},\n"
    "  year={2018}\n"
    "}"
)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task, described with the names of the Hub dataset `nyu-mll/glue`.

    Args:
        name (`str`):
            The Hub config name, e.g. `"sst2"` or `"stsb"`.
        local_dir (`str`):
            The task's folder in the original GLUE distribution, e.g. `"SST-2"` or `"STS-B"`.
        sentence1_key (`str`):
            The column holding the (first) text.
        sentence2_key (`str`, *optional*):
            The column holding the second text of a pair, or `None` for single-sentence tasks (CoLA, SST-2).
        label_names (`tuple[str, ...]`):
            The Hub `ClassLabel` names in id order; empty for the regression task STS-B.
        main_metric (`str`):
            The key of `compute_glue_metrics`'s result that ranks models on this task: the first metric the GLUE
            leaderboard lists for it (Matthews correlation for CoLA, Pearson for STS-B, F1 for MRPC and QQP, accuracy
            otherwise).
        validation_splits (`tuple[str, ...]`, *optional*, defaults to `("validation",)`):
            The Hub names of the labelled evaluation splits; MNLI has a matched and a mismatched one.
    """

    name: str
    local_dir: str
    sentence1_key: str
    sentence2_key: str | None
    label_names: tuple[str, ...]
    main_metric: str
    validation_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        """Whether the label is a real-valued score (STS-B) rather than a class id."""
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """The number of model outputs: 1 for regression, else the number of classes."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def text_keys(self) -> tuple[str, ...]:
        """The text columns, in the order they are fed to a tokenizer."""
        return (self.sentence1_key,) if self.sentence2_key is None else (self.sentence1_key, self.sentence2_key)

    @property
    def model_config_kwargs(self) -> dict[str, Any]:
        """`from_pretrained` keyword arguments that give a model this task's head: label count, names and problem
        type. With them a teacher and a student loaded separately agree on what class id `i` means."""
        if self.is_regression:
            return {"num_labels": 1, "problem_type": "regression"}
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: i for i, name in enumerate(self.label_names)},
        }

    @property
    def features(self) -> datasets.Features:
        """The Hub's features for this task: the text columns, `label` and `idx`, in the Hub's column order."""
        label = datasets.Value("float32") if self.is_regression else datasets.ClassLabel(names=list(self.label_names))
        return datasets.Features(
            {
                **{key: datasets.Value("string") for key in self.text_keys},
                "label": label,
                "idx": datasets.Value("int32"),
            }
        )


_NLI_NAMES = ("entailment", "not_entailment")


GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", "CoLA", "sentence", None, ("unacceptable", "acceptable"), "matthews_correlation"),
        GlueTask("sst2", "SST-2", "sentence", None, ("negative", "positive"), "accuracy"),
        GlueTask("mrpc", "MRPC", "sentence1", "sentence2", ("not_equivalent", "equivalent"), "f1"),
        GlueTask("stsb", "STS-B", "sentence1", "sentence2", (), "pearson"),
        GlueTask("qqp", "QQP", "question1", "question2", ("not_duplicate", "duplicate"), "f1"),
        GlueTask(
            "mnli",
            "MNLI",
            "premise",
            "hypothesis",
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            validation_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask("qnli", "QNLI", "question", "sentence", _NLI_NAMES, "accuracy"),
        GlueTask("rte", "RTE", "sentence1", "sentence2", _NLI_NAMES, "accuracy"),
        # WNLI's Hub label order is the reverse of RTE's: the original files store 1 for entailment.
        GlueTask("wnli", "WNLI", "sentence1", "sentence2", ("not_entailment", "entailment"), "accuracy"),
    )
}


def _normalize(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


# "SST-2", "sst_2", "STS-B" and the GLUE folder names all normalize to a Hub config name.
_ALIASES: dict[str, str] = {_normalize(task.local_dir): task.name for task in GLUE_TASKS.values()} | {
    task.name: task.name for task in GLUE_TASKS.values()
}


def get_task(task: str | GlueTask) -> GlueTask:
    """Look up a GLUE task by name, case-insensitively, accepting the GLUE folder spellings (`"SST-2"`, `"sts-b"`).

    Args:
        task (`str` or `GlueTask`):
            A task name, or a `GlueTask`, which is returned as is.

    Returns:
        `GlueTask`: the task's entry in `GLUE_TASKS`.

    Raises:
        `ValueError`: if the name is not a GLUE task; the message lists the valid names.
    """
    if isinstance(task, GlueTask):
        return task
    name = _ALIASES.get(_normalize(str(task)))
    if name is None:
        raise ValueError(f"Unknown GLUE task {task!r}; valid names are {', '.join(GLUE_TASKS)} (case-insensitive).")
    return GLUE_TASKS[name]


def main_metric(task: str | GlueTask) -> str:
    """The metric key that ranks models on `task` (and that teacher/student retention is computed on).

    Args:
        task (`str` or `GlueTask`): the task.

    Returns:
        `str`: a key of `compute_glue_metrics`'s result, without the `eval_` prefix that `Trainer` adds.
    """
    return get_task(task).main_metric

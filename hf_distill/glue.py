"""GLUE tasks: the task table, data loading (Hub, local GLUE folder or user files) and offline metrics.

GLUE is the General Language Understanding Evaluation benchmark of Wang et al. (2018), "GLUE: A Multi-Task Benchmark
and Analysis Platform for Natural Language Understanding" (https://arxiv.org/abs/1804.07461); `GLUE_CITATION` holds
the BibTeX entry.

Whatever the source, `load_glue` returns the layout of the Hugging Face Hub dataset `nyu-mll/glue`: the same split
names (`"train"`, `"validation"`, or `"validation_matched"` / `"validation_mismatched"` for MNLI), the same column
names, and the same label ids (a `ClassLabel` with the Hub's names; `float32` scores for STS-B). A model trained on one
source can therefore be evaluated on another without remapping labels. This matters most for RTE and QNLI, whose
original TSV files store the strings `entailment` / `not_entailment` (the Hub maps them to 0 / 1), and for WNLI, whose
Hub label names run the other way round (0 = `not_entailment`).

Metrics are computed with scikit-learn and SciPy rather than `evaluate.load("glue", ...)`, which fetches a metric
script from the Hub and so fails offline. The keys and values are those of the `glue` metric in `evaluate`, plus the
`combined_score` that transformers' `run_glue.py` reports for tasks with two metrics.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef
from transformers import EvalPrediction
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


# ---------------------------------------------------------------------------------------------------------------------
# Local files in the original GLUE layout
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TsvLayout:
    """Where a task's Hub columns sit in a GLUE TSV file.

    `columns` maps each Hub text column, then `"label"`, to a header name, or to a 0-based position for a file without
    a header line (CoLA), which then must have exactly `num_fields` fields per row.
    """

    columns: dict[str, str | int]
    num_fields: int | None = None


_PAIR = _TsvLayout({"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"})
# Each task lists the layouts it accepts; the first whose columns are all in the header is used.
_LAYOUTS: dict[str, tuple[_TsvLayout, ...]] = {
    # Fields: source code, label, original author's mark ("*" when unacceptable), sentence.
    "cola": (_TsvLayout({"sentence": 3, "label": 1}, num_fields=4),),
    "sst2": (_TsvLayout({"sentence": "sentence", "label": "label"}),),
    "mrpc": (_TsvLayout({"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),),
    "stsb": (_TsvLayout({"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),),
    # QQP and MNLI: first the files converted from the Hub parquet (as in the shared GLUE folder), then the original
    # GLUE files (MNLI's `gold_label` holds class names).
    "qqp": (
        _TsvLayout({"question1": "question1", "question2": "question2", "label": "label"}),
        _TsvLayout({"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
    ),
    "mnli": (
        _TsvLayout({"premise": "premise", "hypothesis": "hypothesis", "label": "label"}),
        _TsvLayout({"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}),
    ),
    "qnli": (_TsvLayout({"question": "question", "sentence": "sentence", "label": "label"}),),
    "rte": (_PAIR,),
    "wnli": (_PAIR,),
}


def _local_files(task: GlueTask) -> dict[str, str]:
    """Hub split name -> file name inside the task folder."""
    if task.name == "mnli":
        dev = {"validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"}
    else:
        dev = {"validation": "dev.tsv"}
    return {"train": "train.tsv", **dev}


def _expected_layout(task: GlueTask, glue_dir: Path) -> str:
    files = ", ".join(_local_files(task).values())
    return (
        f"expected the layout of GLUE's download script: {glue_dir}/{task.local_dir}/ holding {files} "
        "(train.tsv may be absent when only evaluating)"
    )


def _iter_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a GLUE TSV file."""
    # `utf-8-sig` drops the byte-order mark that starts the MRPC header. QUOTE_NONE because GLUE fields are never
    # quoted but often start with `"` (MRPC, STS-B, MNLI, QQP): the default dialect would join lines into one field.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if row:
                yield reader.line_num, row


def _encode_labels(values: Iterable[tuple[int, str]], task: GlueTask, path: Path) -> list[int] | list[float]:
    """Turn the label field of each (line, value) into the Hub's label: a class id, or a float for STS-B."""
    if task.is_regression:
        scores = []
        for line, value in values:
            try:
                scores.append(float(value))
            except ValueError:
                raise ValueError(f"{path}, line {line}: label {value!r} is not a number.") from None
        return scores
    # Files store either the class id ("0", "1") or the class name ("entailment"); both map to the Hub id.
    lookup = {name: i for i, name in enumerate(task.label_names)} | {str(i): i for i in range(task.num_labels)}
    ids = []
    for line, value in values:
        label_id = lookup.get(value.strip())
        if label_id is None:
            raise ValueError(f"{path}, line {line}: label {value!r} is not one of {sorted(lookup)} for {task.name}.")
        ids.append(label_id)
    return ids


def _read_glue_tsv(path: Path, task: GlueTask, expected_layout: str) -> datasets.Dataset:
    """Read one GLUE TSV file into a `Dataset` with the Hub's columns, features and label ids."""
    layouts = _LAYOUTS[task.name]
    rows = _iter_rows(path)
    if layouts[0].num_fields is None:
        header = next(rows, (0, []))[1]
        layout = next((lay for lay in layouts if all(c in header for c in lay.columns.values())), None)
        if layout is None:
            wanted = " or ".join(str(list(lay.columns.values())) for lay in layouts)
            raise ValueError(
                f"{path} does not have the columns of a {task.local_dir} file: its header is {header}, but it must "
                f"name {wanted}; {expected_layout}."
            )
        positions = {key: header.index(column) for key, column in layout.columns.items()}
        num_fields = len(header)
    else:
        positions = dict(layouts[0].columns)
        num_fields = layouts[0].num_fields

    columns: dict[str, list] = {key: [] for key in positions}
    lines = []
    for line, row in rows:
        if len(row) != num_fields:
            raise ValueError(
                f"{path}, line {line}: expected {num_fields} tab-separated fields, found {len(row)}; "
                f"{expected_layout}."
            )
        lines.append(line)
        for key, position in positions.items():
            columns[key].append(row[position])
    columns["label"] = _encode_labels(zip(lines, columns["label"]), task, path)
    columns["idx"] = list(range(len(lines)))
    return datasets.Dataset.from_dict(columns, features=task.features)


def _read_glue_dir(task: GlueTask, glue_dir: Path, splits: dict[str, bool]) -> dict[str, datasets.Dataset]:
    """Read the requested splits (split -> required) of `task` from a folder in the original GLUE layout."""
    expected = _expected_layout(task, glue_dir)
    if not glue_dir.is_dir():
        raise ValueError(f"glue_dir {glue_dir} is not a directory; {expected}.")
    task_dir = glue_dir / task.local_dir
    if not task_dir.is_dir():
        raise ValueError(f"GLUE task folder {task_dir} does not exist; {expected}.")
    files = _local_files(task)
    loaded = {}
    for split, required in splits.items():
        path = task_dir / files[split]
        if not path.is_file():
            if not required:
                logger.info(f"{path} not found: loading {task.name} without its {split} split.")
                continue
            if split == "train":
                raise ValueError(
                    f"{path} does not exist: this GLUE folder has no {task.local_dir} training data (the shared "
                    "copy stores QNLI, QQP and MNLI dev-only). Pass a training file with `train_file=` "
                    "(`--train_file`), drop `glue_dir` (`--glue_dir`) to load 'nyu-mll/glue' from the Hub, or set "
                    "`require_train=False` to load the validation data only."
                )
            raise ValueError(f"GLUE file {path} does not exist; {expected}.")
        loaded[split] = _read_glue_tsv(path, task, expected)
        logger.info(f"Loaded {len(loaded[split])} {task.name} {split} rows from {path}.")
    return loaded


# ---------------------------------------------------------------------------------------------------------------------
# User files (csv, tsv, json lines)
# ---------------------------------------------------------------------------------------------------------------------


def _load_user_file(
    path: str | PathLike, task: GlueTask, split: str, cache_dir: str | PathLike | None
) -> datasets.Dataset:
    """Load a csv/tsv/json(l) file with the task's Hub column names and cast its label to the Hub's feature."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The {split} file {path} does not exist.")
    suffix = path.suffix.lower()
    # keep_default_na=False: pandas would otherwise read texts such as "NA", "null" or "" as missing values.
    if suffix == ".csv":
        builder, options = "csv", {"keep_default_na": False}
    elif suffix == ".tsv":
        # Tab-separated files in the GLUE tradition are unquoted, and their texts start with `"` often enough that
        # the default quoting would merge rows.
        builder, options = "csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}
    elif suffix in (".json", ".jsonl"):
        builder, options = "json", {}
    else:
        raise ValueError(f"The {split} file {path} must end in .csv, .tsv, .json or .jsonl, got {suffix!r}.")
    dataset = datasets.load_dataset(
        builder,
        data_files={split: str(path)},
        split=split,
        cache_dir=None if cache_dir is None else str(cache_dir),
        **options,
    )

    if split == "test" and "label" not in dataset.column_names:
        # Rows to predict on need no label; -1 is the Hub's "no label" of its test splits.
        no_label = -1.0 if task.is_regression else -1
        dataset = dataset.add_column("label", [no_label] * len(dataset))
    missing = [column for column in (*task.text_keys, "label") if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {split} file {path} has no column(s) {missing}; found columns {dataset.column_names}. A {task.name} "
            f"file needs the Hub's column names: {[*task.text_keys, 'label']}."
        )

    features = dataset.features.copy()
    for key in task.text_keys:
        features[key] = datasets.Value("string")
    features["label"] = task.features["label"]
    try:
        # A ClassLabel cast maps class names ("entailment") and digit strings to ids.
        dataset = dataset.cast(features)
    except (ValueError, TypeError) as error:
        raise ValueError(f"The labels of the {split} file {path} do not fit {task.name}: {error}") from error
    if not task.is_regression and split != "test":
        # The ClassLabel cast accepts -1 (the Hub's "no label" of test splits), which must not reach training.
        labels = np.asarray(dataset["label"])
        bad = np.unique(labels[(labels < 0) | (labels >= task.num_labels)])
        if bad.size:
            raise ValueError(
                f"The {split} file {path} has label ids {bad.tolist()} outside 0..{task.num_labels - 1} "
                f"({', '.join(task.label_names)})."
            )
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", list(range(len(dataset))), feature=datasets.Value("int32"))
    logger.info(f"Loaded {len(dataset)} {task.name} {split} rows from {path}.")
    return dataset


def load_glue(
    task: str | GlueTask,
    *,
    glue_dir: str | PathLike | None = None,
    train_file: str | PathLike | None = None,
    validation_file: str | PathLike | None = None,
    cache_dir: str | PathLike | None = None,
    require_train: bool = True,
    test_file: str | PathLike | None = None,
    with_test: bool = False,
) -> datasets.DatasetDict:
    """Load a GLUE task with the splits, columns and label ids of the Hub dataset `nyu-mll/glue`.

    Sources, per split, in order of precedence: an explicit file (`train_file`, `validation_file`), then `glue_dir`.
    With neither a folder nor a file the whole task comes from the Hub (`load_dataset("nyu-mll/glue", task)`, which
    also holds unlabelled `test` splits with label -1); local sources are never mixed with the Hub.

    Args:
        task (`str` or `GlueTask`):
            The task, e.g. `"sst2"`, `"SST-2"` or `"mnli"` (see `get_task`).
        glue_dir (`str` or `os.PathLike`, *optional*):
            A folder in the layout of GLUE's download script, `<glue_dir>/<TASK>/train.tsv` and `dev.tsv` (MNLI:
            `dev_matched.tsv`, `dev_mismatched.tsv`), with `<TASK>` the GLUE folder name (`"SST-2"`, `"STS-B"`, ...).
            CoLA files have no header; the others are read by header name. QQP and MNLI files may be the original
            GLUE ones or converted from the Hub parquet with its column names. A row whose field count differs from
            the header's is an error (the Hub's builder silently drops such rows).
        train_file (`str` or `os.PathLike`, *optional*):
            A `.csv`, `.tsv` (tab-separated, unquoted) or `.json`/`.jsonl` file with the Hub's column names (the
            task's text columns and `label`, as ids or class names); it replaces `glue_dir`'s `train.tsv`.
        validation_file (`str` or `os.PathLike`, *optional*):
            As `train_file`, for the first validation split (`"validation"`, or `"validation_matched"` for MNLI).
        cache_dir (`str` or `os.PathLike`, *optional*):
            Passed to `datasets.load_dataset` for the Hub and for user files.
        require_train (`bool`, *optional*, defaults to `True`):
            Whether a missing training split is an error. Set it to `False` to evaluate on a local copy without
            training data (the shared GLUE folder has QNLI, QQP and MNLI dev files only).
        test_file (`str` or `os.PathLike`, *optional*):
            A file as `train_file` whose `label` column may be absent (it becomes -1, the Hub's "no label"): the
            `"test"` split to predict on. Implies `with_test`.
        with_test (`bool`, *optional*, defaults to `False`):
            Keep the unlabelled test splits (the Hub's `test`, MNLI's `test_matched`/`test_mismatched`, or
            `test_file`); `ValueError` when the source has none. Without it, test splits are dropped.

    Returns:
        `datasets.DatasetDict`: `"train"` (unless absent and not required) and the task's validation splits, each
        with the text columns, `label` (`ClassLabel`, or `float32` for STS-B) and `idx` (`int32`). Columns of user
        files beyond these are kept.

    Raises:
        `ValueError`: for an unknown task; a `glue_dir` or file that is missing or laid out otherwise (the message
        names the path and the expected layout); a missing required split; labels outside the task's classes.
    """
    task = get_task(task)
    with_test = with_test or test_file is not None
    if glue_dir is None and train_file is None and validation_file is None:
        logger.info(f"Loading {HUB_DATASET} config {task.name!r} from the Hugging Face Hub.")
        hub = datasets.load_dataset(HUB_DATASET, task.name, cache_dir=None if cache_dir is None else str(cache_dir))
        if test_file is not None:
            hub = datasets.DatasetDict({k: v for k, v in hub.items() if not k.startswith("test")})
            hub["test"] = _load_user_file(test_file, task, "test", cache_dir)
        if with_test or not any(split.startswith("test") for split in hub):
            return hub
        return datasets.DatasetDict({k: v for k, v in hub.items() if not k.startswith("test")})

    files = {"train": train_file, task.validation_splits[0]: validation_file}
    if glue_dir is not None:
        wanted = {split: split != "train" or require_train for split in _local_files(task) if files.get(split) is None}
        loaded = _read_glue_dir(task, Path(glue_dir), wanted)
    else:
        loaded = {}
        if train_file is None and require_train:
            raise ValueError(
                f"No training data for {task.name}: validation_file was given without train_file or glue_dir. Pass "
                "`train_file=` (`--train_file`) or `glue_dir=` (`--glue_dir`), or set `require_train=False`."
            )
        if validation_file is None:
            raise ValueError(
                f"No validation data for {task.name}: train_file was given without validation_file or glue_dir. "
                "Pass `validation_file=` (`--validation_file`) or `glue_dir=` (`--glue_dir`)."
            )
    files["test"] = test_file
    if with_test and test_file is None:
        raise ValueError(
            f"No test data for {task.name}: local GLUE folders and files carry no test split (GLUE's test labels "
            "are private). Pass `test_file=` (`--test_file`) with the rows to predict, or load from the Hub."
        )
    for split, path in files.items():
        if path is not None:
            loaded[split] = _load_user_file(path, task, split, cache_dir)
    order = ["train", *task.validation_splits, "test"]
    return datasets.DatasetDict({split: loaded[split] for split in order if split in loaded})


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------------


def compute_glue_metrics(
    task: str | GlueTask, predictions: Iterable[float] | np.ndarray, labels: Iterable[float] | np.ndarray
) -> dict[str, float]:
    """Compute the GLUE metrics of `task` offline, with the keys of `evaluate`'s `glue` metric.

    - CoLA: `matthews_correlation`;
    - STS-B: `pearson`, `spearmanr` and their mean `combined_score`;
    - MRPC, QQP: `accuracy`, `f1` (of the positive class 1, "equivalent" / "duplicate") and their mean
      `combined_score`;
    - SST-2, MNLI, QNLI, RTE, WNLI: `accuracy`.

    Args:
        task (`str` or `GlueTask`): the task.
        predictions (array-like of shape `(num_examples,)`):
            Predicted class ids, or predicted scores for STS-B. Logits must be reduced first (`make_compute_metrics`
            does it).
        labels (array-like of shape `(num_examples,)`): the reference class ids or scores.

    Returns:
        `dict[str, float]`: the metrics. A correlation is `nan` when either input is constant.
    """
    task = get_task(task)
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape:
        raise ValueError(
            f"predictions and labels must be 1-D arrays of equal length, got shapes {predictions.shape} and "
            f"{labels.shape}; reduce logits with argmax (or use make_compute_metrics) first."
        )
    if predictions.size == 0:
        raise ValueError("Cannot compute GLUE metrics on zero examples.")

    if task.main_metric == "pearson":
        result = {
            "pearson": float(pearsonr(predictions, labels)[0]),
            "spearmanr": float(spearmanr(predictions, labels)[0]),
        }
    elif task.main_metric == "matthews_correlation":
        return {"matthews_correlation": float(matthews_corrcoef(labels, predictions))}
    else:
        result = {"accuracy": float(np.mean(predictions == labels))}
        if task.main_metric == "f1":
            # zero_division=0.0 is sklearn's default value, made explicit to silence its warning.
            result["f1"] = float(f1_score(labels, predictions, zero_division=0.0))
        else:
            return result
    result["combined_score"] = float(np.mean(list(result.values())))
    return result


def make_compute_metrics(task: str | GlueTask) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a `compute_metrics` function for `Trainer` that turns model outputs into `compute_glue_metrics`.

    Args:
        task (`str` or `GlueTask`): the task.

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`: takes the `EvalPrediction` of an evaluation loop whose
        predictions are logits of shape `(num_examples, num_labels)` (argmax is taken) or, for STS-B, scores of shape
        `(num_examples, 1)` or `(num_examples,)`. When the model returns several outputs, the logits are the first.
    """
    task = get_task(task)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            # Models that also return hidden states or attentions put the logits first.
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        labels = eval_prediction.label_ids
        labels = np.asarray(labels[0] if isinstance(labels, (tuple, list)) else labels)
        if predictions.ndim != 2 or predictions.shape[-1] != task.num_labels:
            if not (task.is_regression and predictions.ndim == 1):
                raise ValueError(
                    f"{task.name} expects predictions of shape (num_examples, {task.num_labels}), got "
                    f"{predictions.shape}; check the model's num_labels."
                )
        if task.is_regression:
            predictions = predictions.reshape(-1)
        else:
            predictions = np.argmax(predictions, axis=-1)
        return compute_glue_metrics(task, predictions, labels)

    return compute_metrics

"""GLUE data: the Hub dataset, a local GLUE folder (original TSV layout) or user files, and tokenisation.

Whatever the source, `load_glue` returns the layout of the Hugging Face Hub dataset `nyu-mll/glue`: the same split
names (`"train"`, `"validation"`, or `"validation_matched"` / `"validation_mismatched"` for MNLI), the same column
names, and the same label ids (a `ClassLabel` with the Hub's names; `float32` scores for STS-B). A model trained on one
source can therefore be evaluated on another without remapping labels. This matters most for RTE and QNLI, whose
original TSV files store the strings `entailment` / `not_entailment` (the Hub maps them to 0 / 1), and for WNLI, whose
Hub label names run the other way round (0 = `not_entailment`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import DatasetDict
from transformers import (
    PreTrainedTokenizerBase,
)
from transformers.utils import logging

from ..augment import AugmentationRules, PosTagger, augment_dataset
from .tasks import HUB_DATASET, GlueTask, get_task

logger = logging.get_logger(__name__)


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
                logger.info("%s not found: loading %s without its %s split.", path, task.name, split)
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
        logger.info("Loaded %s %s %s rows from %s.", len(loaded[split]), task.name, split, path)
    return loaded


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
    logger.info("Loaded %s %s %s rows from %s.", len(dataset), task.name, split, path)
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
        logger.info("Loading %s config %r from the Hugging Face Hub.", HUB_DATASET, task.name)
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


def tokenize_transfer_set(
    train: datasets.Dataset,
    task: GlueTask,
    tokenizer: PreTrainedTokenizerBase,
    rules: AugmentationRules,
    *,
    max_seq_length: int = 128,
    pos_tagger: PosTagger | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """The GLUE training rows expanded into a transfer set (`hf_distill.augment`), tokenised.

    Args:
        train (`datasets.Dataset`): The raw training rows kept for the run (the first `max_train_samples`).
        task (`GlueTask`): The task, for its text columns and label type (a regression task's labels are dropped:
            the whole set is then distilled with `alpha_task=0`).
        tokenizer (`PreTrainedTokenizerBase`): The teacher's tokenizer: its mask token, its special tokens.
        rules (`AugmentationRules`): The rules and seed.
        max_seq_length (`int`, *optional*, defaults to 128): Truncation length.
        pos_tagger (`PosTagger`, *optional*): For `rules.p_pos > 0`.

    Returns:
        The tokenised transfer set (the training rows first, then the variants labelled `-100`), and its record for
        `results.json` and the card: the rules, `labelled_rows` and `rows`.
    """
    transfer = augment_dataset(
        train,
        text_columns=task.text_keys,
        mask_token=tokenizer.mask_token,
        rules=rules,
        drop_labels=task.is_regression,
        protected_tokens=tokenizer.all_special_tokens,
        pos_tagger=pos_tagger,
    )
    tokenized = tokenize_glue(DatasetDict(train=transfer), task, tokenizer, max_seq_length=max_seq_length)["train"]
    return tokenized, {**asdict(rules), "labelled_rows": len(train), "rows": len(transfer)}

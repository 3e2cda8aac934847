"""Unlabelled text for task-agnostic (masked-LM) distillation: loading a corpus, and cutting it into blocks.

`load_text_corpus` reads one of three sources into a `DatasetDict` with a `"text"` column and the splits `"train"`
and `"validation"` (the held-out text the teacher and the student are scored on):

- a file: plain text with one document per line (`.txt`), or `.json`/`.jsonl`/`.csv`/`.tsv` with a text column;
- a Hub dataset, by name and configuration;
- a local GLUE folder, whose sentences (every text column of the chosen tasks) are used without their labels: the
  train files give the training text and the dev files the held-out text.

`tokenize_corpus` then cuts the text into training examples as `run_mlm.py` does: each document is tokenised with its
special tokens, the documents are concatenated, and the stream is cut into blocks of `max_seq_length` tokens (the
last partial block is dropped); or, with `line_by_line=True`, each document is one example, truncated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from os import PathLike
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from .glue import get_task, load_glue

logger = logging.get_logger(__name__)

TEXT_COLUMN = "text"
# File suffixes and the `datasets` builder that reads them.
_BUILDERS: dict[str, str] = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".csv": "csv"}
GLUE_TASK_NAMES: tuple[str, ...] = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def check_corpus_flags(
    *,
    train_file: str | PathLike | None = None,
    validation_file: str | PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    glue_dir: str | PathLike | None = None,
    glue_tasks: Sequence[str] | None = None,
    validation_split_percentage: float = 5.0,
) -> None:
    """Raise `ValueError` for corpus settings that cannot load, before any model is loaded.

    Exactly one source is given; `validation_file` goes with `train_file`, `dataset_config_name` with
    `dataset_name`, `glue_tasks` with `glue_dir`; files exist and have a known suffix; the held-out percentage is
    strictly between 0 and 100.
    """
    sources = {"--train_file": train_file, "--dataset_name": dataset_name, "--glue_dir": glue_dir}
    given = [flag for flag, value in sources.items() if value]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one corpus source, got {given or 'none'}: --train_file corpus.txt (one document per line, "
            "or json/csv with a text column), --dataset_name <Hub dataset> [--dataset_config_name <config>], or "
            "--glue_dir <GLUE folder> for the GLUE sentences as unlabelled text"
        )
    for flag, value, needs, present in (
        ("--validation_file", validation_file, "--train_file", train_file),
        ("--dataset_config_name", dataset_config_name, "--dataset_name", dataset_name),
        ("--glue_tasks", glue_tasks, "--glue_dir", glue_dir),
    ):
        if value and not present:
            raise ValueError(f"{flag} {value} goes with {needs}, which is not given")
    for flag, path in (("--train_file", train_file), ("--validation_file", validation_file)):
        if not path:
            continue
        if not Path(path).is_file():
            raise ValueError(f"{flag} {path} does not exist (or is not a file)")
        if Path(path).suffix.lower() not in (*_BUILDERS, ".tsv"):
            raise ValueError(
                f"{flag} {path}: unknown file type {Path(path).suffix!r}; use .txt (one document per line), "
                ".json/.jsonl or .csv/.tsv with a text column"
            )
    if glue_dir and not Path(glue_dir).is_dir():
        raise ValueError(f"--glue_dir {glue_dir} is not a directory")
    for name in glue_tasks or ():
        get_task(name)  # an unknown task name fails here, with the list of tasks
    if not (
        isinstance(validation_split_percentage, (int, float))
        and math.isfinite(validation_split_percentage)
        and 0 < validation_split_percentage < 100
    ):
        raise ValueError(
            f"--validation_split_percentage must be between 0 and 100 (exclusive), got {validation_split_percentage}"
        )


def _text_column(dataset: Dataset, text_column: str | None, where: str) -> str:
    """The column holding the text: `text_column`, else `"text"`, else the only string column."""
    columns = dataset.column_names
    if text_column is not None:
        if text_column not in columns:
            raise ValueError(f"{where} has no column {text_column!r} (--text_column); its columns are {columns}")
        return text_column
    if TEXT_COLUMN in columns:
        return TEXT_COLUMN
    strings = [
        name for name, kind in dataset.features.items() if getattr(kind, "dtype", None) in ("string", "large_string")
    ]
    if len(strings) == 1:
        return strings[0]
    raise ValueError(f"{where} has no 'text' column and {len(strings)} string columns {strings}; pass --text_column")


def _read_file(path: str | PathLike, text_column: str | None, cache_dir: str | PathLike | None) -> Dataset:
    suffix = Path(path).suffix.lower()
    if suffix == ".tsv":
        loaded = datasets.load_dataset("csv", data_files=str(path), delimiter="\t", cache_dir=cache_dir)["train"]
    else:
        loaded = datasets.load_dataset(_BUILDERS[suffix], data_files=str(path), cache_dir=cache_dir)["train"]
    return _as_text(loaded, _text_column(loaded, text_column, str(path)))


def _as_text(dataset: Dataset, column: str) -> Dataset:
    """One `"text"` column, without empty documents."""
    dataset = dataset.select_columns([column])
    if column != TEXT_COLUMN:
        dataset = dataset.rename_column(column, TEXT_COLUMN)
    return dataset.filter(lambda text: isinstance(text, str) and bool(text.strip()), input_columns=[TEXT_COLUMN])


def glue_sentences(glue_dir: str | PathLike, tasks: Sequence[str] | None = None) -> DatasetDict:
    """The sentences of a local GLUE folder as unlabelled text: `train` from the train files, `validation` from the
    dev files (every text column of each task, duplicates removed, and no held-out sentence in `train`)."""
    train: dict[str, None] = {}
    held_out: dict[str, None] = {}
    for name in tasks or GLUE_TASK_NAMES:
        task = get_task(name)
        try:
            splits = load_glue(task, glue_dir=glue_dir, require_train=False)
        except FileNotFoundError as error:
            raise ValueError(f"--glue_dir {glue_dir} lacks files of {task.name}: {error}") from None
        for split, rows in splits.items():
            target = train if split == "train" else held_out
            for key in task.text_keys:
                target.update(dict.fromkeys(text for text in rows[key] if text and text.strip()))
    texts = [text for text in train if text not in held_out]
    if not texts or not held_out:
        raise ValueError(
            f"the GLUE tasks {list(tasks or GLUE_TASK_NAMES)} in {glue_dir} give {len(texts)} training and "
            f"{len(held_out)} held-out sentences; choose tasks with train and dev files (--glue_tasks sst2 cola)"
        )
    return DatasetDict(
        train=Dataset.from_dict({TEXT_COLUMN: texts}), validation=Dataset.from_dict({TEXT_COLUMN: list(held_out)})
    )


def describe_corpus(
    *,
    train_file: str | PathLike | None = None,
    validation_file: str | PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    glue_dir: str | PathLike | None = None,
    glue_tasks: Sequence[str] | None = None,
) -> str:
    """The corpus in words, for the model card: "the sentences of GLUE (sst2, cola) as unlabelled text", ..."""
    if glue_dir:
        return f"the sentences of GLUE ({', '.join(glue_tasks or GLUE_TASK_NAMES)}) as unlabelled text"
    if dataset_name:
        config = f" (`{dataset_config_name}`)" if dataset_config_name else ""
        return f"the text of [{dataset_name}](https://huggingface.co/datasets/{dataset_name}){config}"
    held_out = f", held out: `{Path(validation_file).name}`" if validation_file else ""
    return f"the text of `{Path(train_file).name}`{held_out}" if train_file else "unlabelled text"


def load_text_corpus(
    *,
    train_file: str | PathLike | None = None,
    validation_file: str | PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    glue_dir: str | PathLike | None = None,
    glue_tasks: Sequence[str] | None = None,
    text_column: str | None = None,
    validation_split_percentage: float = 5.0,
    seed: int = 42,
    cache_dir: str | PathLike | None = None,
) -> DatasetDict:
    """Load unlabelled text as a `DatasetDict` with `"train"` and `"validation"` splits and one `"text"` column.

    Give one source (see the module docstring and `check_corpus_flags`). A source without a held-out split (a file
    without `validation_file`, a Hub dataset without `"validation"`) is split: `validation_split_percentage` percent
    of its documents, drawn with `seed`, are held out. Empty documents are dropped.

    Returns:
        `DatasetDict`: `train` and `validation`, each with a `"text"` column.

    Raises:
        ValueError: For flags that cannot load (`check_corpus_flags`), a file without a text column, or a split that
            ends up empty.
    """
    check_corpus_flags(
        train_file=train_file,
        validation_file=validation_file,
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        glue_dir=glue_dir,
        glue_tasks=glue_tasks,
        validation_split_percentage=validation_split_percentage,
    )
    if glue_dir:
        return glue_sentences(glue_dir, glue_tasks)
    held_out: Dataset | None = None
    if train_file:
        train = _read_file(train_file, text_column, cache_dir)
        if validation_file:
            held_out = _read_file(validation_file, text_column, cache_dir)
    else:
        loaded = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
        if "train" not in loaded:
            raise ValueError(f"the dataset {dataset_name} has no 'train' split (it has {list(loaded)})")
        column = _text_column(loaded["train"], text_column, f"the dataset {dataset_name}")
        train = _as_text(loaded["train"], column)
        if "validation" in loaded:
            held_out = _as_text(loaded["validation"], column)
    if held_out is None:
        if len(train) < 2:
            raise ValueError(f"the corpus has {len(train)} non-empty document(s); a held-out split needs at least 2")
        parts = train.train_test_split(test_size=validation_split_percentage / 100, seed=seed)
        train, held_out = parts["train"], parts["test"]
    for split, dataset in (("train", train), ("validation", held_out)):
        if len(dataset) == 0:
            raise ValueError(f"the corpus's {split} split has no non-empty document")
    return DatasetDict(train=train, validation=held_out)


def tokenize_corpus(
    corpus: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    line_by_line: bool = False,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> DatasetDict:
    """Tokenise a corpus into masked-LM examples: blocks of `max_seq_length` tokens, or one document per example.

    Blocks (the default) hold no padding: every position is a real token, so no compute is spent on padding. With
    `line_by_line=True` each document is an example of at most `max_seq_length` tokens, padded per batch.

    Args:
        corpus (`DatasetDict`): From `load_text_corpus`.
        tokenizer (`PreTrainedTokenizerBase`): The teacher's tokenizer.
        max_seq_length (`int`): The block length, or the truncation length with `line_by_line`.
        line_by_line (`bool`, *optional*, defaults to `False`): One example per document instead of blocks.
        max_train_samples, max_eval_samples (`int`, *optional*): Keep the first N examples of `train` and
            `validation`.

    Returns:
        `DatasetDict`: The splits, with the tokenizer's model inputs as columns.

    Raises:
        ValueError: If a split gives no example (a corpus shorter than one block).
    """

    def encode(batch: dict[str, list[str]]) -> dict[str, list[Any]]:
        if line_by_line:
            return tokenizer(batch[TEXT_COLUMN], truncation=True, max_length=max_seq_length)
        return tokenizer(batch[TEXT_COLUMN], verbose=False)

    def group(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
        total = len(joined["input_ids"]) // max_seq_length * max_seq_length
        return {
            key: [values[i : i + max_seq_length] for i in range(0, total, max_seq_length)]
            for key, values in joined.items()
        }

    tokenized = DatasetDict()
    for split, dataset in corpus.items():
        encoded = dataset.map(
            encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenizing the {split} text"
        )
        if not line_by_line:
            encoded = encoded.map(group, batched=True, desc=f"grouping the {split} text in blocks of {max_seq_length}")
        limit = max_train_samples if split == "train" else max_eval_samples
        if limit is not None:
            encoded = encoded.select(range(min(limit, len(encoded))))
        if len(encoded) == 0:
            raise ValueError(
                f"the {split} text gives no example of {max_seq_length} tokens (it is shorter than one block); "
                "use more text, a smaller --max_seq_length, or --line_by_line"
            )
        tokenized[split] = encoded
    return tokenized

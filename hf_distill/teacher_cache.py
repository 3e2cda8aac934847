"""Cached (offline) teacher outputs: the teacher runs once over a dataset, and the student trains from the columns.

[`cache_teacher_outputs`] adds the teacher's outputs to a `datasets.Dataset` as columns; `DistillationTrainer`
with `teacher_model=None` trains from them with no teacher in memory. Each example keeps its own, unpadded outputs,
and [`CachedOutputsCollator`] pads them to each training batch beside the inputs.

Columns (K is the number of teachers, n the example's length in tokens):

- `teacher_logits`: `(K, num_labels)` for sequence-level heads, `(K, n, num_labels)` for token-level heads;
- `teacher_start_logits`, `teacher_end_logits`: `(K, n)` for question answering;
- `teacher_hidden_states`: `(n, hidden_size)`, the first teacher's last hidden state, only when asked;
- `teacher_input_checksum`: a checksum of the example's `input_ids`, so that outputs are never paired with other
  inputs (a dataset re-tokenised after caching, or a collator that masks tokens at random).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn
from transformers import DataCollatorForLanguageModeling
from transformers.utils import logging

from .modeling import forward_input_names, takes_return_dict

logger = logging.get_logger(__name__)

CACHE_FORMAT = 1
LOGITS_COLUMN = "teacher_logits"
START_COLUMN = "teacher_start_logits"
END_COLUMN = "teacher_end_logits"
HIDDEN_COLUMN = "teacher_hidden_states"
CHECKSUM_COLUMN = "teacher_input_checksum"
# The output each column holds, in the order the trainer reads them.
OUTPUT_COLUMNS: dict[str, str] = {
    "logits": LOGITS_COLUMN,
    "start_logits": START_COLUMN,
    "end_logits": END_COLUMN,
    "hidden_states": HIDDEN_COLUMN,
}
CACHE_COLUMNS: tuple[str, ...] = (*OUTPUT_COLUMNS.values(), CHECKSUM_COLUMN)
_LABEL_COLUMNS = {"label", "labels", "label_ids", "start_positions", "end_positions"}
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_CHECKSUM_MODULUS = 2**61 - 1
# Forward passes per `dataset.map` batch: examples are sorted by length within such a window before batching.
_SORT_WINDOW = 16


def cached_columns(column_names: Sequence[str] | None) -> list[str]:
    """The cache columns among `column_names` (empty for a dataset without cached outputs)."""
    return [name for name in CACHE_COLUMNS if name in (column_names or ())]


def input_checksum(input_ids: Sequence[int] | np.ndarray) -> int:
    """A position-weighted checksum of one example's token ids (padding included), as stored in the cache."""
    ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
    return int(((ids + 1) * np.arange(1, ids.size + 1, dtype=np.int64)).sum() % _CHECKSUM_MODULUS)


def model_fingerprint(model: nn.Module) -> str:
    """A hash of a model's class, configuration and every weight: changing any of them changes the cache key."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _collator_fingerprint(data_collator: Callable | None) -> str:
    if data_collator is None:
        return "hf_distill-padding"
    try:
        return Hasher.hash(data_collator)
    except Exception:  # noqa: BLE001 - any object; an unhashable one is keyed by its type
        name = f"{type(data_collator).__module__}.{type(data_collator).__qualname__}"
        logger.warning(
            "cache_teacher_outputs: the data collator %s cannot be hashed, so the cache key holds only its type; "
            "a change inside it does not invalidate the cache",
            name,
        )
        return name


def _pad(features: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the model inputs of `features` to the longest one (attention mask 0 on padding)."""
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, list] = {}
    for f in features:
        n = len(f["input_ids"])
        for key in f:
            pad = pad_token_id if key == "input_ids" else 0
            batch.setdefault(key, []).append(list(f[key]) + [pad] * (longest - n))
        if "attention_mask" not in f:
            batch.setdefault("attention_mask", []).append([1] * n + [0] * (longest - n))
    return {key: torch.tensor(value) for key, value in batch.items()}


def _offsets(batch_ids: torch.Tensor, features: list[dict[str, Any]]) -> list[int]:
    """Where each example's own tokens sit in its padded batch row (0: right padding); raise if they were changed."""
    length = batch_ids.shape[-1]
    offsets = []
    for row, feature in enumerate(features):
        ids = torch.as_tensor(np.asarray(feature["input_ids"], dtype=np.int64))
        n = ids.numel()
        if n <= length and torch.equal(batch_ids[row, :n].cpu(), ids):
            offsets.append(0)
        elif n <= length and torch.equal(batch_ids[row, length - n :].cpu(), ids):
            offsets.append(length - n)
        else:
            raise ValueError(
                f"the data collator changed the input_ids of example {row} of a batch (random masking, as in "
                "DataCollatorForLanguageModeling, or truncation), so cached teacher outputs would be paired with "
                "inputs the teacher never saw; mask the data once before caching and use a collator that only pads, "
                "or distil online with teacher_model=<the teacher>"
            )
    return offsets


def _run_teacher(
    teacher: nn.Module, batch: dict[str, torch.Tensor], *, hidden_states: bool
) -> dict[str, torch.Tensor]:
    device = next(teacher.parameters()).device
    names = forward_input_names(teacher)
    inputs = {k: v.to(device) for k, v in batch.items() if names is None or k in names}
    if hidden_states:
        inputs["output_hidden_states"] = True
    if takes_return_dict(teacher):
        inputs["return_dict"] = True
    out = teacher(**inputs)
    if not isinstance(out, dict):
        raise ValueError(
            f"the teacher {type(teacher).__name__} returned a {type(out).__name__}; cache_teacher_outputs reads "
            "`logits` (or `start_logits`/`end_logits`) and `hidden_states` by name. Return a dict or a ModelOutput"
        )
    wanted = {key: out[key] for key in ("logits", "start_logits", "end_logits") if out.get(key) is not None}
    if not wanted:
        raise ValueError(f"the teacher {type(teacher).__name__} returned no logits to cache")
    if hidden_states:
        if not out.get("hidden_states"):
            raise ValueError(f"hidden_states=True but the teacher {type(teacher).__name__} returned no hidden states")
        wanted["hidden_states"] = out["hidden_states"][-1]
    for key, value in wanted.items():
        if not torch.isfinite(value).all():
            raise ValueError(
                f"the teacher {type(teacher).__name__} produced NaN or inf values in {key}; check its weights and "
                "dtype (fp16 teachers overflow: use bf16 or fp32)"
            )
    return {key: value.float().cpu() for key, value in wanted.items()}


def cache_teacher_outputs(
    teacher: nn.Module | Sequence[nn.Module],
    dataset: Dataset,
    *,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    batch_size: int = 64,
    hidden_states: bool = False,
    cache_file_name: str | None = None,
) -> Dataset:
    """Run the teacher (or an ensemble) once over `dataset` and return it with the outputs as columns.

    The result trains a student with no teacher in memory: `DistillationTrainer(model=student, teacher_model=None,
    train_dataset=cached, ...)`. The teacher runs in eval mode under `torch.inference_mode()` on the device it is on
    (move it to a GPU first to cache faster); its mode is restored afterwards and nothing else of it changes.

    The result is a `datasets` cache entry keyed by the teacher's weights and configuration, the dataset's fingerprint
    (its data and tokenisation) and the collator: running this again with the same three loads it from disk instead
    of running the teacher, and changing any of them computes it anew. A dataset that lives only in memory
    (`Dataset.from_dict`) has no cache directory; pass `cache_file_name` to keep its result on disk.

    Storage: the logits cost `4 * K * num_labels` bytes per example (`4 * K * n * num_labels` for token-level heads,
    which for a masked-LM head over a 30k vocabulary is about 120 KB per token: cache only small heads). The hidden
    states cost `4 * n * hidden_size` bytes per example: 1.5 KB per token for BERT-base, about 2.6 GB for SST-2's
    67k sentences at 10 tokens each at hidden size 384 — ask for them only when `alpha_cos > 0`.

    Args:
        teacher (`nn.Module` or a list of them): The teacher, or the teachers of an ensemble (outputs are stacked,
            so the trainer can weigh them with `teacher_weights`).
        dataset (`datasets.Dataset`): Tokenised examples with `input_ids` (and `attention_mask`, `token_type_ids`
            if the teacher takes them). Other columns are kept and ignored.
        data_collator (*optional*): Pads a list of examples into a batch, like the training collator (it must only
            pad: one that masks at random is refused). By default, right padding with the teacher's pad token.
        batch_size (`int`, *optional*, defaults to 64): Examples per teacher forward pass. Examples are sorted by
            length within windows of 16 such batches before batching, so little of each pass is spent on padding;
            the result keeps the dataset's order.
        hidden_states (`bool`, *optional*, defaults to `False`): Also store the first teacher's last hidden state,
            which `alpha_cos > 0` needs.
        cache_file_name (`str`, *optional*): Where to write the result (see above). The cache key is added to the
            name (`outputs.arrow` becomes `outputs-<key>.arrow`), so a changed teacher, dataset or collator never
            reads the file another one wrote.

    Returns:
        `datasets.Dataset`: `dataset` with the columns listed in this module's docstring.

    Raises:
        ValueError: Before the teacher runs, for a dataset without `input_ids`, one that already holds cached
            columns, a masking collator, or teachers that disagree on their outputs.
    """
    teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
        raise ValueError(
            "cache_teacher_outputs needs a teacher model (or a non-empty list of them); load paths with "
            "AutoModelFor...from_pretrained first"
        )
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"cache_teacher_outputs needs a datasets.Dataset, got {type(dataset).__name__}; build one with "
            "Dataset.from_dict / datasets.load_dataset (an IterableDataset cannot be cached: it streams)"
        )
    if len(dataset) == 0:
        raise ValueError("cache_teacher_outputs got an empty dataset")
    if "input_ids" not in dataset.column_names:
        raise ValueError(
            f"cache_teacher_outputs needs tokenised examples with an `input_ids` column, got {dataset.column_names}; "
            "tokenise the dataset first (dataset.map(tokenize, batched=True))"
        )
    first_ids = dataset[0]["input_ids"]
    nested = (
        first_ids.ndim > 1
        if isinstance(first_ids, (np.ndarray, torch.Tensor))
        else bool(len(first_ids)) and isinstance(first_ids[0], (list, tuple, np.ndarray, torch.Tensor))
    )
    if nested:
        raise ValueError(
            "cache_teacher_outputs caches one sequence per example, but this dataset's input_ids hold several per "
            "example (multiple choice); distil multiple-choice heads online with teacher_model=<the teacher>"
        )
    present = cached_columns(dataset.column_names)
    if present:
        raise ValueError(
            f"the dataset already holds cached teacher outputs {present}; use it as it is, or remove them first "
            f"(dataset.remove_columns({present}))"
        )
    if isinstance(data_collator, DataCollatorForLanguageModeling):
        raise ValueError(
            f"{type(data_collator).__name__} masks tokens at random at every batch, so cached outputs would belong "
            "to other inputs; mask the dataset once first (a fixed `labels` column) and cache with a padding "
            "collator, or distil online"
        )
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, (bool, np.bool_)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    names = forward_input_names(teachers[0])
    input_columns = [
        c
        for c in dataset.column_names
        if c not in _LABEL_COLUMNS and (c in names if names is not None else c in _MODEL_INPUTS)
    ]
    pad_token_id = getattr(getattr(teachers[0], "config", None), "pad_token_id", None) or 0
    fingerprint = Hasher.hash(
        [
            CACHE_FORMAT,
            dataset._fingerprint,
            [model_fingerprint(t) for t in teachers],
            _collator_fingerprint(data_collator),
            input_columns,
            bool(hidden_states),
        ]
    )

    if cache_file_name is not None:
        # `datasets` loads whatever file sits at `cache_file_name`; the key in the name makes a changed teacher, data
        # or collator write a new file instead of reading another teacher's outputs.
        root, extension = os.path.splitext(os.fspath(cache_file_name))
        cache_file_name = f"{root}-{fingerprint[:16]}{extension or '.arrow'}"

    def run(batch: dict[str, list]) -> dict[str, list]:
        # Each forward pass takes examples of similar length (sorted within this window of the dataset), so little of
        # it is spent on padding; the rows are written back in the dataset's order.
        features = [{c: batch[c][i] for c in input_columns} for i in range(len(batch["input_ids"]))]
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        rows: list[dict[str, Any]] = [{} for _ in features]
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            for i, row in zip(chunk, forward([features[i] for i in chunk])):
                rows[i] = row
        return {column: [row[column] for row in rows] for column in rows[0]}

    def forward(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
        returned = data_collator(features) if data_collator is not None else _pad(features, pad_token_id)
        # Collators built with `return_tensors="np"` give arrays: the teacher takes tensors.
        collated = {
            k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in returned.items()
            if isinstance(v, (torch.Tensor, np.ndarray)) and k not in _LABEL_COLUMNS
        }
        if "input_ids" not in collated:
            kinds = {k: type(v).__name__ for k, v in returned.items()}
            raise ValueError(
                f"the data collator returned no `input_ids` tensor (it returned {kinds}); cache_teacher_outputs "
                "needs a collator that pads `input_ids` into a tensor, e.g. DataCollatorWithPadding(tokenizer)"
            )
        offsets = _offsets(collated["input_ids"], features)
        with torch.inference_mode():
            outs = [_run_teacher(t, collated, hidden_states=hidden_states and k == 0) for k, t in enumerate(teachers)]
        keys = set(outs[0])
        for k, out in enumerate(outs[1:], start=1):
            shapes = {key: tuple(out[key].shape) for key in out}
            if set(out) - {"hidden_states"} != keys - {"hidden_states"} or any(
                shapes[key] != tuple(outs[0][key].shape) for key in shapes
            ):
                raise ValueError(
                    f"teacher {k} returned outputs {shapes}, teacher 0 returned "
                    f"{ {key: tuple(v.shape) for key, v in outs[0].items()} }; an ensemble needs teachers with the "
                    "same head and labels"
                )
        rows = []
        for row, feature in enumerate(features):
            n, start = len(feature["input_ids"]), offsets[row]
            columns: dict[str, Any] = {}
            for key, column in OUTPUT_COLUMNS.items():
                if key not in outs[0]:
                    continue
                if key == "hidden_states":
                    columns[column] = outs[0][key][row, start : start + n].numpy()
                    continue
                per_teacher = [out[key][row] for out in outs]
                if key != "logits" or per_teacher[0].dim() == 2:  # token-level: keep the example's own positions
                    per_teacher = [value[start : start + n] for value in per_teacher]
                columns[column] = torch.stack(per_teacher).numpy()
            columns[CHECKSUM_COLUMN] = input_checksum(feature["input_ids"])
            rows.append(columns)
        return rows

    states = [[m.training for m in t.modules()] for t in teachers]
    for t in teachers:
        t.eval()
    try:
        return dataset.map(
            run,
            batched=True,
            batch_size=batch_size * _SORT_WINDOW,
            new_fingerprint=fingerprint,
            cache_file_name=cache_file_name,
            desc="Caching teacher outputs",
        )
    finally:
        for t, state in zip(teachers, states):
            for module, training in zip(t.modules(), state):
                module.training = training


def _as_array(value: Any) -> np.ndarray:
    """A cached value as a float32 array: `datasets` gives nested lists, arrays, or object arrays of arrays."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.astype(np.float32, copy=False)
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) and not np.isscalar(value[0]):
        return np.stack([_as_array(v) for v in value])
    return np.asarray(value, dtype=np.float32)


class CachedOutputsCollator:
    """Wraps a data collator: collates the inputs with it, then pads the cached teacher outputs to the batch.

    Each example's checksum is compared with its `input_ids`, and each collated row with the example's own tokens,
    so cached outputs are never paired with other inputs (a dataset changed after caching, a masking collator).

    Args:
        data_collator: The collator of the inputs (the trainer's).
        columns (`list[str]`): The cache columns of the training set.
    """

    def __init__(self, data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]], columns: list[str]) -> None:
        self.data_collator = data_collator
        self.columns = list(columns)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or not any(column in features[0] for column in self.columns):
            return self.data_collator(features)  # evaluation and prediction sets hold no cached outputs
        inputs = [{k: v for k, v in f.items() if k not in self.columns} for f in features]
        batch = self.data_collator(inputs)
        ids = batch.get("input_ids") if isinstance(batch, Mapping) else None
        if not isinstance(ids, torch.Tensor):
            raise ValueError("training from cached teacher outputs needs batches with an `input_ids` tensor")
        for row, f in enumerate(features):
            if CHECKSUM_COLUMN in f and int(f[CHECKSUM_COLUMN]) != input_checksum(f["input_ids"]):
                raise ValueError(
                    f"the cached teacher outputs of a training example (row {row} of a batch) belong to other "
                    "input_ids: the dataset was changed (re-tokenised, truncated) after cache_teacher_outputs. Cache "
                    "again from the final dataset"
                )
        offsets = _offsets(ids, features)
        length = ids.shape[-1]
        for column in self.columns:
            if column == CHECKSUM_COLUMN:
                continue
            values = [_as_array(f[column]) for f in features]
            # Token-level outputs have a sequence dimension: 0 for hidden states, 1 after the teacher dimension.
            if column == HIDDEN_COLUMN:
                sequence_dim: int | None = 0
            elif column == LOGITS_COLUMN:
                sequence_dim = 1 if values[0].ndim == 3 else None
            else:
                sequence_dim = 1
            if sequence_dim is None:
                batch[column] = torch.from_numpy(np.stack(values))
                continue
            shape = list(values[0].shape)
            shape[sequence_dim] = length
            padded = np.zeros((len(values), *shape), dtype=np.float32)
            for row, value in enumerate(values):
                start, n = offsets[row], value.shape[sequence_dim]
                index = [row] + [slice(None)] * value.ndim
                index[1 + sequence_dim] = slice(start, start + n)
                padded[tuple(index)] = value
            batch[column] = torch.from_numpy(padded)
        return batch


def check_cached_dataset(
    dataset: Any,
    student: nn.Module,
    *,
    terms: set[str] | dict[str, float],
    data_collator: Any,
    num_teachers_expected: int | None = None,
) -> int:
    """Check a training set of cached teacher outputs against the student before training.

    Returns:
        `int`: The number of cached teachers (K).

    Raises:
        ValueError: For cached outputs that do not fit the student's head, `alpha_cos > 0` without cached hidden
            states, or a collator that masks tokens at random.
    """
    columns = cached_columns(getattr(dataset, "column_names", None))
    if isinstance(data_collator, DataCollatorForLanguageModeling):
        raise ValueError(
            f"{type(data_collator).__name__} masks tokens at random at every batch, but the training set holds "
            "teacher outputs cached for fixed inputs; mask the dataset once before caching and pass a padding "
            "collator (DataCollatorWithPadding), or distil online with teacher_model=<the teacher>"
        )
    first = dataset[0]
    config = getattr(student, "config", None)
    if "cos" in terms and HIDDEN_COLUMN not in columns:
        raise ValueError(
            "alpha_cos > 0 needs the teacher's hidden states, but the cached outputs hold none; cache them with "
            "cache_teacher_outputs(..., hidden_states=True), or set alpha_cos=0"
        )
    qa = START_COLUMN in columns
    student_qa = type(student).__name__.endswith("ForQuestionAnswering")
    if qa != student_qa:
        raise ValueError(
            f"the cached outputs are {'span logits (question answering)' if qa else 'logits'} but the student is a "
            f"{type(student).__name__}; cache them with a teacher that has the student's head"
        )
    reference = _as_array(first[START_COLUMN if qa else LOGITS_COLUMN])
    num_teachers = int(reference.shape[0])
    if not qa and config is not None:
        expected = getattr(config, "num_labels", None)
        if type(student).__name__.endswith(("ForMaskedLM", "ForPreTraining", "ForCausalLM")):
            expected = getattr(config, "vocab_size", expected)
        if expected is not None and reference.shape[-1] != expected:
            raise ValueError(
                f"the cached teacher_logits have {reference.shape[-1]} outputs per item (shape "
                f"{tuple(reference.shape)}) but the student {type(student).__name__} has {expected}; cache them "
                "with a teacher that has the student's labels"
            )
    if HIDDEN_COLUMN in columns and "cos" in terms and config is not None:
        hidden = _as_array(first[HIDDEN_COLUMN])
        size = getattr(config, "hidden_size", None)
        if size is not None and hidden.shape[-1] != size:
            raise ValueError(
                f"the cached teacher_hidden_states have size {hidden.shape[-1]} but the student's hidden size is "
                f"{size}; set alpha_cos=0 or use a student with the teacher's hidden size"
            )
    return num_teachers


def with_cache_columns(dataset: Any, columns: list[str]) -> Any:
    """A view of a cached training set whose rows carry the cache columns, read as arrays; the user's is unchanged.

    Unformatted, the outputs are read as numpy arrays rather than nested Python lists (10-100x faster to batch). A
    format that lists columns without the cache columns (`set_format("torch", columns=[...])`) would hide them from
    the rows: they are added to it.
    """
    dataset_format = getattr(dataset, "format", None) or {}
    if dataset_format.get("type") is None:
        return dataset.with_format("numpy", columns=columns, output_all_columns=True)
    shown = dataset_format.get("columns")
    if shown is None or all(column in shown for column in columns):
        return dataset
    return dataset.with_format(
        dataset_format["type"],
        columns=[*shown, *(c for c in columns if c not in shown)],
        output_all_columns=dataset_format.get("output_all_columns", False),
        **dataset_format.get("format_kwargs", {}),
    )

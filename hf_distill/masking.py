"""Masked-LM masking that does not depend on how examples are batched: `MaskedLMCollator`.

`DataCollatorForLanguageModeling` draws each batch's mask from one random stream (the global torch RNG, or its
`seed`). The mask of an example then depends on which examples share its batch, how many processes split the batch,
the gradient accumulation steps and everything else that draws from the stream (dropout). So a 2-process run, or
8 x 1 against 2 x 4, masks other tokens and gives other losses, and nothing can be compared exactly.

`MaskedLMCollator` is that collator with one change: each example's mask is drawn from a generator seeded by
`(seed, epoch, the example's tokens)`. The 80/10/10 rule itself is `DataCollatorForLanguageModeling`'s own
`torch_mask_tokens`. Masking stays dynamic (a new mask each epoch: `MaskingEpochCallback` moves the epoch on, and
`DistillationTrainer` adds it by itself), and becomes reproducible: the same example gets the same mask in the same
epoch whatever the batch size, accumulation, process count or resume point. Two identical examples get the same mask
in an epoch.

Examples that already hold `labels` (a held-out split masked once by `mask_once`, so that the teacher and the
student are scored on the same masked tokens) are padded and passed through unchanged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, TrainerCallback

from .item_counts import IGNORE_INDEX

# The columns an example may carry into the collator besides its token ids.
_TOKEN_COLUMNS = ("attention_mask", "token_type_ids", "special_tokens_mask")


def example_seed(seed: int, epoch: int, input_ids: Any) -> int:
    """The masking seed of one example: a stable hash of `(seed, epoch, input_ids)`, the same in every process."""
    ids = np.asarray(input_ids, dtype=np.int64)
    digest = hashlib.blake2b(ids.tobytes(), digest_size=8, key=f"{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class MaskedLMCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` whose masks are a function of `(seed, epoch, example)` only.

    Use it where `DataCollatorForLanguageModeling(tokenizer)` would go, with a seed:

    ```python
    collator = MaskedLMCollator(tokenizer, mlm_probability=0.15, seed=42)
    trainer = DistillationTrainer(..., data_collator=collator)  # adds MaskingEpochCallback(collator)
    trainer = Trainer(..., data_collator=collator, callbacks=[MaskingEpochCallback(collator)])  # plain Trainer
    ```

    Args:
        tokenizer, mlm_probability, mask_replace_prob, random_replace_prob, pad_to_multiple_of:
            As in `DataCollatorForLanguageModeling` (15% of tokens, of which 80% become the mask token, 10% a random
            token and 10% stay). `mlm=False` (causal LM) and whole-word masking are refused: this collator masks.
        seed (`int`, *optional*, defaults to 0): The masking seed; the training seed is the natural choice.
        epoch (`int`, *optional*, defaults to 0): The epoch, moved on by `MaskingEpochCallback` (or `set_epoch`).
    """

    seed: int | None = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        if not self.mlm:
            raise ValueError(
                "MaskedLMCollator masks tokens (mlm=True); use DataCollatorForLanguageModeling(mlm=False)"
            )
        if self.whole_word_mask:
            raise ValueError(
                "MaskedLMCollator masks tokens one by one; for whole-word masking use DataCollatorForLanguageModeling"
                "(whole_word_mask=True), whose masks depend on the batch"
            )
        if self.return_tensors != "pt":
            raise ValueError(f"MaskedLMCollator returns torch tensors, got return_tensors={self.return_tensors!r}")
        if self.seed is None or isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"MaskedLMCollator needs an integer seed, got {self.seed!r}")
        if not 0 < self.mlm_probability < 1 or not math.isfinite(self.mlm_probability):
            raise ValueError(
                f"mlm_probability must be between 0 and 1 (exclusive), got {self.mlm_probability!r}; BERT and "
                "DistilBERT mask 0.15"
            )
        super().__post_init__()

    def numpy_call(self, examples: list[Any]) -> dict[str, Any]:
        raise ValueError("MaskedLMCollator returns torch tensors; call it without return_tensors (or with 'pt')")

    def set_epoch(self, epoch: int) -> None:
        """Draw the masks of `epoch` from now on."""
        self.epoch = int(epoch)

    def torch_call(self, examples: list[Any]) -> dict[str, Any]:
        features = [dict(e) if isinstance(e, Mapping) else {"input_ids": e} for e in examples]
        held = [feature.pop("labels", None) for feature in features]
        if all(labels is not None for labels in held):
            labels = held  # masked once already (`mask_once`): padded, not masked again
        elif any(labels is not None for labels in held):
            raise ValueError(
                "some examples of the batch hold `labels` (masked already) and others do not; mask a whole dataset "
                "with mask_once, or remove its labels column"
            )
        else:
            labels = [self._mask_example(feature) for feature in features]
        for feature in features:
            feature.pop("special_tokens_mask", None)
        keep = [{k: v for k, v in feature.items() if k == "input_ids" or k in _TOKEN_COLUMNS} for feature in features]
        batch = self.tokenizer.pad(keep, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        length = batch["input_ids"].shape[1]
        padded = torch.full((len(labels), length), IGNORE_INDEX, dtype=torch.long)
        for row, values in enumerate(labels):
            values = torch.as_tensor(values, dtype=torch.long)
            if self.tokenizer.padding_side == "left":
                padded[row, length - len(values) :] = values
            else:
                padded[row, : len(values)] = values
        batch["labels"] = padded
        return batch

    def _mask_example(self, feature: dict[str, Any]) -> torch.Tensor:
        """Mask one example in place (its `input_ids`) and return its labels."""
        ids = torch.as_tensor(feature["input_ids"], dtype=torch.long).clone().unsqueeze(0)
        special = feature.get("special_tokens_mask")
        if special is not None:
            special = torch.as_tensor(special, dtype=torch.bool).unsqueeze(0)
        else:  # what `get_special_tokens_mask(..., already_has_special_tokens=True)` gives, without a Python loop
            special = torch.isin(ids, torch.tensor(self.tokenizer.all_special_ids, dtype=torch.long))
        # `torch_mask_tokens` draws from `self.generator`; reset afterwards, as a generator does not pickle (the
        # collator is sent to dataloader workers).
        self.generator = torch.Generator().manual_seed(example_seed(self.seed, self.epoch, ids))
        try:
            masked, labels = self.torch_mask_tokens(ids, special_tokens_mask=special)
        finally:
            self.generator = None
        feature["input_ids"] = masked[0]
        return labels[0]


def check_masking_workers(args: Any) -> None:
    """Raise `ValueError` for `dataloader_persistent_workers=True` with dataloader workers: each worker keeps the copy
    of the collator it got in the first epoch, so `set_epoch` never reaches it and every epoch repeats the first
    epoch's masks (static masking, silently). Workers started anew each epoch get the current epoch."""
    if getattr(args, "dataloader_num_workers", 0) > 0 and getattr(args, "dataloader_persistent_workers", False):
        raise ValueError(
            "dataloader_persistent_workers=True keeps each dataloader worker's copy of the MaskedLMCollator from the "
            "first epoch, so every epoch would repeat the first epoch's masks; drop --dataloader_persistent_workers "
            "(workers then start each epoch with its masks), or use --dataloader_num_workers 0"
        )


class MaskingEpochCallback(TrainerCallback):
    """Move a `MaskedLMCollator` to the epoch that is starting, so that each epoch masks anew.

    On resume, the epoch is read from the restored training state: the batches after the resume point get the masks
    an uninterrupted run gives them. Persistent dataloader workers are refused at the start of training
    (`check_masking_workers`).
    """

    def __init__(self, collator: MaskedLMCollator) -> None:
        self.collator = collator

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        check_masking_workers(args)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # `state.epoch` is the float progress: whole at an epoch's start, fractional when resuming inside one.
        self.collator.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))


def mask_once(dataset: Dataset, collator: MaskedLMCollator, *, epoch: int = 0) -> Dataset:
    """Mask every example of `dataset` once, as `collator` would in `epoch`, into `input_ids` and `labels` columns.

    A held-out split masked once is scored on the same tokens by every model and every evaluation, so the teacher's
    and the student's masked-LM losses (and perplexities) compare, and repeat from run to run.
    """
    if "labels" in dataset.column_names:
        raise ValueError(f"the dataset already holds labels (columns {dataset.column_names}); it is masked already")
    masker = MaskedLMCollator(
        collator.tokenizer,
        mlm_probability=collator.mlm_probability,
        mask_replace_prob=collator.mask_replace_prob,
        random_replace_prob=collator.random_replace_prob,
        seed=collator.seed,
        epoch=epoch,
    )

    def mask(example: dict[str, Any]) -> dict[str, Any]:
        feature = {key: example[key] for key in ("input_ids", "special_tokens_mask") if key in example}
        labels = masker._mask_example(feature)
        return {"input_ids": feature["input_ids"].tolist(), "labels": labels.tolist()}

    columns = [c for c in dataset.column_names if c == "special_tokens_mask"]
    return dataset.map(mask, remove_columns=columns, desc="masking the held-out split once")

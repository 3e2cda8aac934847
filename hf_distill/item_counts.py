"""Item counts of an accumulated batch: the normalisers that make gradient accumulation exact.

Each loss term of `DistillationTrainer` is a sum over "items" (examples, label positions or tokens) divided by the
item count of the whole accumulated batch, counted once per optimizer step, so that 8 x 1 and 2 x 4 give the same
loss and gradients even when micro-batches hold different numbers of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass
class ItemCounts:
    """Item counts of the whole accumulated batch, the normalisers of the summed loss terms.

    Attributes:
        examples: Number of examples (sequence-level terms).
        labels: Number of label items (`labels != -100`; one per example for float labels or span positions).
        tokens: Number of non-padding tokens (token-level terms without labels, hidden-state terms).
        scale: Factor that undoes the gradient averaging across processes when the counts are global (summed over
            processes), so that each process's loss is its share of the global mean.
    """

    examples: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor
    scale: float = 1.0

    def share(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """`total / count`, this process's share of the accumulated batch's mean.

        An optimizer step can hold no item of a kind (token classification or masked LM at small batches: every label
        is -100); its sum is then 0 too, and the count is clamped to 1 so the term is 0 instead of 0 / 0 = NaN. The
        clamp runs on the device: no sync point.
        """
        return total / count.clamp(min=1) * self.scale

    def share_of_mean(self, mean: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
        """A model's micro-batch mean loss over its `local_labels` label items, as a share of the accumulated batch.

        A micro-batch whose labels are all -100 has a NaN mean (0 / 0); it contributes nothing. This reads one scalar
        from the device, a sync point `Trainer` already pays for its NaN filter on the loss.
        """
        if local_labels.item() == 0:
            return mean.nan_to_num(0.0) * 0.0
        return self.share(mean * local_labels, self.labels)


def count_items(batch: dict[str, Any], label_names: list[str]) -> torch.Tensor:
    """Count examples, label items and non-padding tokens of one batch, as a float tensor `[examples, labels, tokens]`.

    Args:
        batch (`dict[str, Any]`): A collated batch.
        label_names (`list[str]`): The label keys of the model (`["labels"]`, or span positions for QA).

    Returns:
        `torch.Tensor` of shape `(3,)`.
    """
    tensors = [v for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    if not tensors:
        raise ValueError(f"the batch holds no tensors (keys: {sorted(batch)}); check the data collator")
    reference = batch.get("input_ids", tensors[0])
    if not isinstance(reference, torch.Tensor):
        reference = tensors[0]
    device = reference.device
    examples = torch.tensor(float(reference.shape[0]), device=device)

    labels = batch.get("labels")
    if isinstance(labels, torch.Tensor) and not labels.is_floating_point():
        label_items = labels.ne(IGNORE_INDEX).sum().float()
    elif isinstance(labels, torch.Tensor) or any(name in batch for name in label_names):
        label_items = examples.clone()
    else:
        label_items = torch.zeros((), device=device)

    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        tokens = mask.sum().float()
    elif isinstance(batch.get("input_ids"), torch.Tensor):
        tokens = torch.tensor(float(batch["input_ids"].numel()), device=device)
    else:
        tokens = examples.clone()
    return torch.stack([examples, label_items.to(device), tokens.to(device)])

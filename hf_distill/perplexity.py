"""Masked-LM loss and perplexity of a model on held-out text, per masked token.

`Trainer.evaluate()` averages the per-batch mean losses, so a batch with few masked tokens weighs as much as one with
many. Here the loss is the mean cross-entropy over every masked token of the split, the quantity perplexity is the
exponential of; the teacher and the student are scored on the same masked tokens (a split masked once with
`hf_distill.masking.mask_once`), so their numbers compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from .item_counts import IGNORE_INDEX
from .modeling import forward_input_names, takes_return_dict


def masked_lm_metrics(
    model: nn.Module,
    dataset: Dataset,
    *,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Score a masked-LM model on a masked split: `mlm_loss` (nats per masked token) and `perplexity`.

    The model runs in eval mode under `torch.inference_mode()` on `device` (by default where it is); its mode is
    restored afterwards.

    Args:
        model (`nn.Module`): A `*ForMaskedLM` model (its outputs have `logits` over the vocabulary).
        dataset (`Dataset`): Examples with `input_ids` and `labels` (-100 where not masked).
        data_collator: Pads a list of examples into a batch (a `MaskedLMCollator` passes masked examples through).
        batch_size (`int`, *optional*, defaults to 32): Examples per forward pass.
        device (*optional*): Where to run; by default the device of the model's parameters.

    Returns:
        `dict[str, float]`: `mlm_loss`, `perplexity` and `masked_tokens` (the count the mean is over).
    """
    if "labels" not in dataset.column_names:
        raise ValueError(f"the split has no labels (columns {dataset.column_names}); mask it first with mask_once")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    names = forward_input_names(model)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        loader = DataLoader(dataset.with_format(None), batch_size=batch_size, collate_fn=data_collator)
        with torch.inference_mode():
            for batch in loader:
                labels = batch.pop("labels").to(device)
                inputs = {
                    key: value.to(device)
                    for key, value in batch.items()
                    if isinstance(value, torch.Tensor) and (names is None or key in names)
                }
                if takes_return_dict(model):
                    inputs["return_dict"] = True
                logits = model(**inputs)["logits"]
                selected = labels.ne(IGNORE_INDEX)
                total += F.cross_entropy(logits[selected].float(), labels[selected], reduction="sum").double().cpu()
                count += int(selected.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the split has no masked token to score; use more held-out text or a higher mlm_probability")
    loss = float(total) / count
    return {"mlm_loss": loss, "perplexity": math.exp(min(loss, 700.0)), "masked_tokens": count}

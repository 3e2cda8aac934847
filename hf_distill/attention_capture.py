"""Reading a model's self-attention queries, keys and values during its forward pass, with forward hooks.

The attention and relation terms need what `output_attentions=True` cannot give: TinyBERT compares the scores before
the softmax, MiniLMv2 the queries, keys and values themselves, and in transformers 5 the default `sdpa` attention
returns no weights at all (only `eager` does). Hooks on the query, key and value projections read their outputs in
any attention implementation, so the user's `attn_implementation` is left as it is. The scores are then recomputed
from them (`hf_distill.losses.attention_scores`), which matches the model's own where the projections' outputs are
what the attention multiplies: BERT-style absolute position embeddings, not rotary or relative ones.

The cost: the projections' outputs are held until the loss is computed (the student's are kept for backward anyway),
and each mapped layer's scores are computed once more, `batch x heads x seq x seq` values per model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

# Architectures whose attention multiplies the outputs of separate query, key and value projections directly (no
# rotary or relative positions), under these attribute names. Others get a clear error.
PROJECTION_NAMES: dict[str, tuple[str, str, str]] = {
    "bert": ("query", "key", "value"),
    "camembert": ("query", "key", "value"),
    "data2vec-text": ("query", "key", "value"),
    "electra": ("query", "key", "value"),
    "ernie": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "roberta-prelayernorm": ("query", "key", "value"),
    "xlm-roberta": ("query", "key", "value"),
    "xlm-roberta-xl": ("query", "key", "value"),
    "distilbert": ("q_lin", "k_lin", "v_lin"),
}
PARTS: tuple[str, str, str] = ("query", "key", "value")


@dataclass
class AttentionLayers:
    """The query, key and value projections of each transformer layer of a model, first layer first.

    Attributes:
        projections (`list[dict[str, nn.Module]]`): Per layer, `{"query": ..., "key": ..., "value": ...}`.
        num_heads (`int`): The model's attention heads per layer.
    """

    projections: list[dict[str, nn.Module]]
    num_heads: int


def attention_layers(model: nn.Module, *, what: str) -> AttentionLayers:
    """Find the self-attention projections of every layer of `model` (a BERT- or RoBERTa-style encoder, DistilBERT).

    Args:
        model (`nn.Module`): The model, unwrapped.
        what (`str`): How errors name it ("the student", "the teacher").

    Raises:
        ValueError: For an architecture whose attention scores are not the product of its projections' outputs
            (rotary or relative positions, fused projections, shared layers), naming the supported ones.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    names = PROJECTION_NAMES.get(model_type)
    if names is None:
        raise ValueError(
            f"the attention and relation terms (alpha_attn, alpha_rel) read the query, key and value projections "
            f"of each layer, which is supported for {sorted(PROJECTION_NAMES)}; {what} is "
            f"{type(model).__name__} (model_type {model_type!r}). Set alpha_attn=0 and alpha_rel=0, or use "
            "the hidden-state hints (alpha_hint), which work for any transformers encoder"
        )
    projections = []
    for module in model.modules():
        if "cross" in type(module).__name__.lower():
            continue  # a decoder's cross-attention attends to another sequence
        found = [getattr(module, name, None) for name in names]
        if all(isinstance(p, nn.Linear) for p in found):
            projections.append(dict(zip(PARTS, found)))
    expected = getattr(config, "num_hidden_layers", None)
    if not projections or (expected is not None and len(projections) != expected):
        raise ValueError(
            f"{what} ({type(model).__name__}) should have one self-attention per layer ({expected}) with "
            f"{', '.join(names)} projections, but {len(projections)} were found; its attention cannot be read for "
            "alpha_attn or alpha_rel"
        )
    return AttentionLayers(projections, int(config.num_attention_heads))


@contextmanager
def capture_projections(
    layers: AttentionLayers, wanted: dict[int, tuple[str, ...]]
) -> Iterator[dict[tuple[int, str], torch.Tensor]]:
    """Record the outputs of the wanted projections during the forward passes inside the block.

    Args:
        layers (`AttentionLayers`): The model's projections.
        wanted (`dict[int, tuple[str, ...]]`): Transformer layer number (1-based, as in `hidden_states`) to the parts
            to record (`"query"`, `"key"`, `"value"`).

    Yields:
        `dict[tuple[int, str], torch.Tensor]`: Filled during the forward pass, keyed by `(layer, part)`; each output
        has shape `(batch, seq, heads * head_size)`.

    The hooks are removed when the block ends, so a backward pass that recomputes the forward (gradient
    checkpointing) records nothing.
    """
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = []

    def recorder(key: tuple[int, str]):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            captured[key] = output

        return hook

    try:
        for layer, parts in wanted.items():
            for part in parts:
                handles.append(layers.projections[layer - 1][part].register_forward_hook(recorder((layer, part))))
        yield captured
    finally:
        for handle in handles:
            handle.remove()

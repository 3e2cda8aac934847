"""Attention-head importance and pruning, after Michel et al. (2019), "Are Sixteen Heads Really Better than One?"
(https://arxiv.org/abs/1905.10650).

Michel et al. put a gate ξ_h = 1 on the output of every attention head and score head `h` by the expected size of
the loss gradient with respect to its gate, I_h = E_x |∂L(x)/∂ξ_h|, normalised by the L2 norm over each
layer (Section 4, following Molchanov et al., 2017). Pruning then removes the globally least important heads.

Transformers 5 removed `head_mask` and `PreTrainedModel.prune_heads`, so this module does both jobs itself:

- `head_importance` gates the heads with a forward pre-hook on each layer's attention output projection, whose input
  is the concatenation of the heads' outputs.
- `heads_to_prune` picks the heads to remove from those scores.
- `prune_heads` removes heads physically, shrinking the query, key and value projections and the output projection
  with `transformers.pytorch_utils.prune_linear_layer`, and records what it removed in `config.pruned_heads`.
- `load_pruned` reloads a pruned model saved with `save_pretrained`, which plain `from_pretrained` cannot do because
  it builds the unpruned shapes from the config.

Head ids always refer to the original numbering of the unpruned model, in `config.pruned_heads` as in the arguments
and results of these functions.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.pytorch_utils import prune_linear_layer
from transformers.utils import logging

logger = logging.get_logger(__name__)

#: The `config.model_type` values whose encoder layers `prune_heads` and `head_importance` understand: each layer has
#: `attention.self.{query,key,value}` and `attention.output.dense` under `model.base_model.encoder.layer`.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("bert", "camembert", "electra", "roberta", "xlm-roberta")

# `from_pretrained` keyword arguments that `load_pruned` honours when it builds a pruned model itself.
_PRUNED_LOAD_KWARGS: tuple[str, ...] = ("dtype", "torch_dtype", "attn_implementation")


def head_importance(
    model: PreTrainedModel,
    dataloader: Iterable[Mapping[str, Any]],
    *,
    max_batches: int | None = None,
) -> torch.Tensor:
    """Score every attention head by Michel et al.'s importance, I_h = Σ_batches |∂L/∂ξ_h|.

    A gate ξ_h = 1 multiplies the output of each head (Michel et al., 2019, Section 4). The gates are
    applied by a forward pre-hook on each layer's attention output projection, whose input is the heads' outputs
    concatenated (`[..., heads * head_dim]`); their gradients are read with `torch.autograd.grad`, so the parameters'
    `.grad` are left exactly as they were. `L` is the model's own loss, so every batch must carry the labels the model
    needs (`labels`, or `start_positions` and `end_positions` for question answering). Each layer's scores are then
    divided by their L2 norm, as in the paper and its code.

    The model runs in eval mode, so that dropout adds no noise, and every module is put back in the train/eval mode it
    was in. The weights are not changed and no hook is left behind, even when an error is raised.

    Args:
        model (`PreTrainedModel`):
            A model of a type in `SUPPORTED_MODEL_TYPES` that returns a loss. It may already be pruned.
        dataloader (`Iterable[Mapping[str, Any]]`):
            Batches of model inputs, e.g. a `torch.utils.data.DataLoader`. Tensors are moved to the model's device.
        max_batches (`int`, *optional*):
            Stop after this many batches. Defaults to the whole dataloader.

    Returns:
        `torch.Tensor`: float32 on CPU, of shape `(num_layers, num_heads)` with the original head count. Each layer's
        row has L2 norm 1 over its remaining heads (0 everywhere when every gradient is 0). Heads already pruned are
        `nan`.

    Raises:
        TypeError: If the model is not a `PreTrainedModel` or a batch is not a mapping.
        ValueError: If the architecture is not supported, `max_batches` is not a positive int, the dataloader is empty,
            or the model returns no loss.
    """
    layers = _attention_layers(model)
    if max_batches is not None and not (_is_int(max_batches) and max_batches >= 1):
        raise ValueError(f"max_batches must be a positive int or None (the whole dataloader), got {max_batches!r}.")
    num_heads = model.config.num_attention_heads
    remaining = _remaining_heads(model, layers)

    device = next(model.parameters()).device
    gates = [
        torch.ones(len(kept), device=device, dtype=output.dense.weight.dtype, requires_grad=True)
        for kept, (_, output) in zip(remaining, layers)
    ]
    totals = [torch.zeros(len(kept), dtype=torch.float64) for kept in remaining]

    modes = {module: module.training for module in model.modules()}
    handles = []
    batches = 0
    try:
        for gate, (attention, output) in zip(gates, layers):
            handles.append(output.dense.register_forward_pre_hook(_gate_hook(gate, attention.attention_head_size)))
        model.eval()
        with torch.enable_grad():
            for batch in dataloader:
                loss = _loss(model(**_to_device(batch, device)))
                grads = torch.autograd.grad(loss, gates)
                for total, grad in zip(totals, grads):
                    total += grad.detach().abs().to("cpu", torch.float64)
                batches += 1
                # Checked here rather than at the top, so no batch is drawn (and no data loaded) past the last.
                if max_batches is not None and batches >= max_batches:
                    break
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    if batches == 0:
        raise ValueError("The dataloader yielded no batches; head importance needs at least one batch with labels.")

    importance = torch.full((len(layers), num_heads), float("nan"), dtype=torch.float32)
    for index, (kept, total) in enumerate(zip(remaining, totals)):
        # The paper's code adds 1e-20 so that a layer whose gradients are all zero gets zeros rather than nan.
        importance[index, kept] = (total / (total.norm(p=2) + 1e-20)).float()
    logger.info("Scored %d attention heads on %d batches.", int((~importance.isnan()).sum()), batches)
    return importance


def heads_to_prune(importance: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """Pick the globally least important heads so that `round(fraction * total_heads)` heads end up pruned.

    Michel et al. (2019, Section 4) prune heads globally, across layers, by increasing importance. Here every layer
    keeps at least one head, its most important one, because a layer with no heads cannot run.

    `fraction` is the share of the ORIGINAL head count (`importance.numel()`) that is pruned once the returned heads
    are removed, counting the heads already pruned (the `nan` entries of `importance`). So on a model that already
    lost 30% of its heads, `fraction=0.5` picks 20% more, and `fraction=0.2` is an error: pruned heads cannot come
    back. `nan` entries are never picked again. When the target is already met exactly, an empty dict is returned.

    Args:
        importance (`torch.Tensor`): Scores of shape `(num_layers, num_heads)`, as returned by `head_importance`.
        fraction (`float`): The target share of pruned heads, strictly between 0 and 1.

    Returns:
        `dict[int, list[int]]`: Layer index to the sorted original head ids to prune, for `prune_heads`. Layers with
        nothing to prune are left out.

    Raises:
        TypeError: If `importance` is not a tensor.
        ValueError: If `importance` is not 2-D, holds infinite values or a layer with every head pruned, if `fraction`
            is not a finite number in (0, 1), if it asks for fewer heads than are already pruned, or if it asks to
            prune more heads than can be removed while keeping one head per layer.
    """
    if not isinstance(importance, torch.Tensor):
        raise TypeError(f"importance must be a torch.Tensor from head_importance, got {type(importance).__name__}.")
    if importance.dim() != 2 or importance.numel() == 0:
        raise ValueError(
            f"importance must have shape (num_layers, num_heads), got {tuple(importance.shape)}. Pass the tensor "
            "returned by head_importance."
        )
    if (
        not isinstance(fraction, numbers.Real)
        or isinstance(fraction, bool)
        or not math.isfinite(fraction)
        or not 0 < fraction < 1
    ):
        raise ValueError(
            f"fraction must be a finite number strictly between 0 and 1 (the share of heads to prune), got "
            f"{fraction!r}."
        )
    scores = importance.detach().to("cpu", torch.float64)
    pruned = scores.isnan()
    if scores[~pruned].isinf().any():
        raise ValueError("importance holds infinite values; pass the finite scores returned by head_importance.")
    empty = [layer for layer in range(scores.shape[0]) if pruned[layer].all()]
    if empty:
        raise ValueError(
            f"importance has every head of layer(s) {empty} marked pruned (nan), which no model can have. Pass the "
            "tensor returned by head_importance."
        )

    total = scores.numel()
    already = int(pruned.sum())
    target = round(fraction * total)
    # Every layer keeps one head, so at most `total - num_layers` heads can ever be pruned.
    most = total - scores.shape[0]
    if target > most:
        raise ValueError(
            f"fraction={fraction} asks for pruning more heads than exist to prune: {target} of {total} heads, but at "
            f"most {most} can be pruned while keeping one head in each of the {scores.shape[0]} layers. Use a "
            f"fraction of at most {most / total:.4g}."
        )
    if target < already:
        raise ValueError(
            f"fraction={fraction} asks for {target} of {total} heads pruned, but {already} are already pruned and "
            f"pruned heads cannot come back. fraction is the share of the original heads pruned in the end; use a "
            f"fraction above {already / total:.4g}."
        )
    wanted = target - already
    if wanted == 0:
        logger.warning(
            "fraction=%s of %d heads is %d heads, which are already pruned; there is nothing more to prune.",
            fraction,
            total,
            target,
        )
        return {}

    candidates: list[tuple[float, int, int]] = []
    for layer in range(scores.shape[0]):
        alive = (~pruned[layer]).nonzero().flatten().tolist()
        # Keep the layer's most important head (the lowest id among ties); the rest compete globally.
        keep = max(alive, key=lambda head: (scores[layer, head].item(), -head))
        candidates.extend((scores[layer, head].item(), layer, head) for head in alive if head != keep)
    candidates.sort()
    selected: dict[int, list[int]] = {}
    for _, layer, head in candidates[:wanted]:
        selected.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(selected.items())}


def prune_heads(model: PreTrainedModel, heads: Mapping[int, Iterable[int]]) -> PreTrainedModel:
    """Remove attention heads from an encoder, in place.

    For every layer, the rows of the query, key and value projections that belong to the removed heads, and the
    matching input columns of the attention output projection, are cut out with `prune_linear_layer`; the attention
    module's `num_attention_heads` and `all_head_size` are updated. The new layers keep the old ones' dtype, device,
    train/eval mode and `requires_grad`. The removed heads are recorded in `model.config.pruned_heads` as
    `{str(layer): sorted original head ids}`, merged with any earlier pruning, so that `save_pretrained` writes them
    and `load_pruned` can rebuild the shapes.

    Head ids always refer to the ORIGINAL numbering of the unpruned model: after pruning head 0 of a layer, its head 1
    is still called 1. Every argument is checked before the model is touched, so a bad argument leaves it unchanged.

    Args:
        model (`PreTrainedModel`):
            A model of a type in `SUPPORTED_MODEL_TYPES` (an encoder without cross-attention), with any head.
        heads (`Mapping[int, Iterable[int]]`):
            Layer index to the original ids of the heads to remove, e.g. `{0: [1, 3], 5: [0]}`.

    Returns:
        `PreTrainedModel`: The same `model`, pruned.

    Raises:
        TypeError: If `model` is not a `PreTrainedModel`, `heads` is not a mapping, or a layer or head id is not an
            int.
        ValueError: If the architecture is not supported, a layer or head id is out of range, repeated or already
            pruned, or the pruning would remove every head of a layer.
    """
    layers = _attention_layers(model)
    num_heads = model.config.num_attention_heads
    remaining = _remaining_heads(model, layers)
    plan = _check_heads(heads, remaining, num_heads)
    if not plan:
        logger.info("prune_heads was given no heads to remove; the model is unchanged.")
        return model

    recorded = {layer: [h for h in range(num_heads) if h not in kept] for layer, kept in enumerate(remaining)}
    for layer, removed in plan.items():
        attention, output = layers[layer]
        kept = remaining[layer]
        # Current positions of the surviving heads (ids are original; positions shift after earlier pruning).
        positions = [position for position, head in enumerate(kept) if head not in removed]
        size = attention.attention_head_size
        index = torch.tensor(
            [position * size + offset for position in positions for offset in range(size)], dtype=torch.long
        )
        for name in ("query", "key", "value"):
            setattr(attention, name, _prune_linear(getattr(attention, name), index, dim=0))
        output.dense = _prune_linear(output.dense, index, dim=1)
        attention.num_attention_heads = len(positions)
        attention.all_head_size = len(positions) * size
        recorded[layer] = sorted(recorded[layer] + removed)

    model.config.pruned_heads = {str(layer): removed for layer, removed in recorded.items() if removed}
    logger.info(
        "Pruned %d attention heads: %s.",
        sum(len(removed) for removed in plan.values()),
        {layer: plan[layer] for layer in sorted(plan)},
    )
    return model


def load_pruned(
    path: str | os.PathLike, model_class: type | None = None, **from_pretrained_kwargs: Any
) -> PreTrainedModel:
    """Reload a model saved with `save_pretrained` after `prune_heads`.

    Plain `from_pretrained` builds the unpruned shapes from the config and so cannot load a pruned checkpoint. This
    function reads the config, builds the model from it, prunes the heads listed in `config.pruned_heads` and then
    loads the saved safetensors weights strictly: every key must be present (weights tied to a saved one aside) and
    have the saved shape, and no key may be left over. The model comes back in eval mode, like `from_pretrained`.

    When the config records no pruned heads, this is `model_class.from_pretrained(path, **from_pretrained_kwargs)`.

    Args:
        path (`str` or `os.PathLike`):
            The directory written by `save_pretrained`. A pruned checkpoint must be a local directory.
        model_class (`type`, *optional*):
            The `PreTrainedModel` subclass or Auto class to build. Defaults to the transformers class named by
            `config.architectures[0]`.
        from_pretrained_kwargs:
            Passed to `from_pretrained` for an unpruned checkpoint. For a pruned one only `dtype` (or the older
            `torch_dtype`; `"auto"` or unset keeps the saved dtype) and `attn_implementation` are supported.

    Returns:
        `PreTrainedModel`: The model, with the pruned shapes and the saved weights.

    Raises:
        TypeError: If `path` is not a `str` or `os.PathLike`, or `model_class` is not a model class.
        ValueError: If the class cannot be found, a keyword argument is not supported for a pruned checkpoint, the
            directory holds no safetensors weights, or the weights do not match the pruned model.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (a save_pretrained directory), got {type(path).__name__}.")
    path = os.fspath(path)
    config = AutoConfig.from_pretrained(path)
    model_class = _model_class(config, model_class)
    pruned = getattr(config, "pruned_heads", None) or {}
    if not pruned:
        return model_class.from_pretrained(path, **from_pretrained_kwargs)

    unknown = sorted(set(from_pretrained_kwargs) - set(_PRUNED_LOAD_KWARGS))
    if unknown:
        raise ValueError(
            f"load_pruned does not support {unknown} for a pruned checkpoint (only {list(_PRUNED_LOAD_KWARGS)}). "
            "Load the model without them, then move or convert it yourself."
        )
    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(
            f"{path!r} records pruned heads but is not a local directory; load_pruned reads pruned weights from a "
            "local save_pretrained directory. Download it first (e.g. huggingface_hub.snapshot_download)."
        )
    state_dict = _read_safetensors(directory)

    dtype = from_pretrained_kwargs.get("dtype", from_pretrained_kwargs.get("torch_dtype"))
    if dtype is None or dtype == "auto":
        dtype = _saved_dtype(state_dict) or config.dtype
    build_kwargs: dict[str, Any] = {"dtype": dtype}
    if "attn_implementation" in from_pretrained_kwargs:
        build_kwargs["attn_implementation"] = from_pretrained_kwargs["attn_implementation"]
    # The head map is applied by prune_heads, which records it again; start from an unpruned config.
    config.pruned_heads = {}
    build = model_class.from_config if hasattr(model_class, "from_config") else model_class._from_config
    model = build(config, **build_kwargs)
    prune_heads(model, {int(layer): list(removed) for layer, removed in pruned.items()})
    _load_strict(model, state_dict, path)
    model.eval()
    return model


def _is_int(value: Any) -> bool:
    # `bool` is an `int` subclass, but `{0: [True]}` is surely a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _attention_layers(model: Any) -> list[tuple[nn.Module, nn.Module]]:
    """Return `(self_attention, attention_output)` for every encoder layer, or raise if the model is not supported."""
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"Head pruning needs a transformers `PreTrainedModel` of type {', '.join(SUPPORTED_MODEL_TYPES)}, got "
            f"{type(model).__name__}."
        )
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Head pruning does not support the architecture {type(model).__name__} (model_type {model_type!r}). "
            f"Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise ValueError(
            f"Head pruning supports encoders only, but {type(model).__name__} is configured as a decoder "
            "(config.is_decoder or config.add_cross_attention is set). Prune an encoder-only model."
        )
    stack = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList) or len(stack) == 0:
        raise ValueError(
            f"{type(model).__name__} (model_type {model_type!r}) has no encoder layer stack at "
            "`base_model.encoder.layer`; head pruning needs the standard BERT layout."
        )
    layers = []
    for index, layer in enumerate(stack):
        attention = getattr(getattr(layer, "attention", None), "self", None)
        output = getattr(getattr(layer, "attention", None), "output", None)
        if (
            attention is None
            or output is None
            or hasattr(layer, "crossattention")
            or not all(isinstance(getattr(attention, name, None), nn.Linear) for name in ("query", "key", "value"))
            or not isinstance(getattr(output, "dense", None), nn.Linear)
            or not hasattr(attention, "attention_head_size")
            or not hasattr(attention, "num_attention_heads")
        ):
            raise ValueError(
                f"Layer {index} of {type(model).__name__} does not have the BERT attention layout "
                "(attention.self.{query,key,value} and attention.output.dense, no cross-attention), so its heads "
                "cannot be pruned."
            )
        layers.append((attention, output))
    return layers


def _remaining_heads(model: PreTrainedModel, layers: list[tuple[nn.Module, nn.Module]]) -> list[list[int]]:
    """The original ids of each layer's surviving heads, from `config.pruned_heads`, checked against the shapes."""
    num_heads = model.config.num_attention_heads
    recorded = getattr(model.config, "pruned_heads", None) or {}
    pruned = {int(layer): {int(head) for head in removed} for layer, removed in recorded.items()}
    remaining = []
    for index, (attention, _) in enumerate(layers):
        kept = [head for head in range(num_heads) if head not in pruned.get(index, ())]
        if attention.num_attention_heads != len(kept) or attention.query.out_features != len(kept) * (
            attention.attention_head_size
        ):
            raise ValueError(
                f"Layer {index} has {attention.num_attention_heads} attention heads, but config.pruned_heads "
                f"({recorded!r}) and config.num_attention_heads ({num_heads}) say it should have {len(kept)}. Prune "
                "only with hf_distill.head_pruning.prune_heads, and reload pruned models with load_pruned."
            )
        remaining.append(kept)
    return remaining


def _check_heads(heads: Any, remaining: list[list[int]], num_heads: int) -> dict[int, list[int]]:
    """Validate `heads` for `prune_heads`; return `{layer: sorted original ids}` for layers with something to do."""
    if not isinstance(heads, Mapping):
        raise TypeError(
            f"heads must be a mapping of layer index to head ids, e.g. {{0: [1, 2]}}, got {type(heads).__name__}."
        )
    num_layers = len(remaining)
    plan: dict[int, list[int]] = {}
    for layer, ids in heads.items():
        if not _is_int(layer):
            raise TypeError(
                f"Layer indices in heads must be ints, got {layer!r} ({type(layer).__name__}). A map read from JSON "
                "has str keys: convert them with {int(k): v for k, v in heads.items()}."
            )
        if not 0 <= layer < num_layers:
            raise ValueError(f"Layer {layer} in heads is out of range; the model has layers 0..{num_layers - 1}.")
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"heads[{layer}] must be an iterable of head ids, e.g. [0, 2], got {ids!r}.")
        ids = list(ids)
        for head in ids:
            if not _is_int(head):
                raise TypeError(f"Head ids must be ints, got {head!r} ({type(head).__name__}) in heads[{layer}].")
            if not 0 <= head < num_heads:
                raise ValueError(
                    f"Head {head} in heads[{layer}] is out of range; the model has heads 0..{num_heads - 1} "
                    "(original ids)."
                )
            if head not in remaining[layer]:
                raise ValueError(
                    f"Head {head} of layer {layer} is already pruned (config.pruned_heads). Head ids are the "
                    "original ones; leave it out."
                )
        if len(set(ids)) != len(ids):
            raise ValueError(f"heads[{layer}] = {ids} names a head more than once; list each head once.")
        if len(ids) >= len(remaining[layer]):
            raise ValueError(
                f"Pruning heads {sorted(ids)} of layer {layer} would remove every remaining head "
                f"({remaining[layer]}); keep at least one head per layer."
            )
        if ids:
            plan[int(layer)] = sorted(int(head) for head in ids)
    return plan


def _gate_hook(gate: torch.Tensor, head_size: int) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    """A forward pre-hook that multiplies each head's slice of the concatenated head outputs by its gate."""

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden, *rest = args
        # Heads are concatenated head-major (`[..., heads, head_dim]` flattened), so each gate is repeated per dim.
        return (hidden * gate.repeat_interleave(head_size), *rest)

    return hook


def _to_device(batch: Any, device: torch.device) -> dict[str, Any]:
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"Each batch must be a mapping of model input names to values, got {type(batch).__name__}. Use a "
            "collator that returns a dict (e.g. DataCollatorWithPadding)."
        )
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _loss(outputs: Any) -> torch.Tensor:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(
            "The model returned no loss, which head importance differentiates. Give every batch its labels "
            "(`labels`, or `start_positions` and `end_positions` for question answering)."
        )
    if loss.numel() != 1:
        raise ValueError(f"The model's loss must be a scalar, got shape {tuple(loss.shape)}.")
    return loss.reshape(())


def _prune_linear(layer: nn.Linear, index: torch.Tensor, *, dim: int) -> nn.Linear:
    # `prune_linear_layer` builds a float32 layer in train mode whose parameters require grad, whatever the original.
    new = prune_linear_layer(layer, index, dim=dim).to(dtype=layer.weight.dtype)
    new.train(layer.training)
    new.weight.requires_grad_(layer.weight.requires_grad)
    if layer.bias is not None:
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new


def _model_class(config: Any, model_class: type | None) -> type:
    if model_class is not None:
        if not isinstance(model_class, type) or not hasattr(model_class, "from_pretrained"):
            raise TypeError(
                f"model_class must be a model class such as BertForSequenceClassification or an Auto class, got "
                f"{model_class!r}."
            )
        return model_class
    architectures = getattr(config, "architectures", None) or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None:
        raise ValueError(
            f"Cannot tell which model class to build from config.architectures={architectures!r}. Pass "
            "model_class, e.g. load_pruned(path, BertForSequenceClassification)."
        )
    return cls


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ValueError(
            f"{os.fspath(directory)!r} holds no safetensors weights (model.safetensors or its sharded index). Save "
            "the pruned model with save_pretrained (safe_serialization is the default)."
        )
    state_dict: dict[str, torch.Tensor] = {}
    for name in files:
        state_dict.update(load_file(os.fspath(directory / name)))
    return state_dict


def _saved_dtype(state_dict: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    for tensor in state_dict.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _load_strict(model: PreTrainedModel, state_dict: dict[str, torch.Tensor], path: str) -> None:
    """Load `state_dict` into `model`, requiring every key and shape to match (tied copies may be absent)."""
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    # `save_pretrained` stores tied weights once; a missing key is fine when a key sharing its storage is saved.
    storage: dict[int, set[str]] = {}
    for key, tensor in expected.items():
        storage.setdefault(tensor.data_ptr(), set()).add(key)
    missing = sorted(
        key
        for key, tensor in expected.items()
        if key not in state_dict and not (tensor.data_ptr() and storage[tensor.data_ptr()] & set(state_dict))
    )
    mismatched = sorted(
        f"{key}: saved {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}"
        for key in set(state_dict) & set(expected)
        if state_dict[key].shape != expected[key].shape
    )
    if unexpected or missing or mismatched:
        raise ValueError(
            f"The weights in {path!r} do not match the pruned model built from its config: missing {missing}, "
            f"unexpected {unexpected}, shape mismatches {mismatched}. Was config.pruned_heads edited, or the "
            "directory written by another model?"
        )
    model.load_state_dict(state_dict, strict=False)

"""Building a shallower student from a teacher by copying a subset of its layers.

DistilBERT (Sanh et al., 2019, https://arxiv.org/abs/1910.01108, Section 3) initialises its 6-layer student from
every other layer of the 12-layer BERT teacher, and keeps the embeddings and the rest of the network as they are.
`make_student` does this for the encoder architectures listed in `SUPPORTED_MODEL_TYPES`, whatever the head. It
works on the state dict rather than by swapping modules in place, so the student is an ordinary instance of the
teacher's class that `save_pretrained` and `from_pretrained` handle like any other checkpoint.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging

from .modeling import load_model
from .models.tiny_student import make_tiny_student

logger = logging.get_logger(__name__)

# Path of the layer stack (an `nn.ModuleList` with one entry per layer) inside the base model, that is
# `model.base_model`. The base model sits under a prefix that depends on the head (`bert.` in
# `BertForSequenceClassification`, nothing in `BertModel`), which `_layer_stack_path` finds at run time.
_LAYER_STACKS: dict[str, str] = {
    "albert": "encoder.albert_layer_groups",
    "bert": "encoder.layer",
    "camembert": "encoder.layer",
    "data2vec-text": "encoder.layer",
    "deberta": "encoder.layer",
    "deberta-v2": "encoder.layer",
    "distilbert": "transformer.layer",
    "electra": "encoder.layer",
    "ernie": "encoder.layer",
    "modernbert": "layers",
    "mpnet": "encoder.layer",
    "roberta": "encoder.layer",
    "roberta-prelayernorm": "encoder.layer",
    "xlm-roberta": "encoder.layer",
    "xlm-roberta-xl": "encoder.layer",
}

#: The `config.model_type` values `make_student` accepts.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_LAYER_STACKS))

# Config entries that hold one value per layer and must be cut down with the layers (ModernBERT's `layer_types`
# says which layers use global and which sliding-window attention; `mlp_layer_types` is the generic v5 sibling).
_PER_LAYER_CONFIG_KEYS: tuple[str, ...] = ("layer_types", "mlp_layer_types")


def make_student(
    teacher: PreTrainedModel | str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    num_layers: int | None = None,
) -> PreTrainedModel:
    """Build a student with fewer layers whose weights are copied from the teacher.

    The student is an instance of the teacher's own class (same head) whose layer `i` is an exact copy of teacher layer
    `layers[i]`. Everything outside the layer stack (embeddings, relative-position tables, final norms, pooler, head)
    is copied as it is. The student shares no storage with the teacher, has the teacher's dtype, device and train/eval
    mode, and its tied weights are tied when (and only when) the teacher's are. Its parameters require gradients
    whatever the teacher's setting, so a frozen teacher gives a trainable student. The teacher is not modified.

    Which layers are kept:

    - By default, half of the layers rounded up: teacher layers 0, 2, 4, ... (DistilBERT's choice). The last layer is
      kept only when the layer count is odd.
    - `num_layers=k` spreads `k` layers evenly: student layer `i` copies teacher layer `ceil(i * N / k)`, where `N` is
      the teacher's layer count. This gives 0, 2, 4, ... for `k = ceil(N / 2)` (so it agrees with the default), every
      layer for `k = N`, and layer 0 alone for `k = 1`. The first layer is always kept.
    - `layers=[...]` names the teacher layers explicitly, e.g. `[0, 2, 4, 7, 9, 11]` for a 12-layer teacher.

    The choice is recorded in `student.config.distillation`, which is saved with the student:
    `{"teacher": <teacher name or path, or None>, "teacher_layers": [...], "teacher_num_layers": N}`. The config is
    otherwise a deep copy of the teacher's, with `num_hidden_layers` set to the new count and per-layer entries such as
    ModernBERT's `layer_types` cut down to the kept layers, so each copied layer keeps its attention type.

    ALBERT applies one shared set of layer weights at every depth, so there are no distinct layers to pick. An ALBERT
    student applies the same shared weights `k` times (`config.num_hidden_layers = k`) and copies every parameter;
    `teacher_layers` is recorded as `list(range(k))`. Choose `k` with `num_layers`; an explicit `layers` is accepted
    only when it equals `list(range(k))`. ALBERT with `num_hidden_groups > 1` is not supported.

    Args:
        teacher (`PreTrainedModel`, `str` or `os.PathLike`):
            The teacher model, or a Hub id or local directory loaded with the Auto class of its
            `config.architectures` (see `hf_distill.modeling.load_model`).
        layers (`Sequence[int]`, *optional*):
            Strictly increasing teacher layer indices to copy, in `0..N-1`.
        num_layers (`int`, *optional*):
            The number of student layers, in `1..N`, spread evenly over the teacher. May be given together with
            `layers` only when it equals `len(layers)`.

    Returns:
        `PreTrainedModel`: The student, of class `type(teacher)`.

    Raises:
        TypeError: If `teacher` is not a `PreTrainedModel`, `str` or `os.PathLike`.
        ValueError: If `layers` or `num_layers` is invalid, if the architecture is not supported, or if the teacher's
            layers cannot be rearranged as asked (ALBERT's shared layers, a ModernBERT student that does not start
            with teacher layer 0). Every check runs before the student is built.
    """
    if not isinstance(teacher, (PreTrainedModel, str, os.PathLike)):
        raise TypeError(
            f"teacher must be a transformers `PreTrainedModel` or a model name or path, got {type(teacher).__name__}. "
            "A PEFT-wrapped model must be merged first (`merge_and_unload()`)."
        )
    requested = _check_layers_argument(layers, num_layers)

    name_or_path = None
    if not isinstance(teacher, PreTrainedModel):
        name_or_path = os.fspath(teacher)
        teacher = load_model(name_or_path)

    config = teacher.config
    model_type = config.model_type
    if model_type not in _LAYER_STACKS:
        raise ValueError(
            f"make_student does not support the architecture {type(teacher).__name__} (model_type "
            f"{model_type!r}). Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    if getattr(config, "pruned_heads", None):
        raise ValueError(
            f"The teacher has pruned attention heads (config.pruned_heads={config.pruned_heads}); its layers no "
            "longer share one shape, so they cannot be copied into a student of the config's shape. Build the "
            "student from the unpruned teacher, then prune the student (hf_distill.prune_heads)."
        )
    if getattr(teacher, "hf_quantizer", None) is not None:
        raise ValueError(
            f"The teacher {type(teacher).__name__} is quantized; its layers cannot be copied into a student. Load it "
            "without quantization to build the student."
        )

    num_teacher_layers = config.num_hidden_layers
    kept = _select_layers(num_teacher_layers, requested, num_layers)
    if model_type == "albert":
        _check_albert(config, requested)
        # The shared layer is applied at every depth, so the student's layers are "the first k" by construction.
        kept = list(range(len(kept)))
        stack_path = None
    else:
        stack_path = _layer_stack_path(teacher, _LAYER_STACKS[model_type], num_teacher_layers)
        _check_layer_structures(teacher.get_submodule(stack_path), kept)

    teacher_name = getattr(config, "_name_or_path", "") or name_or_path or None
    student_config = _student_config(config, kept, teacher_name)
    rename = _teacher_to_student_key(stack_path, kept)
    student = _copy_model(teacher, student_config, rename)
    logger.info(
        "Built a %d-layer %s student from teacher layers %s of %d.",
        len(kept),
        type(student).__name__,
        kept,
        num_teacher_layers,
    )
    return student


def check_student_layers(
    teacher_config: Any, *, layers: Sequence[int] | None = None, num_layers: int | None = None
) -> list[int]:
    """Check `layers` / `num_layers` against a teacher's config alone, before any model is loaded or trained.

    `make_student` runs the same checks (and a few that need the weights); a script calls this first so that a bad
    layer choice fails before minutes of teacher fine-tuning, not after.

    Args:
        teacher_config (`PretrainedConfig`): The teacher's config (`AutoConfig.from_pretrained(...)`).
        layers (`Sequence[int]`, *optional*): As in `make_student`.
        num_layers (`int`, *optional*): As in `make_student`.

    Returns:
        `list[int]`: The teacher layers `make_student` will keep.

    Raises:
        ValueError: As `make_student` does for these arguments, or for an unsupported architecture.
    """
    requested = _check_layers_argument(layers, num_layers)
    model_type = teacher_config.model_type
    if model_type not in _LAYER_STACKS:
        raise ValueError(
            f"make_student does not support model_type {model_type!r}. Supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    kept = _select_layers(teacher_config.num_hidden_layers, requested, num_layers)
    if model_type == "albert":
        _check_albert(teacher_config, requested)
        kept = list(range(len(kept)))
    return kept


def _is_int(value: Any) -> bool:
    # `bool` is an `int` subclass, but `layers=[True, False]` is surely a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_layers_argument(layers: Sequence[int] | None, num_layers: int | None) -> list[int] | None:
    """Check what can be checked without knowing the teacher; return `layers` as a list of `int`."""
    if num_layers is not None and not (_is_int(num_layers) and num_layers >= 1):
        raise ValueError(f"num_layers must be a positive int (the student's layer count), got {num_layers!r}.")
    if layers is None:
        return None
    if _is_int(layers):
        raise ValueError(
            f"layers must be a list of teacher layer indices, got the int {layers}; for a student with "
            f"{layers} layers pass num_layers={layers}."
        )
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ValueError(f"layers must be a list of teacher layer indices such as [0, 2, 4], got {layers!r}.")
    if len(layers) == 0:
        raise ValueError(
            "layers is empty: a student needs at least one layer. Pass teacher layer indices such as [0, 2, 4], or "
            "leave layers unset to keep every other layer."
        )
    bad = [value for value in layers if not _is_int(value)]
    if bad:
        raise ValueError(f"layers must hold int teacher layer indices, got {bad[0]!r} in {list(layers)!r}.")
    layers = [int(value) for value in layers]
    if any(a >= b for a, b in zip(layers, layers[1:])):
        raise ValueError(
            f"layers must be strictly increasing (no duplicates, in teacher order), got {layers}; did you mean "
            f"{sorted(set(layers))}?"
        )
    if num_layers is not None and num_layers != len(layers):
        raise ValueError(
            f"layers has {len(layers)} entries but num_layers={num_layers}; pass only one of them, or make them agree."
        )
    return layers


def _select_layers(num_teacher_layers: int, layers: list[int] | None, num_layers: int | None) -> list[int]:
    """Return the teacher layer indices to keep, checking them against the teacher's layer count."""
    n = num_teacher_layers
    if layers is not None:
        bad = [index for index in layers if not 0 <= index < n]
        if bad:
            raise ValueError(
                f"layers entry {bad[0]} is out of range for a teacher with {n} layers; valid indices are 0..{n - 1} "
                "(negative indices are not supported)."
            )
        return layers
    if num_layers is None:
        num_layers = -(-n // 2)
    if num_layers > n:
        raise ValueError(
            f"num_layers={num_layers} would make a student with more layers than its teacher ({n} layers); choose "
            f"num_layers in 1..{n}."
        )
    # ceil(i * n / k) in integer arithmetic: floats would misround for large products.
    return [-(-i * n // num_layers) for i in range(num_layers)]


def _check_albert(config: Any, layers: list[int] | None) -> None:
    """ALBERT shares its layer weights across depth, so only the depth of the student can be chosen."""
    if config.num_hidden_groups != 1:
        raise ValueError(
            f"make_student does not support ALBERT with num_hidden_groups={config.num_hidden_groups}; only the usual "
            "num_hidden_groups=1 (one set of layer weights shared by every layer) is supported."
        )
    if layers is not None and layers != list(range(len(layers))):
        raise ValueError(
            f"ALBERT shares one set of layer weights across all {config.num_hidden_layers} layers, so there are no "
            f"distinct teacher layers to pick and layers={layers} has no meaning. Pass num_layers={len(layers)} for a "
            f"student that applies the shared layer {len(layers)} times."
        )


def _layer_stack_path(model: PreTrainedModel, stack_in_base: str, num_layers: int) -> str:
    """Return the full module path of the layer stack, e.g. `bert.encoder.layer` or `encoder.layer`."""
    base = model.base_model
    prefix = next((name for name, module in model.named_modules() if module is base), None)
    path = f"{prefix}.{stack_in_base}" if prefix else stack_in_base
    try:
        stack = model.get_submodule(path)
    except AttributeError:
        stack = None
    if not isinstance(stack, nn.ModuleList) or len(stack) != num_layers:
        if stack is None:
            found = "nothing"
        elif isinstance(stack, nn.ModuleList):
            found = f"{len(stack)} layers"
        else:
            found = f"a {type(stack).__name__}"
        raise ValueError(
            f"Expected the {type(model).__name__} teacher to hold its {num_layers} layers (config.num_hidden_layers) "
            f"in an nn.ModuleList at {path!r}, but found {found} there."
        )
    return path


def _check_layer_structures(stack: nn.ModuleList, kept: list[int]) -> None:
    """Student layer `i` is built like teacher layer `i`; refuse a copy from a teacher layer built differently.

    ModernBERT's layer 0 has no attention LayerNorm (the embeddings end with one), so its other layers cannot become a
    student's first layer.
    """
    for i, j in enumerate(kept):
        if i == j:
            continue
        target = {name: tuple(tensor.shape) for name, tensor in stack[i].state_dict().items()}
        source = {name: tuple(tensor.shape) for name, tensor in stack[j].state_dict().items()}
        if source != target:
            differences = sorted(set(source.items()) ^ set(target.items()))
            raise ValueError(
                f"Teacher layer {j} cannot become student layer {i}: in {type(stack[i]).__name__} layer {i} is built "
                f"differently from layer {j} (they differ in {[name for name, _ in differences]}). "
                + ("Make teacher layer 0 the first entry of layers." if i == 0 else "Choose other layers.")
            )


def _student_config(teacher_config: Any, kept: list[int], teacher_name: str | None) -> Any:
    """Deep-copy the teacher's config with the student's layer count and the distillation record."""
    num_teacher_layers = teacher_config.num_hidden_layers
    config = copy.deepcopy(teacher_config)
    for key in _PER_LAYER_CONFIG_KEYS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == num_teacher_layers:
            setattr(config, key, [values[j] for j in kept])
    # DistilBERT's config maps `num_hidden_layers` to `n_layers` through its `attribute_map`.
    config.num_hidden_layers = len(kept)
    config.distillation = {
        "teacher": teacher_name,
        "teacher_layers": list(kept),
        "teacher_num_layers": num_teacher_layers,
    }
    return config


def _teacher_to_student_key(stack_path: str | None, kept: list[int]) -> Callable[[str], str | None]:
    """Return a function that maps a teacher state-dict key to the student's, or to `None` for a dropped layer."""
    if stack_path is None:
        return lambda key: key
    prefix = f"{stack_path}."
    position = {teacher_index: student_index for student_index, teacher_index in enumerate(kept)}

    def rename(key: str) -> str | None:
        if not key.startswith(prefix):
            return key
        index, rest = key[len(prefix) :].split(".", 1)
        student_index = position.get(int(index))
        return None if student_index is None else f"{prefix}{student_index}.{rest}"

    return rename


def _copy_model(teacher: PreTrainedModel, config: Any, rename: Callable[[str], str | None]) -> PreTrainedModel:
    """Build `type(teacher)(config)` and fill it with copies of the teacher's tensors."""
    # Building on the meta device allocates nothing and skips the random initialisation, as `from_pretrained` does in
    # transformers 5; every tensor is then replaced by a copy of the teacher's. `assign=True` keeps each teacher
    # tensor's own dtype and device (a half-precision or GPU teacher gives a matching student).
    with torch.device("meta"):
        student = type(teacher)(config)

    copies: dict[tuple, torch.Tensor] = {}

    def copy_of(tensor: torch.Tensor) -> torch.Tensor:
        # Tensors that share memory in the teacher (tied weights appear under two keys) are copied once.
        key = (tensor.data_ptr(), tensor.dtype, tensor.device, tuple(tensor.shape), tensor.stride())
        if key not in copies:
            copies[key] = tensor.detach().clone()
        return copies[key]

    state_dict = {}
    for key, tensor in teacher.state_dict().items():
        student_key = rename(key)
        if student_key is not None:
            state_dict[student_key] = copy_of(tensor)
    try:
        student.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(
            f"make_student could not map the weights of the {type(teacher).__name__} teacher onto its student: {error}"
        ) from error

    # Non-persistent buffers (position ids, rotary frequencies) are not in the state dict; copy them too rather than
    # trust values computed on the meta device.
    teacher_buffers = dict(teacher.named_buffers())
    student_keys = {rename(name): name for name in teacher_buffers}
    for name, buffer in list(student.named_buffers()):
        source = teacher_buffers.get(student_keys.get(name, ""))
        if buffer.is_meta and source is not None and source.shape == buffer.shape:
            module_name, _, buffer_name = name.rpartition(".")
            setattr(student.get_submodule(module_name), buffer_name, copy_of(source))

    _tie_like_teacher(student, teacher, rename)
    left_on_meta = [name for name, tensor in [*student.named_parameters(), *student.named_buffers()] if tensor.is_meta]
    if left_on_meta:
        raise RuntimeError(
            f"make_student found no teacher tensor for {left_on_meta} in the {type(teacher).__name__} student."
        )
    student.train(teacher.training)
    return student


def _tie_like_teacher(student: PreTrainedModel, teacher: PreTrainedModel, rename: Callable[[str], str | None]) -> None:
    """Tie the student's weights exactly where the teacher's are tied.

    `load_state_dict(assign=True)` gives every key its own parameter, so the ties made at construction are undone. A
    teacher whose config asks for tying can still be untied (`from_pretrained` leaves a decoder untied when the
    checkpoint holds different values for it), so the teacher's actual parameters decide, not its config.
    """
    student_to_teacher = {rename(name): name for name, _ in teacher.named_parameters(remove_duplicate=False)}
    tied = getattr(student, "all_tied_weights_keys", None) or {}
    for target, source in list(tied.items()):
        teacher_target, teacher_source = student_to_teacher.get(target), student_to_teacher.get(source)
        # A pair the teacher cannot vouch for stays untied: both keys were loaded, so the student keeps its values.
        if (
            teacher_target is None
            or teacher_source is None
            or teacher.get_parameter(teacher_target) is not teacher.get_parameter(teacher_source)
        ):
            del tied[target]
    student.tie_weights(recompute_mapping=False)


def build_student(
    teacher: PreTrainedModel,
    student_type: str = "transformer",
    *,
    layers: Sequence[int] | None = None,
    num_layers: int | None = None,
    embedding_init: str = "teacher",
    config_overrides: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """The student of a `student_type` (the recipe's `--student_type`): `make_student` for `"transformer"`,
    `make_tiny_student` for `"bilstm"` and `"textcnn"`. The arguments of the other kind must be left unset (see
    `hf_distill.checks.check_student_flags`)."""
    if student_type == "transformer":
        return make_student(teacher, layers=layers, num_layers=num_layers)
    return make_tiny_student(teacher, student_type, embedding_init=embedding_init, **(config_overrides or {}))


def freeze_position_embeddings(model: nn.Module) -> list[str]:
    """Stop training the learned absolute position embeddings of `model`, as DistilBERT's pre-training did
    (`--freeze_pos_embs`): they keep the teacher's values. Returns the names of the frozen parameters.

    `Trainer` leaves parameters with `requires_grad=False` out of the optimizer. A model without learned absolute
    position embeddings (rotary or relative positions) is refused rather than silently left as it is.
    """
    frozen = []
    for name, parameter in model.named_parameters():
        if name.endswith("position_embeddings.weight"):
            parameter.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        raise ValueError(
            f"{type(model).__name__} has no learned absolute position embeddings (no parameter named "
            "'*position_embeddings.weight'), so there is nothing to freeze; drop --freeze_position_embeddings"
        )
    return frozen

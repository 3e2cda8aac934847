"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation settings."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from transformers import TrainingArguments

from .layer_map import format_layer_map, parse_layer_map
from .losses import LOSS_TERMS
from .schedules import parse_schedules
from .teacher_modes import check_teacher_mode_arguments

# The weight arguments, in the registry's order: `alpha_kd`, `alpha_task`, `alpha_cos`, `alpha_mse`, `alpha_hint`, ...
LOSS_WEIGHT_NAMES: tuple[str, ...] = tuple(term.flag for term in LOSS_TERMS.values())
# The values that train without overflow. In fp32, a temperature near 1e-38 makes logits / T overflow to inf (NaN in
# the softmax), and one near 1e19 makes T^2 overflow to inf (inf times a KL of 0 is NaN); well inside those limits,
# T < 0.01 saturates the soft targets to one-hot and T > 1000 leaves a KL that rounds to 0, so neither is useful. A
# weight above 1e6 times the loss of a diverging step (1e32 and more) overflows fp32 to inf.
TEMPERATURE_RANGE: tuple[float, float] = (0.01, 1000.0)
MAX_LOSS_WEIGHT: float = 1e6
# The values `schedules` may move.
SCHEDULABLE: tuple[str, ...] = ("temperature", *LOSS_WEIGHT_NAMES)


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    r"""Training arguments for [`DistillationTrainer`], adding the distillation loss settings to `TrainingArguments`.

    The loss is `alpha_kd * L_kd + alpha_task * L_task + alpha_cos * L_cos + alpha_mse * L_mse`. The defaults are the
    DistilBERT triple loss with the weights and temperature of its published training command (Sanh et al. 2019):
    `alpha_kd=5.0` (soft targets), `alpha_task=2.0` (the student's own loss) and `alpha_cos=1.0` (hidden-state
    alignment) at `temperature=2.0`. Soft targets carry most of the signal, the task loss anchors the student to the
    true labels, and the cosine term keeps the student's representation close to the teacher's it was copied from.
    `alpha_mse` (logit regression, Tang et al. 2019) is off by default.

    Args:
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature T > 0 of the soft targets. Higher values expose more of the teacher's "dark
            knowledge" (the relative probabilities of wrong classes). The KD term is multiplied by T² so that its
            gradient scale does not change with T.
        alpha_kd (`float`, *optional*, defaults to `5.0`):
            Weight of the soft-target loss `L_kd`: T² · KL(teacher ‖ student) at temperature T, or the MSE between
            predictions for regression heads (`num_labels == 1`).
        alpha_task (`float`, *optional*, defaults to `2.0`):
            Weight of the student's own loss on the labels (cross-entropy, masked-LM, regression...). Needs labelled
            batches; set it to 0 to distil on unlabelled data.
        alpha_cos (`float`, *optional*, defaults to `1.0`):
            Weight of the cosine loss between student and teacher last hidden states, over non-padding tokens. Needs
            equal hidden sizes.
        alpha_mse (`float`, *optional*, defaults to `0.0`):
            Weight of the MSE between student and teacher logits (Tang et al. 2019).
        kd_positions (`str`, *optional*, defaults to `"labelled"`):
            Token-level heads (masked LM, token classification): the positions `L_kd` and `L_mse` cover.
            `"labelled"`: those with a label (`labels != -100`; for masked LM, the masked tokens only, as DistilBERT's
            `restrict_ce_to_mask`); `"all"`: every non-padding token. Sequence-level heads have one item per example
            and ignore it.

    A term whose weight is 0 is not computed: for example, no hidden states are requested when `alpha_cos == 0`.

    Intermediate layers (README "Layer losses"; they need a live teacher, not cached outputs):

    Args:
        alpha_hint (`float`, *optional*, defaults to `0.0`):
            Weight of the hidden-state hints `L_hint` at the pairs of `layer_map` (FitNets, PKD, TinyBERT). When the
            hidden sizes differ, a learned linear projection per pair maps the student's states to the teacher's
            size; the projections train with the student, are checkpointed, and are saved beside the student in
            `hint_projections.safetensors`.
        hint_loss (`str`, *optional*, defaults to `"mse"`):
            `"mse"` (TinyBERT), `"cosine"` (1 - cos per token) over the real tokens, or `"pkd"`: PKD's distance
            between the normalised [CLS] states.
        alpha_attn (`float`, *optional*, defaults to `0.0`):
            Weight of the attention term `L_attn` at the pairs of `layer_map` that are transformer layers (TinyBERT).
            Needs equal head counts.
        attn_loss (`str`, *optional*, defaults to `"mse"`):
            `"mse"` between pre-softmax attention scores (TinyBERT) or `"kl"` between attention distributions.
        alpha_rel (`float`, *optional*, defaults to `0.0`):
            Weight of the MiniLMv2 relation term `L_rel`: query-query, key-key and value-value relations of
            `relation_teacher_layer` against the student's last layer. Any hidden size and head count.
        layer_map (`list[str]`, *optional*):
            `"student:teacher"` layer pairs, e.g. `1:2 2:4 3:6` (0 is the embedding output). By default each
            student layer `i` follows teacher layer `i * teacher_layers // student_layers`.
        hint_embeddings (`bool`, *optional*, defaults to `False`):
            Add the embedding outputs (0:0) to the default `layer_map`.
        relation_heads (`int`, *optional*):
            Number of relation heads of `L_rel`; it must divide both hidden sizes. By default the teacher's number
            of attention heads.
        relation_teacher_layer (`int`, *optional*):
            The teacher layer whose relations `L_rel` follows; by default its last. For large teachers MiniLMv2
            advises an upper-middle layer.

    Schedules:

    Args:
        schedules (`list[str]`, *optional*):
            Values that move over training, as `"<name>:<end>[:<shape>]"`: e.g. `alpha_kd:1:cosine temperature:1`
            anneals `alpha_kd` from its value to 1 by a cosine and the temperature linearly to 1
            (`hf_distill.schedules`). The current values are logged at each logging step.

    Teacher modes (see the README's "Teacher modes"; `hf_distill.teacher_modes` checks them against the teachers):

    Args:
        teacher_weights (`list[float]`, *optional*):
            Ensembles (`teacher_model=[t1, t2, ...]`): one weight > 0 per teacher, normalised to sum to 1. By default
            the teachers weigh the same.
        cos_teacher (`int`, *optional*):
            Ensembles: the index of the teacher whose hidden states `L_cos` follows. Required when `alpha_cos > 0`
            and there are several teachers.
        teacher_route (`bool`, *optional*, defaults to `False`):
            `teacher_model` is a route of teacher checkpoints, from early to final, followed one at a time (Route
            Constrained Optimisation, Jin et al. 2019), instead of an ensemble.
        route_switch_steps (`list[int]`, *optional*):
            The optimizer steps at which the route moves to its next checkpoint (one fewer than the checkpoints).
        route_switch_epochs (`list[float]`, *optional*):
            The same in epochs. With neither, the switches are spread evenly over training.
        cotrain_teacher (`bool`, *optional*, defaults to `False`):
            Train the teacher together with the student: the teacher learns from its own task loss (logged as
            `loss_teacher_task`) while the student distils from it.
        cotrain_isolation (`bool`, *optional*, defaults to `True`):
            Co-training: detach the teacher's outputs from the student's distillation loss (parameter isolation).
            `False` lets the soft-target and hidden-state terms send gradients into the teacher too.
        cotrain_teacher_learning_rate (`float`, *optional*):
            Co-training: the teacher's learning rate; by default `learning_rate`.
        teacher_sharding (`str`, *optional*, defaults to `"auto"`):
            Several processes: `"shard"` splits a frozen teacher's weights across them for inference (FSDP2,
            `hf_distill.sharding`: 1/N of the weights per process, each layer gathered for its forward), under FSDP
            or DDP; `"replicate"` keeps a whole teacher in every process; `"auto"` shards under FSDP and replicates
            otherwise. The trainer shards a copy: the teacher passed in is left as it is.
    """

    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature T > 0 of the soft targets; the KD term is scaled by T^2."},
    )
    alpha_kd: float = field(
        default=LOSS_TERMS["kd"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['kd'].symbol}: {LOSS_TERMS['kd'].description}."},
    )
    alpha_task: float = field(
        default=LOSS_TERMS["task"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['task'].symbol}: {LOSS_TERMS['task'].description}."},
    )
    alpha_cos: float = field(
        default=LOSS_TERMS["cos"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['cos'].symbol}: {LOSS_TERMS['cos'].description}."},
    )
    alpha_mse: float = field(
        default=LOSS_TERMS["mse"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['mse'].symbol}: {LOSS_TERMS['mse'].description}."},
    )
    alpha_hint: float = field(
        default=LOSS_TERMS["hint"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['hint'].symbol}: {LOSS_TERMS['hint'].description}."},
    )
    alpha_attn: float = field(
        default=LOSS_TERMS["attn"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['attn'].symbol}: {LOSS_TERMS['attn'].description}."},
    )
    alpha_rel: float = field(
        default=LOSS_TERMS["rel"].default_weight,
        metadata={"help": f"Weight of {LOSS_TERMS['rel'].symbol}: {LOSS_TERMS['rel'].description}."},
    )
    kd_positions: Literal["labelled", "all"] = field(
        default="labelled",
        metadata={
            "help": "Token-level heads: L_kd over the labelled positions (masked LM: the masked tokens) or all."
        },
    )
    hint_loss: Literal["mse", "cosine", "pkd"] = field(
        default="mse", metadata={"help": "L_hint: mse or cosine over the real tokens, or pkd (normalised [CLS])."}
    )
    attn_loss: Literal["mse", "kl"] = field(
        default="mse", metadata={"help": "L_attn: mse between attention scores, or kl between distributions."}
    )
    layer_map: list[str] | None = field(
        default=None,
        metadata={"help": "student:teacher layer pairs for L_hint and L_attn, e.g. 1:2 2:4 3:6 (default: uniform)."},
    )
    hint_embeddings: bool = field(
        default=False, metadata={"help": "Add the embedding outputs (0:0) to the default layer_map."}
    )
    relation_heads: int | None = field(
        default=None, metadata={"help": "L_rel: relation heads, dividing both hidden sizes (default: teacher's)."}
    )
    relation_teacher_layer: int | None = field(
        default=None, metadata={"help": "L_rel: the teacher layer whose relations the student's last layer learns."}
    )
    schedules: list[str] | None = field(
        default=None,
        metadata={"help": "Values moving over training: <name>:<end>[:linear|cosine], e.g. alpha_kd:1:cosine."},
    )

    teacher_weights: list[float] | None = field(
        default=None, metadata={"help": "Ensemble: one weight > 0 per teacher (normalised); by default equal."}
    )
    cos_teacher: int | None = field(
        default=None, metadata={"help": "Ensemble: index of the teacher whose hidden states L_cos follows."}
    )
    teacher_route: bool = field(
        default=False,
        metadata={"help": "The teachers are a route of checkpoints, early to final, followed one at a time (RCO)."},
    )
    route_switch_steps: list[int] | None = field(
        default=None, metadata={"help": "Route: optimizer steps at which the next checkpoint takes over."}
    )
    route_switch_epochs: list[float] | None = field(
        default=None, metadata={"help": "Route: epochs at which the next checkpoint takes over (default: even)."}
    )
    cotrain_teacher: bool = field(
        default=False, metadata={"help": "Train the teacher with the student, on its own task loss."}
    )
    cotrain_isolation: bool = field(
        default=True,
        metadata={"help": "Co-training: the student's distillation loss sends no gradient into the teacher."},
    )
    cotrain_teacher_learning_rate: float | None = field(
        default=None, metadata={"help": "Co-training: the teacher's learning rate (default: --learning_rate)."}
    )
    teacher_sharding: Literal["auto", "shard", "replicate"] = field(
        default="auto",
        metadata={
            "help": "Several processes: shard the frozen teacher (FSDP2) or replicate it; auto: shard under FSDP."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_distillation_settings(
            self.temperature,
            {name: getattr(self, name) for name in LOSS_WEIGHT_NAMES},
            scheduled_up=_scheduled_up(self),
        )
        # `numpy.float32(2.0)` or a 0-d tensor passes the check; stored as the `float` it equals, so that the
        # arguments still serialise (`to_json_string`, which TensorBoard and the Hub card call).
        self.temperature = float(self.temperature)
        for name in LOSS_WEIGHT_NAMES:
            setattr(self, name, float(getattr(self, name)))
        check_layer_settings(self)
        if self.layer_map is not None:
            # Stored as "student:teacher" strings whatever form was given, so the arguments still serialise.
            self.layer_map = format_layer_map(parse_layer_map(self.layer_map))
        if self.schedules is not None:
            self.schedules = [
                f"{s.name}:{s.end:g}:{s.shape}" for s in parse_schedules(self.schedules, SCHEDULABLE).values()
            ]
        check_batch_settings(self)
        check_teacher_mode_arguments(self)


def _is_real_number(value: Any) -> bool:
    """Python ints and floats, numpy and other `numbers.Real` scalars, 0-d tensors; not bools or strings."""
    if isinstance(value, bool) or getattr(value, "dtype", None) == "bool":
        return False
    if isinstance(value, numbers.Real):
        return True
    return hasattr(value, "item") and getattr(value, "ndim", None) == 0 and isinstance(value.item(), numbers.Real)


def check_distillation_settings(temperature: Any, weights: dict[str, Any], *, scheduled_up: bool = False) -> None:
    """Raise `ValueError` for a temperature or loss weights that cannot train a student.

    Every value that passes trains without producing NaN: the temperature lies in `TEMPERATURE_RANGE` and each weight
    in `[0, MAX_LOSS_WEIGHT]` (see their comment). Any real-number type is accepted (`2`, `2.0`, `numpy.float32(2)`,
    `fractions.Fraction(1, 2)`, a 0-d tensor).

    Args:
        temperature: The softmax temperature; a finite number in `TEMPERATURE_RANGE`.
        weights: Loss weights keyed by argument name (`"alpha_kd"`, ...); each a finite number >= 0, not all 0.
        scheduled_up (`bool`, *optional*, defaults to `False`): A weight's schedule ends above 0, so all weights may
            start at 0 (a term warmed up from nothing).
    """
    low, high = TEMPERATURE_RANGE
    if not _is_real_number(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"temperature must be a positive finite number, got {temperature}; "
            "use a value such as 2.0 (DistilBERT) or 1.0 (no softening)"
        )
    if not low <= temperature <= high:
        raise ValueError(
            f"temperature must be between {low:g} and {high:g}, got {temperature:g}: outside that range the softened "
            "targets saturate (small T) or the T^2-scaled KL rounds to 0 (large T). Use a value such as 2.0"
        )
    for name, value in weights.items():
        if not _is_real_number(value) or not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        value = float(value)
        if value < 0:
            raise ValueError(
                f"{name} must be >= 0, got {value}; a negative weight would reward the student for moving away "
                "from its target. Use 0 to switch the term off."
            )
        if value > MAX_LOSS_WEIGHT:
            raise ValueError(
                f"{name} must be at most {MAX_LOSS_WEIGHT:g}, got {value:g}: the weighted loss would overflow fp32 on "
                "the first large step. Only the ratios of the weights matter; scale them down (and the learning rate "
                "with them if needed)"
            )
    if all(float(value) == 0 for value in weights.values()) and not scheduled_up:
        raise ValueError(
            f"all loss weights are 0 ({', '.join(weights)}), so there is nothing to train on; "
            "set at least one of them > 0, e.g. alpha_kd=5.0"
        )


def _scheduled_up(args: Any) -> bool:
    """Whether a loss weight is scheduled to end above 0 (a schedule's form is checked in `check_layer_settings`)."""
    try:
        schedules = parse_schedules(getattr(args, "schedules", None), SCHEDULABLE)
    except ValueError:
        return False
    return any(name != "temperature" and schedule.end > 0 for name, schedule in schedules.items())


def check_layer_settings(args: Any) -> None:
    """Raise `ValueError` for loss settings that are wrong whatever the models: the loss kinds and KD positions, the
    form of `layer_map` and the schedules, the relation settings (the models: `hf_distill.layer_terms`)."""
    kinds_of = (
        ("kd_positions", ("labelled", "all")),
        ("hint_loss", ("mse", "cosine", "pkd")),
        ("attn_loss", ("mse", "kl")),
    )
    for name, kinds in kinds_of:
        value = getattr(args, name, kinds[0])
        if value not in kinds:
            raise ValueError(f"{name} must be one of {list(kinds)}, got {value!r}")
    if parse_layer_map(getattr(args, "layer_map", None)) is not None and getattr(args, "hint_embeddings", False):
        raise ValueError(
            f"hint_embeddings=True adds 0:0 to the default layer_map, but layer_map is given ({args.layer_map}); "
            "add '0:0' to layer_map instead, and drop hint_embeddings"
        )
    for name in ("relation_heads", "relation_teacher_layer"):
        value = getattr(args, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}; or leave it unset for the default")
    schedules = parse_schedules(getattr(args, "schedules", None), SCHEDULABLE)
    if schedules:
        temperature = schedules["temperature"].end if "temperature" in schedules else args.temperature
        ends = {
            name: (schedules[name].end if name in schedules else getattr(args, name)) for name in LOSS_WEIGHT_NAMES
        }
        try:
            check_distillation_settings(temperature, ends)
        except ValueError as error:
            raise ValueError(f"at the end of the schedules {list(args.schedules)}: {error}") from None


def check_batch_settings(args: TrainingArguments) -> None:
    """Raise `ValueError` for batch settings that `Trainer` accepts and only fails on in its dataloader, after a
    teacher may already have been fine-tuned: batch sizes and accumulation steps must be positive integers."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}; pass --{name} 8 (or another size)")


def distillation_settings(args: TrainingArguments, progress: float | None = None) -> tuple[float, dict[str, float]]:
    """Read and check the distillation settings of `args`, at a point of training when some are scheduled.

    Plain `TrainingArguments` (a script moved to `DistillationTrainer` without changing its arguments) get the
    defaults of [`DistillationTrainingArguments`]. The values are checked again here because a dataclass can be
    changed after `__post_init__` ran.

    Args:
        args: The training arguments.
        progress (`float`, *optional*): The fraction of training done (`global_step / max_steps`) for `schedules`;
            `None` reads the start values.

    Returns:
        `tuple[float, dict[str, float]]`: The temperature, and the weights of the active terms keyed by term name
        (`"kd"`, `"task"`, `"cos"`, ...). A term is active when its weight is non-zero at the start or at the end of
        its schedule; its weight at `progress` may then be 0.
    """
    defaults = {f.name: f.default for f in fields(DistillationTrainingArguments)}
    temperature = getattr(args, "temperature", defaults["temperature"])
    weights = {name: getattr(args, name, defaults[name]) for name in LOSS_WEIGHT_NAMES}
    check_distillation_settings(temperature, weights, scheduled_up=_scheduled_up(args))
    schedules = parse_schedules(getattr(args, "schedules", None), SCHEDULABLE)
    temperature = float(temperature)
    if "temperature" in schedules:
        temperature = schedules["temperature"].value(temperature, progress or 0.0)
    active = {}
    for name, value in weights.items():
        value = float(value)
        if name in schedules:
            end = schedules[name].end
            value = schedules[name].value(value, progress or 0.0)
            if float(getattr(args, name)) > 0 or end > 0:
                active[name.removeprefix("alpha_")] = value
        elif value > 0:
            active[name.removeprefix("alpha_")] = value
    return temperature, active


def scheduled_values(args: TrainingArguments, progress: float) -> dict[str, float]:
    """The current values of the scheduled settings (`temperature`, `alpha_kd`, ...) at `progress`, by argument name:
    what the trainer logs beside the loss."""
    names = list(parse_schedules(getattr(args, "schedules", None), SCHEDULABLE))
    if not names:
        return {}
    temperature, weights = distillation_settings(args, progress)
    return {
        name: temperature if name == "temperature" else weights.get(name.removeprefix("alpha_"), 0.0) for name in names
    }

"""The intermediate-layer terms of `DistillationTrainer`: hidden-state hints, attention, and MiniLMv2 relations.

`DistillationTrainer` mixes [`LayerTermHooks`] in. Which layers and what to read is decided once, before any work, by
[`layer_plan`]; the formulas are in `hf_distill.losses` (`mse_loss`, `cosine_loss`, `pkd_loss`, `attention_loss`,
`relation_loss`). Each term is a sum over items (real tokens, or examples for PKD's [CLS] hints) divided by the
accumulated batch's item count, like every other term, so gradient accumulation and several processes stay exact.

Hints between models of different hidden sizes go through learned projections ([`HintProjections`], FitNets'
regressors): one `nn.Linear(student_hidden, teacher_hidden)` per pair of `layer_map`. They are trained by the
trainer's optimizer (in parameter groups of their own), clipped with the student, kept out of the student's module
tree, saved in every checkpoint and beside the saved student as `hint_projections.safetensors`, and restored on
resume.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.utils import logging

from .attention_capture import AttentionLayers, attention_layers, capture_projections
from .item_counts import ItemCounts
from .layer_map import parse_layer_map, resolve_layer_map
from .losses import LAYER_TERMS, attention_loss, cosine_loss, head_products, mse_loss, pkd_loss, relation_loss

logger = logging.get_logger(__name__)

PROJECTIONS_NAME = "hint_projections.safetensors"
# Keys of the teacher outputs the layer terms read (one teacher's, not stacked over an ensemble).
HINT_KEY = "hint_hidden_states"
TEACHER_PART_KEYS = {"query": "layer_query", "key": "layer_key", "value": "layer_value"}
LAYER_OUTPUT_KEYS = (HINT_KEY, *TEACHER_PART_KEYS.values())


@dataclass(frozen=True)
class LayerPlan:
    """What the layer terms of a run read from each model, decided before training.

    Attributes:
        terms (`frozenset[str]`): The active layer terms (`"hint"`, `"attn"`, `"rel"`).
        hint_pairs (`list[tuple[int, int]]`): `(student, teacher)` layers of `L_hint` (0 = embeddings).
        attn_pairs (`list[tuple[int, int]]`): `(student, teacher)` transformer layers of `L_attn`.
        hint_loss (`str`): `"mse"`, `"cosine"` or `"pkd"`.
        attn_loss (`str`): `"mse"` or `"kl"`.
        relation_layers (`tuple[int, int]`): `(student, teacher)` layers of `L_rel`.
        relation_heads (`int`): Relation heads of `L_rel`.
        student_heads, teacher_heads (`int`): The models' attention heads per layer.
        student_hidden, teacher_hidden (`int`): The models' hidden sizes.
    """

    terms: frozenset[str]
    hint_pairs: list[tuple[int, int]] = field(default_factory=list)
    attn_pairs: list[tuple[int, int]] = field(default_factory=list)
    hint_loss: str = "mse"
    attn_loss: str = "mse"
    relation_layers: tuple[int, int] = (0, 0)
    relation_heads: int = 0
    student_heads: int = 0
    teacher_heads: int = 0
    student_hidden: int = 0
    teacher_hidden: int = 0

    def capture(self, side: int) -> dict[int, tuple[str, ...]]:
        """The projections to record for one model (`side` 0: student, 1: teacher), by layer."""
        wanted: dict[int, set[str]] = {}
        if "attn" in self.terms:
            for pair in self.attn_pairs:
                wanted.setdefault(pair[side], set()).update(("query", "key"))
        if "rel" in self.terms:
            wanted.setdefault(self.relation_layers[side], set()).update(("query", "key", "value"))
        return {layer: tuple(sorted(parts)) for layer, parts in wanted.items()}

    @property
    def needs_hidden_states(self) -> bool:
        return "hint" in self.terms

    @property
    def projected(self) -> bool:
        """Whether hints go through learned projections (the hidden sizes differ)."""
        return "hint" in self.terms and self.student_hidden != self.teacher_hidden


def _config_value(model: nn.Module, name: str, what: str, term: str) -> int:
    config = getattr(model, "config", None)
    value = getattr(config, name, None)
    if not isinstance(value, int):
        raise ValueError(
            f"{term} reads {what}'s layers, but {type(model).__name__} has no config.{name}; the layer terms need a "
            "transformers encoder (set alpha_hint, alpha_attn and alpha_rel to 0 for this model)"
        )
    return value


def layer_plan(args: Any, student: nn.Module, teacher: nn.Module | None, terms: dict[str, float]) -> LayerPlan | None:
    """Check the layer-term settings against the student and the teacher they follow; `None` when none is active.

    Args:
        args: The training arguments (`layer_map`, `hint_loss`, ...).
        student (`nn.Module`): The student, unwrapped.
        teacher (`nn.Module`, *optional*): The teacher the layer terms follow; `None` when training from cached
            outputs, which is refused.
        terms: The active loss terms.

    Raises:
        ValueError: Before any work, for a combination that cannot train, naming the value and the fix.
    """
    active = frozenset(name for name in LAYER_TERMS if name in terms)
    if not active:
        return None
    flags = ", ".join(f"alpha_{name}" for name in sorted(active))
    if teacher is None:  # `teacher_modes.teacher_plan` refuses cached outputs with the layer terms first
        raise ValueError(f"{flags} > 0 needs a live teacher to read the intermediate layers of")
    if getattr(args, "cotrain_teacher", False):
        raise ValueError(f"{flags} > 0 is not supported with cotrain_teacher=True; distil from a frozen teacher")
    reentrant = (getattr(args, "gradient_checkpointing_kwargs", None) or {}).get("use_reentrant")
    if active & {"attn", "rel"} and getattr(args, "gradient_checkpointing", False) and reentrant:
        raise ValueError(_REENTRANT_MESSAGE)
    if not getattr(student, "supports_hidden_state_distillation", True):
        raise ValueError(
            f"{flags} > 0 reads the student's transformer layers, but {type(student).__name__} has none; set "
            f"{flags} to 0 and distil its logits"
        )
    student_layers = _config_value(student, "num_hidden_layers", "the student", flags)
    teacher_layers = _config_value(teacher, "num_hidden_layers", "the teacher", flags)
    student_hidden = _config_value(student, "hidden_size", "the student", flags)
    teacher_hidden = _config_value(teacher, "hidden_size", "the teacher", flags)
    pairs = resolve_layer_map(
        parse_layer_map(getattr(args, "layer_map", None)),
        student_layers=student_layers,
        teacher_layers=teacher_layers,
        embeddings=getattr(args, "hint_embeddings", False),
    )
    plan: dict[str, Any] = dict(
        terms=active,
        hint_pairs=pairs,
        hint_loss=getattr(args, "hint_loss", "mse"),
        attn_loss=getattr(args, "attn_loss", "mse"),
        student_hidden=student_hidden,
        teacher_hidden=teacher_hidden,
    )
    if active & {"attn", "rel"}:
        student_attention = attention_layers(student, what="the student")
        teacher_attention = attention_layers(teacher, what="the teacher")
        plan.update(student_heads=student_attention.num_heads, teacher_heads=teacher_attention.num_heads)
    if "attn" in active:
        plan["attn_pairs"] = [(s, t) for s, t in pairs if s > 0 and t > 0]
        if not plan["attn_pairs"]:
            raise ValueError(
                f"alpha_attn > 0 matches the attention of transformer layers, but layer_map {pairs} pairs only the "
                "embeddings (layer 0); add pairs of layers >= 1"
            )
        if plan["student_heads"] != plan["teacher_heads"]:
            raise ValueError(
                f"alpha_attn > 0 matches attention heads one to one, but the student has {plan['student_heads']} "
                f"heads and the teacher {plan['teacher_heads']}; give the student num_attention_heads="
                f"{plan['teacher_heads']}, or use alpha_rel (MiniLMv2 relations), which works with any head count"
            )
    if "rel" in active:
        teacher_layer = getattr(args, "relation_teacher_layer", None) or teacher_layers
        if teacher_layer > teacher_layers:
            raise ValueError(
                f"relation_teacher_layer={teacher_layer} but the teacher has {teacher_layers} layers (1 to "
                f"{teacher_layers}); MiniLMv2 uses the last, or an upper-middle layer of a large teacher"
            )
        heads = getattr(args, "relation_heads", None) or plan["teacher_heads"]
        if student_hidden % heads or teacher_hidden % heads:
            raise ValueError(
                f"relation_heads={heads} must divide both hidden sizes (student {student_hidden}, teacher "
                f"{teacher_hidden}); pass --relation_heads with a common divisor, e.g. "
                f"{_largest_common_divisor(student_hidden, teacher_hidden, heads)}"
            )
        plan.update(relation_layers=(student_layers, teacher_layer), relation_heads=heads)
    return LayerPlan(**plan)


_REENTRANT_MESSAGE = (
    "alpha_attn and alpha_rel read the student's queries, keys and values inside its layers, which reentrant "
    "gradient checkpointing runs without autograd, so those terms would send no gradient to the student; pass "
    "gradient_checkpointing_kwargs={'use_reentrant': False} (the default), or drop gradient_checkpointing"
)


def count_examples(inputs: dict[str, Any], mask: torch.Tensor) -> int:
    """Examples in a batch: the leading dimension of its inputs (several sequences each for multiple choice)."""
    input_ids = inputs.get("input_ids")
    reference = input_ids if isinstance(input_ids, torch.Tensor) else inputs.get("attention_mask")
    return reference.shape[0] if isinstance(reference, torch.Tensor) else mask.shape[0]


def _largest_common_divisor(a: int, b: int, at_most: int) -> int:
    return max(d for d in range(1, min(a, b, max(at_most, 1)) + 1) if a % d == 0 and b % d == 0)


class HintProjections(nn.Module):
    """Learned linear maps from the student's hidden size to the teacher's, one per hint pair (FitNets' regressors).

    Args:
        student_hidden (`int`): The student's hidden size.
        teacher_hidden (`int`): The teacher's hidden size.
        num_pairs (`int`): The pairs of `layer_map`.
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, num_pairs: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in range(num_pairs))

    def forward(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """Project the student's states of each pair, in the order of the pairs (in the projections' dtype: a bf16
        student's states meet fp32 projections)."""
        return [projection(state.to(projection.weight.dtype)) for projection, state in zip(self.maps, states)]


def save_projections(projections: nn.Module, directory: str | os.PathLike) -> str:
    """Write the projections' weights to `<directory>/hint_projections.safetensors`; return the path."""
    from safetensors.torch import save_file

    path = os.path.join(os.fspath(directory), PROJECTIONS_NAME)
    save_file({key: value.detach().contiguous().cpu() for key, value in projections.state_dict().items()}, path)
    return path


def load_projections(projections: nn.Module, directory: str | os.PathLike) -> None:
    """Load `<directory>/hint_projections.safetensors` into `projections` (shapes must match).

    Raises:
        ValueError: If the file is missing or was written for other pairs or sizes.
    """
    from safetensors.torch import load_file

    path = os.path.join(os.fspath(directory), PROJECTIONS_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"{os.fspath(directory)} holds no {PROJECTIONS_NAME}, but this run trains hint projections (the hidden "
            "sizes differ); resume from a checkpoint of the same run, or start a new run"
        )
    state = load_file(path)
    try:
        projections.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit this run's layer_map and hidden sizes: {error}") from None


class LayerTermHooks:
    """`DistillationTrainer`'s layer terms, projections and their optimizer, checkpoint and saving hooks."""

    layer_plan: LayerPlan | None = None
    hint_projections: nn.Module | None = None

    def _setup_layer_terms(self, plan: LayerPlan | None) -> None:
        """Keep the plan and build the projections it needs (called at `__init__` and for each new student)."""
        self.layer_plan = plan
        self.hint_projections = None
        self._attention_layers: dict[int, AttentionLayers] = {}
        self._projections_prepared = False
        self._projection_grads_step: int | None = None
        if plan is not None and plan.projected:
            self.hint_projections = HintProjections(plan.student_hidden, plan.teacher_hidden, len(plan.hint_pairs))
            self.hint_projections.to(self.args.device)

    def _attention_layers_of(self, model: nn.Module, what: str) -> AttentionLayers:
        unwrapped = self.accelerator.unwrap_model(model)
        key = id(unwrapped)
        if key not in self._attention_layers:
            self._attention_layers[key] = attention_layers(unwrapped, what=what)
        return self._attention_layers[key]

    def _layer_capture(self, model: nn.Module, side: int) -> Any:
        """A context recording the projections one model's layer terms need (`side` 0: student, 1: teacher); it
        records nothing (an empty dict) when no attention or relation term is active."""
        plan = self.layer_plan
        if plan is None or not plan.terms & {"attn", "rel"}:
            return nullcontext({})
        layers = self._attention_layers_of(model, "the student" if side == 0 else "the teacher")
        return capture_projections(layers, plan.capture(side))

    def _teacher_layer_outputs(self, out: Any, captured: dict[tuple[int, str], torch.Tensor]) -> dict[str, Any]:
        """The teacher tensors the layer terms read: hidden states of the hint pairs, and the recorded projections
        stacked per part in the order the terms use them (attention pairs, then the relation layer)."""
        plan = self.layer_plan
        wanted: dict[str, torch.Tensor] = {}
        if plan is None:
            return wanted
        if plan.needs_hidden_states:
            hidden = out.get("hidden_states")
            if not hidden:
                raise ValueError(
                    f"alpha_hint > 0 needs the teacher's hidden states, but {type(out).__name__} carries none"
                )
            wanted[HINT_KEY] = torch.stack([hidden[t] for _, t in plan.hint_pairs])
        for part, key in TEACHER_PART_KEYS.items():
            layers = self._teacher_part_layers(part)
            if layers:
                wanted[key] = torch.stack([captured[(layer, part)] for layer in layers])
        return wanted

    def _teacher_part_layers(self, part: str) -> list[int]:
        """The teacher layers whose `part` projections are stacked, in order: attention pairs, then relations."""
        plan = self.layer_plan
        layers = []
        if "attn" in plan.terms and part in ("query", "key"):
            layers.extend(t for _, t in plan.attn_pairs)
        if "rel" in plan.terms:
            layers.append(plan.relation_layers[1])
        return layers

    def _prepared_projections(self) -> nn.Module:
        """The projections, wrapped for several processes (their gradients are averaged like the student's), with
        their gradients zeroed at the first micro-batch of each optimizer step."""
        if not self._projections_prepared:
            if self.accelerator.num_processes > 1:
                self.hint_projections = self.accelerator.prepare_model(self.hint_projections)
            self._projections_prepared = True
        if self._projection_grads_step != self.state.global_step:
            # `Trainer` zeroes the student's gradients (`model.zero_grad()`), not the optimizer's: without this the
            # projections' gradients would pile up over every step of the run.
            self.hint_projections.zero_grad(set_to_none=True)
            self._projection_grads_step = self.state.global_step
        return self.hint_projections

    def _layer_terms(
        self,
        outputs: Any,
        captured: dict[tuple[int, str], torch.Tensor],
        teacher: dict[str, torch.Tensor],
        inputs: dict[str, Any],
        counts: ItemCounts,
        terms: Collection[str],
    ) -> dict[str, torch.Tensor]:
        """`L_hint`, `L_attn` and `L_rel` (those of `terms`, this step's active ones) as shares of the accumulated
        batch, each averaged over its layer pairs."""
        plan = self.layer_plan
        terms = plan.terms & set(terms)
        parts: dict[str, torch.Tensor] = {}
        input_ids = inputs.get("input_ids")
        attention_mask = inputs.get("attention_mask")
        if not isinstance(attention_mask, torch.Tensor):
            reference = input_ids if isinstance(input_ids, torch.Tensor) else outputs["hidden_states"][0][..., 0]
            attention_mask = torch.ones(reference.shape, dtype=torch.long, device=reference.device)
        # One row per sequence the encoder ran: multiple-choice batches (batch, choices, seq) are flattened by the
        # model to (batch * choices, seq), and so are their hidden states, queries and keys.
        mask = attention_mask.reshape(-1, attention_mask.shape[-1]).bool()
        if "hint" in terms:
            hidden = outputs.get("hidden_states")
            if not hidden:
                raise ValueError(
                    f"alpha_hint > 0 needs the student's hidden states, but "
                    f"{type(self.accelerator.unwrap_model(self.model)).__name__} returned none"
                )
            student_states = [hidden[s] for s, _ in plan.hint_pairs]
            if plan.hint_loss == "pkd":
                student_states = [state[:, 0] for state in student_states]
            if self.hint_projections is not None:
                student_states = self._prepared_projections()(student_states)
            total = 0.0
            for position, student_state in enumerate(student_states):
                teacher_state = teacher[HINT_KEY][position]
                if plan.hint_loss == "pkd":
                    # Normalised by examples: a multiple-choice example's sequences count as one item (their mean).
                    per_example = mask.shape[0] / max(count_examples(inputs, mask), 1)
                    total = total + pkd_loss(student_state, teacher_state[:, 0], reduction="sum") / per_example
                elif plan.hint_loss == "cosine":
                    total = total + cosine_loss(student_state, teacher_state, mask=mask, reduction="sum")
                else:
                    total = total + mse_loss(student_state, teacher_state, mask=mask, reduction="sum")
            count = counts.examples if plan.hint_loss == "pkd" else counts.tokens
            parts["hint"] = counts.share(total / len(student_states), count)
        if captured and self.model.training and not all(value.requires_grad for value in captured.values()):
            if any(p.requires_grad for p in self.accelerator.unwrap_model(self.model).parameters()):
                raise ValueError(_REENTRANT_MESSAGE)
        if "attn" in terms:
            total = 0.0
            for position, (s, _) in enumerate(plan.attn_pairs):
                student_scores = head_products(captured[(s, "query")], captured[(s, "key")], plan.student_heads)
                teacher_scores = head_products(
                    teacher["layer_query"][position], teacher["layer_key"][position], plan.teacher_heads
                )
                total = total + attention_loss(
                    student_scores, teacher_scores, attention_mask=mask, kind=plan.attn_loss, reduction="sum"
                )
            parts["attn"] = counts.share(total / len(plan.attn_pairs), counts.tokens)
        if "rel" in terms:
            layer = plan.relation_layers[0]
            total = 0.0
            for part, key in TEACHER_PART_KEYS.items():
                # The relation layer's projections are stacked last (after the attention pairs' queries and keys).
                total = total + relation_loss(
                    captured[(layer, part)],
                    teacher[key][-1],
                    num_relation_heads=plan.relation_heads,
                    attention_mask=mask,
                    reduction="sum",
                )
            parts["rel"] = counts.share(total, counts.tokens)
        return parts

    # ---- the projections' optimizer, clipping, checkpoints and saving ----------------------------------------------

    def _projection_parameters(self) -> list[nn.Parameter]:
        if self.hint_projections is None:
            return []
        return list(self.accelerator.unwrap_model(self.hint_projections).parameters())

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """`Trainer.create_optimizer`, with the hint projections added in parameter groups of their own."""
        optimizer = super().create_optimizer(model)
        if self.hint_projections is None:
            return optimizer
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        projections = self.accelerator.unwrap_model(self.hint_projections)
        if all(id(p) in held for p in projections.parameters()):
            return optimizer
        decay = set(self.get_decay_parameter_names(projections))
        named = list(projections.named_parameters())
        for params, weight_decay in (
            ([p for n, p in named if n in decay], self.args.weight_decay),
            ([p for n, p in named if n not in decay], 0.0),
        ):
            if params:
                optimizer.add_param_group(
                    {"params": params, "weight_decay": weight_decay, "lr": self.args.learning_rate}
                )
        return optimizer

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        """Clip the student's and the projections' gradients together, to one norm, as one model would be."""
        if self.hint_projections is None:
            return super()._clip_grad_norm(model)
        parameters = [*model.parameters(), *self._projection_parameters()]
        return self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """`Trainer._save` (the student alone), and the hint projections beside it in their own file."""
        super()._save(output_dir, state_dict)
        if self.hint_projections is not None:
            directory = output_dir if output_dir is not None else self.args.output_dir
            save_projections(self.accelerator.unwrap_model(self.hint_projections), directory)

    def _load_best_model(self) -> None:
        """`Trainer._load_best_model` (`load_best_model_at_end`), and the best checkpoint's hint projections with it,
        so that the saved student and its projections were trained together."""
        super()._load_best_model()
        best = self.state.best_model_checkpoint
        if self.hint_projections is not None and best is not None:
            load_projections(self.accelerator.unwrap_model(self.hint_projections), best)

    def _check_layer_terms_planned(self, terms: Collection[str]) -> None:
        """Refuse a layer term switched on after the trainer was built: its plan (hooks, projections) is made then."""
        planned = self.layer_plan.terms if self.layer_plan is not None else frozenset()
        added = sorted(set(terms) & set(LAYER_TERMS) - planned)
        if added:
            flags = ", ".join(f"alpha_{name}" for name in added)
            raise ValueError(
                f"{flags} was set > 0 after the DistillationTrainer was built, but the layer terms' plan (the layers "
                "to read, the projections in the optimizer) is made when it is built; pass it in the arguments "
                "given to DistillationTrainer"
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """`Trainer._load_from_checkpoint`, and the hint projections of the checkpoint."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.hint_projections is not None and model is None:
            load_projections(self.accelerator.unwrap_model(self.hint_projections), resume_from_checkpoint)
            logger.info("Loaded the hint projections from %s", resume_from_checkpoint)

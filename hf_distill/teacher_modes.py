"""How the trainer uses its teachers: one, an ensemble, a route of checkpoints (RCO), or one trained with the student.

Each mode is chosen by `teacher_model` and the teacher-mode fields of `DistillationTrainingArguments`:

- one teacher (a model, Hub id or path): the default, frozen and run online at every step;
- no teacher, and a training set holding `hf_distill.cache_teacher_outputs` columns: cached outputs;
- a list of teachers: an ensemble, weighted by `teacher_weights`;
- a list with `teacher_route=True`: a route of checkpoints, one in memory at a time, switched at `route_switch_steps`,
  `route_switch_epochs`, or evenly;
- one teacher with `cotrain_teacher=True`: co-training.

This module holds their checks and the route's schedule; the loss formulas stay in `hf_distill.losses`.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn
from transformers import AutoConfig, PreTrainedModel

from .checks import check_student_terms, check_teacher_student
from .losses import LAYER_TERMS
from .modeling import check_model_reference, load_model
from .sharding import resolve_teacher_sharding
from .teacher_cache import cached_columns, check_cached_dataset

TeacherMode = Literal["single", "ensemble", "route", "cotrain"]


@dataclass(frozen=True)
class TeacherPlan:
    """The checked teacher settings of one run.

    Attributes:
        mode (`str`): `"single"`, `"ensemble"`, `"route"` or `"cotrain"`.
        num_teachers (`int`): Teachers in the ensemble (1 otherwise; the route's checkpoints count as one teacher).
        weights (`tuple[float, ...]`): The ensemble weights, normalised to sum to 1.
        cos_teacher (`int`): The teacher whose hidden states `L_cos` follows.
        cached (`bool`): The teachers' outputs come from cached dataset columns.
    """

    mode: TeacherMode
    num_teachers: int = 1
    weights: tuple[float, ...] = (1.0,)
    cos_teacher: int = 0
    cached: bool = False


def _positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_teacher_mode_arguments(args: Any) -> None:
    """Raise `ValueError` for teacher-mode arguments that contradict each other, whatever the teachers are.

    Called from `DistillationTrainingArguments.__post_init__`; the checks that need the teachers are in
    [`teacher_plan`].
    """
    resolve_teacher_sharding(
        getattr(args, "teacher_sharding", "auto"),
        fsdp=False,
        world_size=2,
        cotrain=getattr(args, "cotrain_teacher", False),
    )
    weights = getattr(args, "teacher_weights", None)
    if weights is not None:
        if not isinstance(weights, (list, tuple)) or not weights:
            raise ValueError(f"teacher_weights must be a list of numbers > 0, one per teacher, got {weights!r}")
        bad = [w for w in weights if not _positive_number(w)]
        if bad:
            raise ValueError(
                f"teacher_weights must all be finite numbers > 0, got {list(weights)}; drop a teacher instead of "
                "giving it weight 0"
            )
    cos_teacher = getattr(args, "cos_teacher", None)
    if cos_teacher is not None and (
        isinstance(cos_teacher, bool) or not isinstance(cos_teacher, int) or cos_teacher < 0
    ):
        raise ValueError(f"cos_teacher must be the index (0, 1, ...) of a teacher, got {cos_teacher!r}")
    steps = getattr(args, "route_switch_steps", None)
    epochs = getattr(args, "route_switch_epochs", None)
    route = getattr(args, "teacher_route", False)
    if (steps is not None or epochs is not None) and not route:
        raise ValueError(
            "route_switch_steps/route_switch_epochs are set but teacher_route is False; pass teacher_route=True "
            "(--teacher_route) with teacher_model=[checkpoint, ..., final teacher]"
        )
    if steps is not None and epochs is not None:
        raise ValueError("pass route_switch_steps or route_switch_epochs, not both")
    for name, values, kind in (("route_switch_steps", steps, int), ("route_switch_epochs", epochs, (int, float))):
        if values is None:
            continue
        if (
            not isinstance(values, (list, tuple))
            or not values
            or any(isinstance(v, bool) or not isinstance(v, kind) or not _positive_number(v) for v in values)
        ):
            raise ValueError(f"{name} must be a non-empty list of numbers > 0, got {values!r}")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"{name} must increase strictly (early checkpoint first), got {list(values)}")
    cotrain = getattr(args, "cotrain_teacher", False)
    if cotrain and route:
        raise ValueError(
            "cotrain_teacher=True trains one teacher; it cannot follow a teacher_route of checkpoints. Drop "
            "teacher_route to co-train one teacher, or drop cotrain_teacher to follow the route"
        )
    rate = getattr(args, "cotrain_teacher_learning_rate", None)
    if rate is not None:
        if not cotrain:
            raise ValueError(
                "cotrain_teacher_learning_rate is set but cotrain_teacher is False; pass cotrain_teacher=True to "
                "train the teacher with the student"
            )
        if not _positive_number(rate):
            raise ValueError(f"cotrain_teacher_learning_rate must be a finite number > 0, got {rate!r}")
    if not cotrain and getattr(args, "cotrain_isolation", True) is not True:
        raise ValueError(
            "cotrain_isolation=False only applies to co-training; pass cotrain_teacher=True as well, or drop it"
        )


def teacher_plan(args: Any, *, num_teachers: int, cached: bool, terms: set[str] | dict[str, float]) -> TeacherPlan:
    """Check the teacher-mode arguments against the teachers given and return the run's [`TeacherPlan`].

    Args:
        args: The training arguments.
        num_teachers (`int`): The number of teachers (or of route checkpoints, or of cached teachers).
        cached (`bool`): The teachers' outputs come from cached columns.
        terms: The active loss terms by name (`"kd"`, `"cos"`, ...).

    Raises:
        ValueError: For settings that do not fit the teachers, naming the value and the fix.
    """
    route = getattr(args, "teacher_route", False)
    cotrain = getattr(args, "cotrain_teacher", False)
    weights = getattr(args, "teacher_weights", None)
    cos_teacher = getattr(args, "cos_teacher", None)
    layer_terms = sorted(set(terms) & set(LAYER_TERMS))
    if cached and layer_terms:
        flags = ", ".join(f"alpha_{name}" for name in layer_terms)
        raise ValueError(
            f"{flags} > 0 reads the teacher's intermediate layers, but cached teacher outputs hold the logits and "
            "the last hidden state only; distil from the live teacher (pass teacher_model and the plain training "
            f"set, or drop --cache_teacher_outputs), or set {flags} to 0"
        )
    if cached and (route or cotrain):
        flag = "teacher_route" if route else "cotrain_teacher"
        raise ValueError(
            f"{flag}=True needs live teachers, but the training set holds cached teacher outputs and teacher_model "
            f"is None; pass the teachers as teacher_model, or set {flag}=False to train from the cache"
        )
    if route:
        if num_teachers < 2:
            raise ValueError(
                f"teacher_route=True needs at least two checkpoints, early to final, got {num_teachers}; pass "
                'teacher_model=["teacher/checkpoint-500", ..., "teacher"]'
            )
        for name in ("route_switch_steps", "route_switch_epochs"):
            values = getattr(args, name, None)
            if values is not None and len(values) != num_teachers - 1:
                raise ValueError(
                    f"{name} has {len(values)} value(s) for a route of {num_teachers} checkpoints; give one switch "
                    f"per checkpoint after the first ({num_teachers - 1})"
                )
        if weights is not None or cos_teacher is not None:
            raise ValueError(
                "teacher_weights and cos_teacher apply to ensembles; a teacher_route uses one checkpoint at a time"
            )
        steps = getattr(args, "route_switch_steps", None)
        max_steps = getattr(args, "max_steps", -1)
        if steps is not None and isinstance(max_steps, int) and max_steps > 0:
            route_switches(args, num_checkpoints=num_teachers, max_steps=max_steps, steps_per_epoch=max_steps)
        return TeacherPlan("route")
    if cotrain and num_teachers != 1:
        raise ValueError(f"cotrain_teacher=True trains one teacher with the student, got {num_teachers} teachers")
    if weights is not None and len(weights) != num_teachers:
        raise ValueError(
            f"teacher_weights has {len(weights)} value(s) for {num_teachers} teacher(s); give one weight per teacher"
        )
    if num_teachers == 1:
        if cos_teacher not in (None, 0):
            raise ValueError(f"cos_teacher={cos_teacher} but there is one teacher (index 0)")
        return TeacherPlan("cotrain" if cotrain else "single", cached=cached)
    if cos_teacher is not None and cos_teacher >= num_teachers:
        raise ValueError(
            f"cos_teacher={cos_teacher} but there are {num_teachers} teachers (indices 0 to {num_teachers - 1})"
        )
    hidden_terms = sorted(set(terms) & {"cos", *LAYER_TERMS})
    if hidden_terms and cos_teacher is None:
        flags = ", ".join(f"alpha_{name}" for name in hidden_terms)
        symbols = " and ".join(f"L_{name}" for name in hidden_terms)
        raise ValueError(
            f"{flags} > 0 with {num_teachers} teachers needs the one whose hidden states {symbols} follows: pass "
            f"cos_teacher=<index> (e.g. 0), or set {flags} to 0"
        )
    if cached and "cos" in terms and cos_teacher != 0:
        raise ValueError(
            f"cos_teacher={cos_teacher}, but cached hidden states are the first teacher's; pass cos_teacher=0, or "
            "cache again with that teacher first in the list"
        )
    raw = list(weights) if weights is not None else [1.0] * num_teachers
    total = float(sum(raw))
    return TeacherPlan(
        "ensemble",
        num_teachers=num_teachers,
        weights=tuple(float(w) / total for w in raw),
        cos_teacher=cos_teacher or 0,
        cached=cached,
    )


def route_switches(args: Any, *, num_checkpoints: int, max_steps: int, steps_per_epoch: int) -> list[int]:
    """The optimizer steps at which each route checkpoint after the first takes over.

    `route_switch_steps` as given; `route_switch_epochs` times the optimizer steps per epoch, rounded; or, with
    neither, `max_steps` split evenly. Checkpoint `i` trains the steps `switches[i - 1] <= step < switches[i]`.

    Raises:
        ValueError: If a switch falls at or after the end of training, where its checkpoint would never teach.
    """
    steps = getattr(args, "route_switch_steps", None)
    epochs = getattr(args, "route_switch_epochs", None)
    if steps is not None:
        switches = [int(s) for s in steps]
        name = "route_switch_steps"
    elif epochs is not None:
        switches = [round(e * steps_per_epoch) for e in epochs]
        name = "route_switch_epochs"
    else:
        switches = [round(max_steps * i / num_checkpoints) for i in range(1, num_checkpoints)]
        name = None
    if any(b <= a for a, b in zip([0, *switches], switches)) or switches[-1] >= max_steps:
        given = f"{name}={list(steps if steps is not None else epochs)}" if name else "an even route"
        raise ValueError(
            f"{given} gives switches at steps {switches} for a run of {max_steps} optimizer steps; every checkpoint "
            f"must teach at least one step, so each switch must lie between 1 and {max_steps - 1} and increase. "
            "Lower the switches, or train longer"
        )
    return switches


def route_position(step: int, switches: list[int]) -> int:
    """The route checkpoint that teaches optimizer step `step` (0-based: the step being computed)."""
    return bisect.bisect_right(switches, step)


TeacherArgument = PreTrainedModel | nn.Module | str | os.PathLike | list | tuple | None


def load_teacher(teacher: nn.Module | str | os.PathLike, student: nn.Module) -> nn.Module:
    """A teacher as a model: a Hub id or path is loaded with the student's Auto class (same head)."""
    if isinstance(teacher, (str, os.PathLike)):
        teacher = load_model(teacher, like=type(student), require_all_weights=True)
    if not isinstance(teacher, nn.Module):
        raise ValueError(
            f"teacher_model must be a PreTrainedModel or a model name/path (or a list of them), got "
            f"{type(teacher).__name__}"
        )
    return teacher


def check_teacher(teacher: nn.Module, student: nn.Module, terms: dict[str, float], name: str | None) -> None:
    """`check_teacher_student`, with the teacher named in the error when there are several."""
    try:
        check_teacher_student(teacher, student, terms=terms)
    except ValueError as error:
        if name is None:
            raise
        raise ValueError(f"{name}: {error}") from None


def check_route_entry(entry: Any, student: nn.Module, terms: dict[str, float], position: int) -> None:
    """Check a later route checkpoint from its configuration alone (it is loaded when its turn comes)."""
    name = f"checkpoint {position} of the route"
    if isinstance(entry, nn.Module):
        check_teacher(entry, student, terms, name)
        return
    if not isinstance(entry, (str, os.PathLike)):
        raise ValueError(f"{name} must be a model or a checkpoint path, got {type(entry).__name__}")
    check_model_reference(entry, what=name)
    config = AutoConfig.from_pretrained(entry)
    student_config = getattr(student, "config", None)
    if student_config is None:
        return
    keys = ("vocab_size", "num_labels") + (("hidden_size",) if "cos" in terms else ())
    if set(terms) & set(LAYER_TERMS):  # the layer plan and the projections were made for the first checkpoint
        keys = (*keys, "hidden_size", "num_hidden_layers", "num_attention_heads")
    for key in dict.fromkeys(keys):
        theirs, ours = getattr(config, key, None), getattr(student_config, key, None)
        if theirs is not None and ours is not None and theirs != ours:
            raise ValueError(
                f"{name} ({os.fspath(entry)}) has {key}={theirs} but the student has {key}={ours}; every checkpoint "
                "of a route must be the same teacher at another step of its training"
            )


def check_cotrained_teacher(teacher: nn.Module, *, has_model_init: bool, optimizer: Any = None) -> None:
    if has_model_init:
        raise ValueError(
            "cotrain_teacher=True with model_init (hyperparameter search) would keep training one teacher across "
            "trials; pass the student as model=..."
        )
    if not isinstance(teacher, PreTrainedModel):
        raise ValueError(
            f"cotrain_teacher=True needs a PreTrainedModel teacher (checkpoints save it with save_pretrained), got "
            f"{type(teacher).__name__}"
        )
    if not any(p.requires_grad for p in teacher.parameters()):
        raise ValueError(
            "cotrain_teacher=True but every teacher parameter has requires_grad=False, so the teacher cannot learn; "
            "call teacher.requires_grad_(True), or distil from a frozen teacher with cotrain_teacher=False"
        )
    if optimizer is not None:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not all(id(p) in held for p in teacher.parameters() if p.requires_grad):
            raise ValueError(
                "cotrain_teacher=True but the optimizer passed in `optimizers` does not hold the teacher's "
                "parameters; build it over both models (e.g. AdamW([*student.parameters(), *teacher.parameters()])),"
                " or let the trainer create it"
            )


def resolve_teachers(
    teacher_model: TeacherArgument,
    student: nn.Module,
    args: Any,
    *,
    terms: dict[str, float],
    train_dataset: Any,
    data_collator: Any,
    optimizer: Any,
    has_model_init: bool,
) -> tuple[TeacherPlan, list[nn.Module], list[Any]]:
    """Check `teacher_model` (and a cached training set) against the student and the arguments, before any work.

    Returns:
        The run's [`TeacherPlan`]; the teachers to hold now (none for cached outputs, the first checkpoint of a
        route); and the route's entries (empty unless `teacher_route`).

    Raises:
        ValueError: For a missing, ambiguous or incompatible teacher, naming which one and the fix.
    """
    check_student_terms(student, terms=terms, args=args)
    cache = cached_columns(getattr(train_dataset, "column_names", None))
    if teacher_model is None and not cache:
        raise ValueError(
            "DistillationTrainer needs a teacher: pass teacher_model=<a fine-tuned PreTrainedModel, Hub id or "
            "local path> (or a list of them), or a train_dataset made by hf_distill.cache_teacher_outputs; use "
            "transformers.Trainer to train without one"
        )
    if teacher_model is not None and cache:
        raise ValueError(
            f"the training set holds cached teacher outputs {cache} and teacher_model is given too, so it is "
            "unclear which to distil from; pass teacher_model=None to train from the cache, or remove the "
            "columns (train_dataset.remove_columns([...])) to distil online"
        )
    route: list[nn.Module | str | os.PathLike] = []
    if teacher_model is None:
        num_cached = check_cached_dataset(train_dataset, student, terms=terms, data_collator=data_collator)
        plan = teacher_plan(args, num_teachers=num_cached, cached=True, terms=terms)
        teachers: list[nn.Module] = []
    else:
        given = list(teacher_model) if isinstance(teacher_model, (list, tuple)) else [teacher_model]
        if not given:
            raise ValueError("teacher_model is an empty list; pass one teacher or several")
        plan = teacher_plan(args, num_teachers=len(given), cached=False, terms=terms)
        if plan.mode == "route":
            route = given
            # The first checkpoint is loaded now (its forward signature decides the dataset columns); the others
            # are checked from their configurations and loaded one at a time when their turn comes.
            teachers = [load_teacher(given[0], student)]
            check_teacher(teachers[0], student, terms, "checkpoint 0 of the route")
            for position, entry in enumerate(given[1:], start=1):
                check_route_entry(entry, student, terms, position)
        else:
            teachers = [load_teacher(t, student) for t in given]
            for position, teacher in enumerate(teachers):
                # Only the teacher that L_cos follows needs the student's hidden size.
                needed = terms if position == plan.cos_teacher else {k: v for k, v in terms.items() if k != "cos"}
                check_teacher(teacher, student, needed, f"teacher {position}" if len(teachers) > 1 else None)
        if plan.mode == "cotrain":
            check_cotrained_teacher(teachers[0], has_model_init=has_model_init, optimizer=optimizer)
    return plan, teachers, route

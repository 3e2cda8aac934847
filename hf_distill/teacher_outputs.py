"""Running the teachers of a step: placement, the route's current checkpoint, the forward passes, cached columns.

`DistillationTrainer` mixes this in (`class DistillationTrainer(TeacherOutputs, CoTrainingHooks, CheckpointHooks,
Trainer)`). Every method returns the teachers' outputs in one layout, whatever the mode: logits (or span logits)
stacked on a leading teacher dimension, and the last hidden state of the teacher that `L_cos` follows, so the loss
code never asks where they came from. `_ensemble_target` combines the stacked logits into one target per term.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import TrainingArguments
from transformers.utils import logging

from .layer_terms import LAYER_OUTPUT_KEYS
from .losses import ensemble_logits
from .sharding import materialize_from_rank0, process_mesh, resolve_teacher_sharding, shard_teacher, zero3_gathered
from .teacher_cache import CACHE_COLUMNS, OUTPUT_COLUMNS
from .teacher_modes import load_teacher, route_position, route_switches

if TYPE_CHECKING:
    from .item_counts import ItemCounts

logger = logging.get_logger(__name__)


class TeacherOutputs:
    """`DistillationTrainer`'s teacher side: which teachers teach this step, and what they output."""

    def _place_teacher(self, teacher: nn.Module) -> nn.Module:
        """Move a teacher to the student's device, once per teacher.

        A frozen teacher is only moved: no DDP wrapping, as it never receives gradients, and no forward wrapper on the
        user's object; its forward runs under `accelerator.autocast()` instead, the student's mixed precision. A
        co-trained teacher is prepared like a model in training (DDP across processes), as its gradients must be
        synchronised.
        """
        if self.teacher_plan.mode == "cotrain":
            if id(teacher) not in self._placed_teachers:
                teacher = self.accelerator.prepare_model(teacher)
                self.teacher_model = teacher
                self.teacher_models = [teacher]
                self._placed_teachers.add(id(teacher))
            return teacher
        if id(teacher) not in self._placed_teachers:
            setting = getattr(self.args, "teacher_sharding", "auto")
            fsdp, world_size = bool(getattr(self, "is_fsdp_enabled", False)), self.accelerator.num_processes
            if resolve_teacher_sharding(setting, fsdp=fsdp, world_size=world_size) == "shard":
                teacher = self._swap_teacher(teacher, shard_teacher(teacher, process_mesh(self.accelerator.device)))
            else:
                materialize_from_rank0(teacher, self.accelerator.device)  # rank-0-only loading under FSDP
                teacher.to(self.accelerator.device)
            self._placed_teachers.add(id(teacher))
        return teacher

    def _swap_teacher(self, teacher: nn.Module, sharded: nn.Module) -> nn.Module:
        """Use the sharded copy of a teacher from now on, and drop the trainer's references to the whole one, so that
        its full weights are freed once the caller drops theirs (the user's object itself is left as it was)."""
        self.teacher_models = [sharded if t is teacher else t for t in self.teacher_models]
        if self.teacher_model is teacher:
            self.teacher_model = sharded
        self._teacher_modes = [(t, modes) for t, modes in self._teacher_modes if t is not teacher]
        return sharded

    def _current_teachers(self) -> list[nn.Module]:
        """The teachers of this step: the ensemble (or the one teacher), or the route checkpoint due at this step."""
        if not self._teacher_route:
            return self.teacher_models
        if self._route_switches is None:
            raise ValueError("the teacher route has no schedule yet: DistillationTrainer.train() computes it")
        position = route_position(self.state.global_step, self._route_switches)
        if position != self._route_index or self.teacher_model is None:
            entry = self._teacher_route[position]
            logger.info(
                "Teacher route: checkpoint %d of %d (%s) teaches from step %d",
                position,
                len(self._teacher_route) - 1,
                entry if isinstance(entry, (str, os.PathLike)) else type(entry).__name__,
                self.state.global_step,
            )
            # Only one route checkpoint is held at a time: the previous one is released before the next is loaded.
            self._restore_teacher_modes()
            self.teacher_model = None
            self.teacher_models = []
            student = self.accelerator.unwrap_model(self.model)
            teacher = load_teacher(entry, student)
            self.teacher_model = teacher
            self.teacher_models = [teacher]
            self._teacher_modes = [(teacher, [m.training for m in teacher.modules()])]
            self._route_index = position
        return self.teacher_models

    def _teacher_inputs(self, teacher: nn.Module, inputs: dict[str, Any], *, labels: bool) -> dict[str, Any]:
        names, return_dict = self._forward_signature(teacher)
        dropped = set(CACHE_COLUMNS) if labels else set(CACHE_COLUMNS) | set(self.label_names)
        teacher_inputs = {k: v for k, v in inputs.items() if k not in dropped and (names is None or k in names)}
        if return_dict:
            teacher_inputs["return_dict"] = True
        return teacher_inputs

    def _teacher_forward_outputs(
        self, teacher: nn.Module, out: Any, *, hidden_states: bool
    ) -> dict[str, torch.Tensor]:
        """The tensors the loss reads from a teacher's outputs: logits (or span logits), and the last hidden state."""
        name = type(self.accelerator.unwrap_model(teacher)).__name__
        if not isinstance(out, dict):
            raise ValueError(
                f"the teacher {name} returned a {type(out).__name__}, whose parts have no names; DistillationTrainer "
                "reads `logits` (or `start_logits`/`end_logits`) and `hidden_states` by name. Return a dict or a "
                "ModelOutput"
            )
        wanted = {key: out[key] for key in ("logits", "start_logits", "end_logits") if out.get(key) is not None}
        if hidden_states:
            if not out.get("hidden_states"):
                raise ValueError(
                    f"alpha_cos > 0 needs the teacher's hidden states, but {name} returned none for "
                    "output_hidden_states=True; set alpha_cos=0, or use a teacher whose outputs carry `hidden_states`"
                )
            wanted["hidden_states"] = out["hidden_states"][-1]
        return wanted

    def _check_finite(self, wanted: dict[str, torch.Tensor]) -> None:
        # One flag for all tensors: a single device sync per step. A NaN target would train the student on garbage
        # at a plausible-looking loss (e.g. an fp16 teacher overflowing, or a corrupted teacher file).
        finite = torch.stack([torch.isfinite(value).all() for value in wanted.values()]).all()
        if not finite.item():
            bad = [key for key, value in wanted.items() if not torch.isfinite(value).all()]
            raise ValueError(
                f"the teacher produced NaN or inf values in {bad} at step {self.state.global_step}; check the teacher "
                "weights and its dtype (fp16 teachers overflow: load it in bf16 or fp32)"
            )

    def _teacher_outputs(self, inputs: dict[str, Any], *, hidden_states: bool) -> dict[str, torch.Tensor]:
        """Run the frozen teacher(s) and return the tensors the loss needs, as ordinary (non-inference) tensors.

        Logits are stacked on a leading teacher dimension (K teachers); the hidden state is `cos_teacher`'s.
        """
        teachers = self._current_teachers()
        per_teacher: list[dict[str, torch.Tensor]] = []
        for position, teacher in enumerate(teachers):
            teacher = self._place_teacher(teacher)
            follows = position == self.teacher_plan.cos_teacher  # the teacher whose layers the student follows
            wants_hidden = hidden_states and follows
            layers = self.layer_plan if follows else None
            teacher_inputs = self._teacher_inputs(teacher, inputs, labels=False)
            if wants_hidden or (layers is not None and layers.needs_hidden_states):
                teacher_inputs["output_hidden_states"] = True
            capture = self._layer_capture(teacher, side=1) if layers is not None else nullcontext({})
            # `Trainer` switches modules to train mode at every step; a teacher with active dropout gives noisy
            # targets.
            teacher.eval()
            # A ZeRO-3 teacher is gathered outside inference mode, so that its parameters can be partitioned again.
            with zero3_gathered(teacher), torch.inference_mode(), self.accelerator.autocast():
                with capture as captured:
                    out = teacher(**teacher_inputs)
                wanted = self._teacher_forward_outputs(teacher, out, hidden_states=wants_hidden)
                if layers is not None:
                    wanted.update(self._teacher_layer_outputs(out, captured))
                per_teacher.append(wanted)
        # One check (one device sync) for every teacher of the step.
        self._check_finite(
            {
                key if len(per_teacher) == 1 else f"{key} of teacher {position}": value
                for position, out in enumerate(per_teacher)
                for key, value in out.items()
            }
        )
        # Inference tensors cannot be saved for backward; new tensors made outside inference mode are normal ones
        # (`torch.stack` already copies, so the logits are copied once). Only the logits and the last hidden state
        # are copied, never the whole output.
        # The hidden state and the layer terms' tensors are one teacher's (the one the student's layers follow).
        single = ("hidden_states", *LAYER_OUTPUT_KEYS)
        stacked = {key: torch.stack([out[key] for out in per_teacher]) for key in per_teacher[0] if key not in single}
        for out in per_teacher:
            for key in single:
                if key in out:
                    stacked[key] = out[key].clone()
        return stacked

    def _cached_teacher_outputs(self, inputs: dict[str, Any], *, hidden_states: bool) -> dict[str, torch.Tensor]:
        """The teacher outputs of this batch from the cached columns, in the layout of `_teacher_outputs`."""
        outputs: dict[str, torch.Tensor] = {}
        for key, column in OUTPUT_COLUMNS.items():
            value = inputs.get(column)
            if value is None or (key == "hidden_states" and not hidden_states):
                continue
            # Batches hold (batch, K, ...); the loss reads (K, batch, ...). Hidden states have no teacher dimension.
            outputs[key] = value if key == "hidden_states" else value.transpose(0, 1)
        # Not checked here: `cache_teacher_outputs` refused non-finite outputs when it wrote them, and the trainer
        # checks them again only if a loss term comes out non-finite (`_check_cached_targets`), saving a full pass
        # over the hidden states at every step.
        return outputs

    def _check_cached_targets(self, parts: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> None:
        """Raise if a non-finite loss term comes from non-finite cached teacher outputs (one scalar check a step)."""
        if parts and not torch.isfinite(torch.stack([value.detach() for value in parts.values()])).all():
            self._check_finite(teacher)

    def _cotrained_teacher_outputs(
        self, inputs: dict[str, Any], local: torch.Tensor, counts: ItemCounts, *, hidden_states: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run the co-trained teacher with gradients: its outputs (detached under isolation) and its task loss."""
        teacher = self._place_teacher(self.teacher_model)
        teacher.train()
        if self._teacher_grads_step != self.state.global_step:
            # `Trainer` zeroes the student's gradients (`model.zero_grad()`), not the optimizer's; the teacher's are
            # zeroed here, at the first micro-batch of each optimizer step, or they would pile up over steps.
            teacher.zero_grad(set_to_none=True)
            self._teacher_grads_step = self.state.global_step
        teacher_inputs = self._teacher_inputs(teacher, inputs, labels=True)
        if hidden_states:
            teacher_inputs["output_hidden_states"] = True
        with self.accelerator.autocast():
            out = teacher(**teacher_inputs)
        wanted = self._teacher_forward_outputs(teacher, out, hidden_states=hidden_states)
        mean = out.get("loss") if isinstance(out, dict) else None
        if mean is None:
            raise ValueError(
                f"cotrain_teacher=True but the teacher {type(self._cotrained_teacher()).__name__} returned no loss "
                f"for the batch keys {sorted(teacher_inputs)}; it learns from its own task loss, which needs labels"
            )
        if self.args.cotrain_isolation:
            wanted = {key: value.detach() for key, value in wanted.items()}
        stacked = {key: value.unsqueeze(0) if key != "hidden_states" else value for key, value in wanted.items()}
        task = counts.share_of_mean(mean, local[1])
        return stacked, task

    def _ensemble_target(
        self, teacher: dict[str, torch.Tensor], inputs: dict[str, Any], *, kind: str, temperature: float
    ) -> dict[str, torch.Tensor]:
        """The teachers' logits (stacked on dimension 0) combined into one target; one teacher's are used as they are.

        Span logits are distributions over positions: each teacher's padding positions are masked before the
        mixture, so that the mixture is the mean of the teachers' distributions over the real tokens.
        """
        if self.teacher_plan.num_teachers == 1:
            return {
                key: value if key == "hidden_states" or key in LAYER_OUTPUT_KEYS else value[0]
                for key, value in teacher.items()
            }
        weights = torch.tensor(self.teacher_plan.weights)
        attention_mask = inputs.get("attention_mask")
        target = {}
        for key, value in teacher.items():
            if key == "hidden_states" or key in LAYER_OUTPUT_KEYS:
                target[key] = value
                continue
            if key in ("start_logits", "end_logits") and kind == "softmax" and attention_mask is not None:
                padding = ~attention_mask.bool().unsqueeze(0)
                value = value.float().masked_fill(padding, torch.finfo(torch.float32).min)
            target[key] = ensemble_logits(value, weights, temperature=temperature, kind=kind)
        return target

    def _restore_teacher_modes(self) -> None:
        """Give each teacher back the train/eval mode of every module it had when it was passed in."""
        for teacher, modes in self._teacher_modes:
            for module, training in zip(teacher.modules(), modes):
                module.training = training

    def set_initial_training_values(self, args: TrainingArguments, dataloader: Any) -> tuple:
        """`Trainer.set_initial_training_values`; a teacher route computes its switch steps from the run's length."""
        values = super().set_initial_training_values(args, dataloader)
        if self._teacher_route:
            _, steps_per_epoch, *_, max_steps = values
            self._route_switches = route_switches(
                args, num_checkpoints=len(self._teacher_route), max_steps=max_steps, steps_per_epoch=steps_per_epoch
            )
            logger.info("Teacher route: checkpoints switch at steps %s", self._route_switches)
        return values

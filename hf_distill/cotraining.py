"""Co-training: the teacher trains with the student in one run, in one optimizer, and is checkpointed beside it.

`DistillationTrainer` with `cotrain_teacher=True` mixes these hooks in (`class DistillationTrainer(CoTrainingHooks,
CheckpointHooks, Trainer)`). The teacher learns from its own task loss; the student distils from it. With
`cotrain_isolation=True` (the default) the teacher's outputs are detached from the student's loss, so the teacher
learns from the labels alone; with `False`, the student's soft-target and hidden-state terms send gradients into the
teacher as well (no parameter isolation). Both schemes are reported for BERT-to-TextCNN distillation in production.

- The optimizer holds the student's parameters and then the teacher's, in groups of their own (with and without weight
  decay, as `Trainer` groups the student's), at `cotrain_teacher_learning_rate` or `learning_rate`; the scheduler
  drives both.
- Gradient clipping (`max_grad_norm`) takes one norm over both models, as for one model, and the logged `grad_norm`
  is that joint norm.
- Each checkpoint holds the student as the model and the teacher under `teacher/`, written before the checkpoint is
  marked complete; resuming loads both, and the optimizer state covers both.
- `save_model` writes the student only; the trained teacher is `trainer.teacher_model` (the object passed in).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import torch
from torch import nn
from transformers.utils import logging

from .modeling import load_model

logger = logging.get_logger(__name__)

TEACHER_DIR = "teacher"


class CoTrainingHooks:
    """`Trainer` hooks for co-training; inactive unless `args.cotrain_teacher`."""

    def _cotraining(self) -> bool:
        return bool(getattr(self.args, "cotrain_teacher", False))

    def _cotrained_teacher(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.teacher_model)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """`Trainer.create_optimizer`, with the co-trained teacher's parameters added in their own groups."""
        built_here = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if not self._cotraining():
            return optimizer
        teacher = self._cotrained_teacher()
        trainable = [(n, p) for n, p in teacher.named_parameters() if p.requires_grad]
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if all(id(p) in held for _, p in trainable):
            return optimizer  # a user optimizer built over both models
        if not built_here:
            raise ValueError(
                "cotrain_teacher=True but the optimizer passed in `optimizers` does not hold the teacher's "
                "parameters; build it over both models, or let the trainer create it"
            )
        decay = set(self.get_decay_parameter_names(teacher))
        rate = getattr(self.args, "cotrain_teacher_learning_rate", None) or self.args.learning_rate
        for params, weight_decay in (
            ([p for n, p in trainable if n in decay], self.args.weight_decay),
            ([p for n, p in trainable if n not in decay], 0.0),
        ):
            if params:
                optimizer.add_param_group({"params": params, "weight_decay": weight_decay, "lr": rate})
        return optimizer

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        """Clip student and teacher gradients together, to one norm, as one model would be."""
        if not self._cotraining():
            return super()._clip_grad_norm(model)
        parameters = itertools.chain(model.parameters(), self.teacher_model.parameters())
        return self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)

    def _get_grad_norm(self, model: nn.Module, grad_norm: Any = None) -> float:
        """The logged `grad_norm`: the joint norm of student and teacher, whether or not it was clipped."""
        if self._cotraining() and grad_norm is None:
            parameters = itertools.chain(model.parameters(), self.teacher_model.parameters())
            grad_norm = self.accelerator.clip_grad_norm_(parameters, float("inf"))
        return super()._get_grad_norm(model, grad_norm)

    def _save_extra_state(self, output_dir: str) -> None:
        super()._save_extra_state(output_dir)
        if self._cotraining():
            self._cotrained_teacher().save_pretrained(os.path.join(output_dir, TEACHER_DIR))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """`Trainer._load_from_checkpoint`, and the co-trained teacher's weights from `<checkpoint>/teacher`."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if not self._cotraining() or model is not None:
            return
        path = os.path.join(resume_from_checkpoint, TEACHER_DIR)
        if not os.path.isdir(path):
            raise ValueError(
                f"cotrain_teacher=True but the checkpoint {resume_from_checkpoint} holds no teacher/ directory (it "
                "was not written by a co-training run); resume a co-training checkpoint, or start a new run"
            )
        teacher = self._cotrained_teacher()
        saved = load_model(path, like=type(teacher), require_all_weights=True)
        teacher.load_state_dict(saved.state_dict())
        logger.info("Co-training: loaded the teacher from %s", path)

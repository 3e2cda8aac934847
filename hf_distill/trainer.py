"""`DistillationTrainer`: a `Trainer` whose training loss distils a frozen teacher into the student.

The loss is the DistilBERT triple loss (Sanh et al. 2019) with an optional logit-MSE term (Tang et al. 2019):

    loss = alpha_kd * L_kd + alpha_task * L_task + alpha_cos * L_cos + alpha_mse * L_mse

Formulas live in `hf_distill.losses`; this module chooses their inputs, masks and normalisers.

Gradient accumulation is exact. Each term is a sum over "items" (examples, label positions or tokens) divided by the
item count of the whole accumulated batch, counted once per optimizer step in `get_batch_samples`, so that 8 x 1 and
2 x 4 give the same loss and the same gradients even when micro-batches hold different numbers of tokens. The returned
loss is therefore already scaled for accumulation (`loss_is_scaled_for_ga = True`).
"""

from __future__ import annotations

import os
from typing import Any

import datasets
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.utils import find_labels, logging

from .arguments import DistillationTrainingArguments, distillation_settings, scheduled_values
from .card import is_distillation_card
from .checkpoints import CheckpointHooks
from .checks import check_dataset_has_labels, check_dataset_not_empty, check_output_dir, check_student_terms
from .cotraining import CoTrainingHooks
from .item_counts import IGNORE_INDEX, ItemCounts, count_items
from .layer_terms import LayerTermHooks, layer_plan
from .losses import LAYER_TERMS, binary_kd_loss, cosine_loss, kd_loss, mse_loss
from .masking import MaskedLMCollator, MaskingEpochCallback
from .modeling import call_student_init, forward_input_names, takes_return_dict
from .schedules import progress
from .teacher_cache import (
    CACHE_COLUMNS,
    CachedOutputsCollator,
    cached_columns,
    with_cache_columns,
)
from .teacher_modes import TeacherArgument, TeacherPlan, check_teacher, resolve_teachers
from .teacher_outputs import TeacherOutputs

logger = logging.get_logger(__name__)


class DistillationTrainer(LayerTermHooks, TeacherOutputs, CoTrainingHooks, CheckpointHooks, Trainer):
    """A `Trainer` that distils `teacher_model` into `model` (the student).

    Use it exactly like `Trainer`, adding `teacher_model`:

    ```python
    from hf_distill import DistillationTrainer, DistillationTrainingArguments, make_student

    student = make_student(teacher)  # half the layers, copied from the teacher
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=DistillationTrainingArguments(output_dir="student"),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    ```

    The loss terms are chosen from the student's outputs:

    - sequence-level heads (classification, multiple choice): `L_kd` is averaged per example;
    - token-level heads (masked LM, token classification): over positions with `labels != -100`, or over the attention
      mask when the batch has no labels or `kd_positions="all"`;
    - question answering: over the start and end position distributions, padding positions excluded;
    - regression heads (`num_labels == 1`): `L_kd` is the MSE between predictions; multi-label heads
      (`problem_type="multi_label_classification"`) use a per-label Bernoulli KL.

    A student need not be a transformer: the BiLSTM and TextCNN students of `make_tiny_student` distil through `L_kd`
    and `L_mse` (`L_cos` is refused). Rows labelled -100 (a transfer set's variants) skip the task loss only.

    Each active term is logged on its own in `state.log_history` as `loss_kd`, `loss_task`, `loss_cos` and
    `loss_mse` (unweighted), next to `loss` (the weighted sum). Terms with weight 0 are neither computed nor logged.

    The teacher is frozen: kept out of the optimizer, run in eval mode under `torch.inference_mode()` inside the
    student's mixed-precision context (`accelerator.autocast()`), moved to the student's device, and kept out of the
    student's module tree and every checkpoint. The user's teacher object is otherwise left as given: no
    `requires_grad` flag is set on it, and its modules' train/eval modes are restored after `train()`. `evaluate()`
    and `predict()` do not run it: their `eval_loss` is the student's own task loss.

    Teacher modes (README "Teacher modes"): a list of teachers is an ensemble (`teacher_weights`, `cos_teacher`), or
    with `teacher_route=True` a route of checkpoints; `teacher_model=None` trains from a dataset made by
    `cache_teacher_outputs`; `cotrain_teacher=True` trains the teacher too. A `MaskedLMCollator` masks anew each epoch.

    Args:
        model (`PreTrainedModel`): The student.
        args (`TrainingArguments`, *optional*):
            Usually [`DistillationTrainingArguments`]. Plain `TrainingArguments` get its distillation defaults.
        teacher_model (`PreTrainedModel`, `str`, a list of them, or `None`):
            The teacher, or a Hub id or local path loaded with the student's Auto class (same head); a list for an
            ensemble or a route; `None` with a training set of cached teacher outputs.
        *trainer_args, **kwargs: Every other `Trainer` argument, unchanged.

    Raises:
        ValueError: Before training, for a missing or incompatible teacher, invalid loss settings, or a training set
            without labels while `alpha_task > 0`.
    """

    # `compute_loss` divides each term by the item count of the whole accumulated batch.
    loss_is_scaled_for_ga = True
    _tag_names = ["distillation", "hf-distill"]

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        args: TrainingArguments | None = None,
        *trainer_args: Any,
        teacher_model: TeacherArgument = None,
        **kwargs: Any,
    ) -> None:
        model_init = kwargs.get("model_init", trainer_args[4] if len(trainer_args) > 4 else None)
        if model is None and model_init is None:
            raise ValueError(
                "DistillationTrainer needs the student as `model` (build one with make_student(teacher)) or a "
                "`model_init` that returns a fresh student"
            )
        if args is None:
            args = DistillationTrainingArguments(output_dir="tmp_trainer")
        train_dataset = kwargs.get("train_dataset", trainer_args[1] if len(trainer_args) > 1 else None)
        data_collator = kwargs.get("data_collator", trainer_args[0] if trainer_args else None)
        cache = cached_columns(getattr(train_dataset, "column_names", None))
        if cache:
            train_dataset = with_cache_columns(train_dataset, cache)
            if "train_dataset" in kwargs or len(trainer_args) <= 1:
                kwargs["train_dataset"] = train_dataset
            else:
                trainer_args = (*trainer_args[:1], train_dataset, *trainer_args[2:])
        # Everything is checked before `Trainer.__init__` moves the student or creates `output_dir`, so a failure
        # changes nothing. With `model_init`, one student is built here to be checked, then discarded.
        _, weights = distillation_settings(args)
        student = model if model is not None else call_student_init(model_init)
        optimizers = kwargs.get("optimizers", trainer_args[8] if len(trainer_args) > 8 else (None, None))
        plan, teachers, route = resolve_teachers(
            teacher_model,
            student,
            args,
            terms=weights,
            train_dataset=train_dataset,
            data_collator=data_collator,
            optimizer=optimizers[0],
            has_model_init=model is None,
        )
        layers = layer_plan(args, student, teachers[plan.cos_teacher] if teachers else None, weights)
        if layers is not None and layers.projected and optimizers[0] is not None:
            raise ValueError(
                f"alpha_hint > 0 between hidden sizes {layers.student_hidden} (student) and {layers.teacher_hidden} "
                "(teacher) trains projections that the trainer creates, so the optimizer passed in `optimizers` "
                "cannot hold them; let the trainer create the optimizer (optim=..., or optimizer_cls_and_kwargs)"
            )
        if train_dataset is not None:
            check_dataset_not_empty(train_dataset)
            label_names = args.label_names if args.label_names is not None else find_labels(type(student))
            if "task" in weights:
                check_dataset_has_labels(train_dataset, label_names, data_collator)
            elif plan.mode == "cotrain":
                try:
                    check_dataset_has_labels(train_dataset, label_names, data_collator)
                except ValueError:
                    raise ValueError(
                        f"cotrain_teacher=True needs labels: the teacher learns from its own task loss, but the "
                        f"training set has no label column (columns: {getattr(train_dataset, 'column_names', '?')}); "
                        "add one, or distil from a frozen teacher with cotrain_teacher=False"
                    ) from None
        check_output_dir(args.output_dir)
        del student

        super().__init__(model, args, *trainer_args, **kwargs)

        if cache:  # a wrapper of the trainer's collator: the user's collator object is not changed
            self.data_collator = CachedOutputsCollator(self.data_collator, cache)
        epochs = [c for c in self.callback_handler.callbacks if isinstance(c, MaskingEpochCallback)]
        if isinstance(self.data_collator, MaskedLMCollator) and not epochs:  # new masks each epoch, also on resume
            self.add_callback(MaskingEpochCallback(self.data_collator))
        self.teacher_plan: TeacherPlan = plan
        # The teachers stay the user's objects: frozen means out of the optimizer and run in eval mode under
        # `inference_mode()`, not a `requires_grad` flag set on them (a later `deepcopy` or training of the teacher
        # must still work); their module modes are restored after `train()`. Each is moved to the student's device
        # at its first use: `Trainer`'s evaluation loop prepares the student only while the accelerator holds none.
        self.teacher_models: list[nn.Module] = teachers
        self.teacher_model: nn.Module | None = teachers[0] if teachers else None
        self._teacher_route = route
        self._route_switches: list[int] | None = None
        self._route_index = 0
        self._placed_teachers: set[int] = set()
        self._teacher_grads_step: int | None = None
        self._teacher_modes: list[tuple[nn.Module, list[bool]]] = [
            (teacher, [m.training for m in teacher.modules()]) for teacher in teachers
        ]
        # `inspect.signature` costs tens of microseconds: read once per model, not at every step.
        self._forward_inputs: dict[int, tuple[set[str] | None, bool]] = {}
        self._loss_parts: dict[str, torch.Tensor] = {}
        self._loss_parts_start_step: int | None = None
        self._setup_layer_terms(layers)  # `hf_distill.layer_terms`: the plan, and the hint projections if any

    # ---- model_init and hyperparameter search ----------------------------------------------------------------------

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """`Trainer.call_model_init`, with each new student (one per search trial) checked against the teacher."""
        model = super().call_model_init(trial)
        check_student_terms(model, terms=self.loss_weights, args=self.args)
        teachers = getattr(self, "teacher_models", [])
        for position, teacher in enumerate(teachers):
            name = f"teacher {position}" if len(self.teacher_models) > 1 else None
            check_teacher(self.accelerator.unwrap_model(teacher), model, self.loss_weights, name)
        if hasattr(self, "teacher_plan"):
            # A new student (a search trial) gets its own layer plan and fresh projections.
            followed = self.accelerator.unwrap_model(teachers[self.teacher_plan.cos_teacher]) if teachers else None
            self._setup_layer_terms(layer_plan(self.args, model, followed, self.loss_weights))
        return model

    @property
    def temperature(self) -> float:
        """The softmax temperature, read from `args` (validated on each read; a search trial may set it)."""
        return distillation_settings(self.args)[0]

    @property
    def loss_weights(self) -> dict[str, float]:
        """The active loss weights by term name (`"kd"`, `"task"`, ...), read from `args` like `temperature`."""
        return distillation_settings(self.args)[1]

    # ---- inputs: each model gets the columns its own forward takes -------------------------------------------------

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the dataset columns that the student *or* the teacher accepts (`remove_unused_columns`).

        `Trainer` keeps only what the student's `forward` names, so a BERT teacher paired with a DistilBERT student
        would never receive `token_type_ids` and would score inputs it was never trained on. Each model is then
        given its own inputs (`_student_inputs`, `_teacher_outputs`).
        """
        super()._set_signature_columns_if_needed()
        extra: list[str] = list(CACHE_COLUMNS)
        for teacher in getattr(self, "teacher_models", []):
            names = self._forward_signature(teacher)[0]
            extra.extend(sorted(names or ()))
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *extra]))

    def _forward_signature(self, model: nn.Module) -> tuple[set[str] | None, bool]:
        """The named inputs of a model's `forward` (`None`: it takes anything) and whether it takes `return_dict`,
        read once per model (a search trial's new student is another model)."""
        unwrapped = self.accelerator.unwrap_model(model)
        key = id(unwrapped)
        if key not in self._forward_inputs:
            self._forward_inputs[key] = (forward_input_names(unwrapped), takes_return_dict(unwrapped))
        return self._forward_inputs[key]

    def _student_inputs(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs the student's `forward` names, plus the label columns (a column only the teacher takes, and the
        cached teacher outputs, are dropped)."""
        names, _ = self._forward_signature(model)
        if names is None:
            return {key: value for key, value in inputs.items() if key not in CACHE_COLUMNS}
        keep = names | set(self.label_names)
        return {key: value for key, value in inputs.items() if key in keep}

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """`Trainer.prediction_step` on the student's own inputs (the teacher is not run in evaluation)."""
        return super().prediction_step(
            model, self._student_inputs(model, inputs), prediction_loss_only, ignore_keys=ignore_keys
        )

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        """`Trainer`'s sampler, with the lengths of `group_by_length` / `batch_rebalance` read as one column.

        Without a length column, `Trainer` measures each example by reading it whole, row by row: on a dataset with
        cached teacher outputs that decodes every hidden state (minutes for SST-2) before the first step. The
        lengths here are the same (`len` of the model's first input), read from that column alone.
        """
        dataset = self.train_dataset if train_dataset is None else train_dataset
        args = self.args
        if (
            args.train_sampling_strategy in ("group_by_length", "batch_rebalance")
            and isinstance(dataset, datasets.Dataset)
            and args.length_column_name not in dataset.column_names
        ):
            names = getattr(self.processing_class, "model_input_names", None) or ["input_ids"]
            if names[0] in dataset.column_names:
                column = dataset.select_columns([names[0]]).with_format(None)[names[0]]
                lengths = [len(ids) for ids in column]
                dataset = dataset.select_columns([names[0]]).add_column(args.length_column_name, lengths)
        return super()._get_train_sampler(dataset)

    # ---- gradient accumulation -------------------------------------------------------------------------------------

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """Fetch the micro-batches of one optimizer step and count their items for exact loss normalisation."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batch_samples:
            return batch_samples, None
        counts = sum(count_items(batch, self.label_names).to(device) for batch in batch_samples)
        scale = 1.0
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            # Normalise by the global counts; DDP then averages gradients over processes, which `scale` undoes.
            counts = self.accelerator.gather(counts.unsqueeze(0)).sum(0)
            scale = float(self.accelerator.num_processes)
        return batch_samples, ItemCounts(*counts.unbind(), scale=scale)

    # ---- loss -----------------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: ItemCounts | torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Distillation loss in training; the student's own task loss (plain `Trainer`) in evaluation."""
        if not model.training:
            # evaluate()/predict(): eval_loss is the student's own loss and the teacher is not run.
            return super().compute_loss(
                model,
                self._student_inputs(model, inputs),
                return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )

        # Read and validated once per step, at this step's point of the `schedules`.
        temperature, weights = distillation_settings(self.args, progress(self.state.global_step, self.state.max_steps))
        has_labels = any(name in inputs for name in self.label_names)
        if "task" in weights and not has_labels:
            raise ValueError(
                f"alpha_task > 0 but the batch carries no labels (keys: {sorted(inputs)}; expected "
                f"{self.label_names}); add a label column, or set alpha_task=0 to distil from the teacher alone"
            )
        local = count_items(inputs, self.label_names)
        if isinstance(num_items_in_batch, ItemCounts):
            counts = num_items_in_batch
        else:
            # Called outside the training loop's `get_batch_samples`: normalise by this batch and split over the
            # accumulation steps, as `Trainer` does for an unscaled loss.
            steps = getattr(self, "current_gradient_accumulation_steps", 1)
            counts = ItemCounts(*local.unbind(), scale=1.0 / steps)

        student_inputs = self._student_inputs(model, inputs)
        if self._forward_signature(model)[1]:
            # A model configured with `return_dict=False` returns tuples; the loss reads outputs by name.
            student_inputs["return_dict"] = True
        held_labels = None
        if "task" not in weights:
            for name in self.label_names:
                student_inputs.pop(name, None)
        elif (self.label_smoother is not None or self.compute_loss_func is not None) and "labels" in student_inputs:
            # As in `Trainer`: the task loss is computed from the logits, not by the model.
            held_labels = student_inputs.pop("labels")
        if "cos" in weights or "hint" in weights:
            student_inputs["output_hidden_states"] = True
        # The teacher runs first: its activations are freed before the student's forward builds the autograd graph,
        # so the two never occupy memory together (lower peak, and measurably faster on CPU, where fresh large
        # allocations cost page faults).
        teacher = None
        teacher_task = None
        if self.teacher_plan.mode == "cotrain":
            teacher, teacher_task = self._cotrained_teacher_outputs(
                inputs, local, counts, hidden_states="cos" in weights
            )
        elif weights.keys() & {"kd", "cos", "mse", *LAYER_TERMS}:
            if self.teacher_plan.cached:
                teacher = self._cached_teacher_outputs(inputs, hidden_states="cos" in weights)
            else:
                teacher = self._teacher_outputs(inputs, hidden_states="cos" in weights)
        with self._layer_capture(model, side=0) as captured:
            outputs = model(**student_inputs)
        if not isinstance(outputs, dict):
            student_name = type(self.accelerator.unwrap_model(model)).__name__
            raise ValueError(
                f"the student {student_name} returned a {type(outputs).__name__}, whose parts have no names; "
                "DistillationTrainer reads `loss`, `logits` and `hidden_states` by name. Return a dict or a "
                "ModelOutput from forward"
            )

        parts: dict[str, torch.Tensor] = {}
        if "task" in weights:
            parts["task"] = self._task_term(outputs, held_labels, local, counts, received=list(student_inputs))
        if teacher is not None and weights.keys() & {"kd", "cos", "mse"}:
            parts.update(
                self._teacher_terms(outputs, teacher, inputs, counts, weights=weights, temperature=temperature)
            )
        if teacher is not None and self.layer_plan is not None:
            parts.update(self._layer_terms(outputs, captured, teacher, inputs, counts, weights))

        if self.teacher_plan.cached and teacher is not None:
            self._check_cached_targets(parts, teacher)
        loss = sum(weights[name] * value for name, value in parts.items())
        if teacher_task is not None:
            # Co-training: the teacher's own task loss, weight 1, logged as `loss_teacher_task`.
            loss = loss + teacher_task
            parts["teacher_task"] = teacher_task
        self._record_loss_parts(parts)
        return (loss, outputs) if return_outputs else loss

    def _task_term(
        self,
        outputs: Any,
        held_labels: torch.Tensor | None,
        local: torch.Tensor,
        counts: ItemCounts,
        *,
        received: list[str],
    ) -> torch.Tensor:
        """The student's own loss, rescaled from its micro-batch mean to a share of the accumulated batch.

        The loss is the model's own, or the user's `compute_loss_func`, or label smoothing, as in `Trainer`. The
        model's loss and label smoothing are micro-batch means, which the rescaling below turns into exact shares of
        the accumulated batch; a `compute_loss_func` receives `num_items_in_batch` and returns its share itself.
        """
        if held_labels is not None and self.compute_loss_func is not None:
            # `Trainer`'s contract: the function gets the label count of the whole accumulated batch and returns its
            # share of the loss (sum / num_items_in_batch), already scaled for accumulation. A function that ignores
            # the count and returns a mean gets `Trainer`'s behaviour with it (see the README's parity note).
            share = self.compute_loss_func(outputs, held_labels, num_items_in_batch=counts.labels)
            return share * counts.scale
        elif held_labels is not None:
            mean = self.label_smoother(outputs, held_labels)
        else:
            mean = outputs.get("loss")
        if mean is None:
            student_name = type(self.accelerator.unwrap_model(self.model)).__name__
            given = sorted(set(received) - {"return_dict", "output_hidden_states"})
            raise ValueError(
                f"the student {student_name} returned no loss; it received the inputs {given} and label_names is "
                f"{self.label_names}. A transformers model computes its loss from `labels`: rename the label column "
                "to 'labels', or pass compute_loss_func=... to compute the task loss from the outputs, or set "
                "alpha_task=0 to distil without labels"
            )
        return counts.share_of_mean(mean, local[1])

    def _teacher_terms(
        self,
        outputs: Any,
        teacher: dict[str, torch.Tensor],
        inputs: dict[str, Any],
        counts: ItemCounts,
        *,
        weights: dict[str, float],
        temperature: float,
    ) -> dict[str, torch.Tensor]:
        """`L_kd`, `L_mse` and `L_cos` as shares of the accumulated batch.

        `teacher` holds logits stacked over the teachers (dimension 0); an ensemble's are combined into one target
        per term by `hf_distill.losses.ensemble_logits`: the weighted mean of softened probabilities for `L_kd`, of
        predictions for regression heads, and of logits for `L_mse`.
        """
        parts: dict[str, torch.Tensor] = {}
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        student_logits = outputs.get("logits")
        regression = (
            isinstance(student_logits, torch.Tensor) and student_logits.dim() == 2 and student_logits.shape[-1] == 1
        )
        for name in ("kd", "mse"):
            if name not in weights:
                continue
            kind = "mean" if name == "mse" or regression else ("sigmoid" if multi_label else "softmax")
            target = self._ensemble_target(teacher, inputs, kind=kind, temperature=temperature)
            pairs, mask, count = self._logit_pairs(outputs, target, inputs, counts, for_mse=name == "mse")
            total = 0.0
            for student_logits, teacher_logits in pairs:
                if name == "mse" or regression:
                    term = mse_loss(student_logits, teacher_logits, mask=mask, reduction="sum")
                elif multi_label:
                    term = binary_kd_loss(
                        student_logits, teacher_logits, temperature=temperature, mask=mask, reduction="sum"
                    )
                else:
                    term = kd_loss(student_logits, teacher_logits, temperature=temperature, mask=mask, reduction="sum")
                total = total + term
            parts[name] = counts.share(total / len(pairs), count)
        if "cos" in weights:
            hidden_states = outputs.get("hidden_states") if isinstance(outputs, dict) else None
            if not hidden_states:
                raise ValueError(
                    f"alpha_cos > 0 needs the student's hidden states, but "
                    f"{type(self.accelerator.unwrap_model(self.model)).__name__} returned none for "
                    "output_hidden_states=True; set alpha_cos=0, or use a model whose outputs carry `hidden_states`"
                )
            student_hidden = hidden_states[-1]
            attention_mask = inputs.get("attention_mask")
            mask = None
            if isinstance(attention_mask, torch.Tensor):
                mask = attention_mask.reshape(student_hidden.shape[:-1]).bool()
            term = cosine_loss(student_hidden, teacher["hidden_states"], mask=mask, reduction="sum")
            parts["cos"] = counts.share(term, counts.tokens)
        return parts

    def _logit_pairs(
        self,
        outputs: Any,
        teacher: dict[str, torch.Tensor],
        inputs: dict[str, Any],
        counts: ItemCounts,
        *,
        for_mse: bool,
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None, torch.Tensor]:
        """Student/teacher logits to match, the item mask, and the item count that normalises their sum.

        Every choice excludes padding, so that a batch padded further gives the same terms.
        """
        attention_mask = inputs.get("attention_mask")
        if "start_logits" in teacher:
            keys = ("start_logits", "end_logits")
            if for_mse:
                # Logit regression over positions: each non-padding position is an item.
                pairs = [(outputs[key].unsqueeze(-1), teacher[key].unsqueeze(-1)) for key in keys]
                mask = attention_mask.bool() if isinstance(attention_mask, torch.Tensor) else None
                return pairs, mask, counts.tokens
            # Distributions over positions, one per example. Padding positions are pushed to -inf-like values in both
            # models so that they carry no probability mass.
            pairs = []
            for key in keys:
                student_logits, teacher_logits = outputs[key].float(), teacher[key].float()
                if isinstance(attention_mask, torch.Tensor):
                    padding = ~attention_mask.bool()
                    lowest = torch.finfo(torch.float32).min
                    student_logits = student_logits.masked_fill(padding, lowest)
                    teacher_logits = teacher_logits.masked_fill(padding, lowest)
                pairs.append((student_logits, teacher_logits))
            return pairs, None, counts.examples
        if "logits" not in teacher:
            raise ValueError(f"the teacher {type(self.teacher_model).__name__} returned no logits to distil")
        student_logits, teacher_logits = outputs["logits"], teacher["logits"]
        if student_logits.dim() <= 2:
            return [(student_logits, teacher_logits)], None, counts.examples
        # Token-level head: label positions when the batch has labels (masked LM: only the masked tokens) and
        # `kd_positions="labelled"`, else every non-padding token.
        labels = inputs.get("labels") if getattr(self.args, "kd_positions", "labelled") == "labelled" else None
        if isinstance(labels, torch.Tensor) and labels.shape == student_logits.shape[:-1]:
            return [(student_logits, teacher_logits)], labels.ne(IGNORE_INDEX), counts.labels
        mask = attention_mask.bool() if isinstance(attention_mask, torch.Tensor) else None
        return [(student_logits, teacher_logits)], mask, counts.tokens

    # ---- logging ---------------------------------------------------------------------------------------------------

    def _record_loss_parts(self, parts: dict[str, torch.Tensor]) -> None:
        if self._loss_parts_start_step is None:
            self._loss_parts_start_step = self.state.global_step
        for name, value in parts.items():
            value = value.detach()
            self._loss_parts[name] = self._loss_parts[name] + value if name in self._loss_parts else value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the unweighted loss terms (`loss_kd`, `loss_task`, ...) to the training logs, averaged like `loss`, and
        the route checkpoint teaching now (`route_checkpoint`, its index) on a teacher route."""
        if "loss" in logs and self._teacher_route:
            logs["route_checkpoint"] = self._route_index
        if "loss" in logs:  # the scheduled values of the last step taken
            logs.update(scheduled_values(self.args, progress(self.state.global_step - 1, self.state.max_steps)))
        if "loss" in logs and self._loss_parts:
            steps = max(self.state.global_step - (self._loss_parts_start_step or 0), 1)
            for name, total in self._loss_parts.items():
                # Mean over processes of per-process shares, like `Trainer` does for `loss`.
                logs[f"loss_{name}"] = self.accelerator.reduce(total, reduction="mean").item() / steps
            self._loss_parts = {}
            self._loss_parts_start_step = None
        super().log(logs, start_time)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Keep a model card written by `hf_distill.card.model_card`; otherwise write `Trainer`'s own.

        `push_to_hub` calls this before uploading. `Trainer`'s card knows nothing of the teacher, so it must not
        replace the distillation card (teacher, layers kept, metrics with retention, citations) a recipe wrote.
        """
        if is_distillation_card(os.path.join(self.args.output_dir, "README.md")):
            return
        tags = kwargs.get("tags") or []
        kwargs["tags"] = sorted({*([tags] if isinstance(tags, str) else tags), *self._tag_names})
        super().create_model_card(*args, **kwargs)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`, with the distillation settings checked again (arguments can change after `__init__`)."""
        distillation_settings(self.args)  # fail now, not at the first step, for a value changed since __init__
        self._check_layer_terms_planned(self.loss_weights)
        if self.train_dataset is not None:
            check_dataset_not_empty(self.train_dataset)
            if "task" in self.loss_weights:
                check_dataset_has_labels(self.train_dataset, self.label_names, self.data_collator)
        self._loss_parts = {}
        self._loss_parts_start_step = None
        args, kwargs = self._with_verified_checkpoint(args, kwargs)  # `hf_distill.checkpoints.CheckpointHooks`
        try:
            return super().train(*args, **kwargs)
        finally:
            self._restore_teacher_modes()
            if self.teacher_plan.mode == "cotrain" and self.teacher_model is not None:
                # `trainer.teacher_model` is the trained teacher itself, as passed in, not its DDP wrapper.
                self.teacher_model = self.accelerator.unwrap_model(self.teacher_model)
                self.teacher_models = [self.teacher_model]

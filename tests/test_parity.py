"""Drop-in parity: `DistillationTrainer` with only the task term active behaves exactly like `Trainer`.

An existing script must behave the same after the class change until distillation is switched on: the same logged
losses, the same final weights, the same metric keys and the same callback events, over the `TrainingArguments`
features users combine (gradient accumulation, resume mid-epoch, evaluation and save strategies, the best model at the
end, early stopping, samplers, bf16, evaluation on start, token counting, cache emptying, several eval sets, predict).
With `alpha_task=1` and every other weight 0 the teacher is never run, so any difference is a parity defect of the
trainer itself.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import BertForSequenceClassification, EarlyStoppingCallback, Trainer, TrainerCallback

from hf_distill import DistillationTrainer

from .conftest import pad_collate, random_token_dataset, tiny_bert_config
from .test_trainer import make_args

TASK_ONLY = dict(alpha_task=1.0, alpha_kd=0.0, alpha_cos=0.0, alpha_mse=0.0)
EVENTS = (
    "on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step",
    "on_substep_end", "on_step_end", "on_evaluate", "on_predict", "on_save", "on_log", "on_epoch_end", "on_train_end",
    "on_prediction_step",
)  # fmt: skip


class Events(TrainerCallback):
    """Records every callback event with the step it happened at."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def __getattribute__(self, name):
        if name in EVENTS:

            def record(args, state, control, **kwargs):
                self.events.append((name, state.global_step))

            return record
        return super().__getattribute__(name)


_MODELS: dict[str, torch.nn.Module] = {}


def _model(name: str, **overrides) -> torch.nn.Module:
    if name not in _MODELS:
        torch.manual_seed(sum(map(ord, name)))
        _MODELS[name] = BertForSequenceClassification(tiny_bert_config(num_labels=3, **overrides))
    return copy.deepcopy(_MODELS[name])


class ScaledLossStudent(BertForSequenceClassification):
    """`Trainer`'s documented opt-out for a model whose loss ignores `num_items_in_batch`.

    BERT's heads take `**kwargs`, so `Trainer` assumes they normalise their loss by `num_items_in_batch` and skips
    its division by the accumulation steps; they do not, and the loss (and gradient) grows with
    `gradient_accumulation_steps` (huggingface/transformers#47688, open). `accepts_loss_kwargs = False` restores
    `Trainer`'s exact behaviour, which is the reference `DistillationTrainer` must match: its own normalisation is
    exact whatever the model declares.
    """

    accepts_loss_kwargs = False


def _run(cls: type, out: Path, *, callbacks=(), resume=None, predict=False, dict_eval=False, **overrides):
    values = dict(per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=6, **TASK_ONLY)
    values.update(overrides)
    events = Events()
    student = _model("student", num_hidden_layers=2)
    if values.get("gradient_accumulation_steps", 1) > 1:
        student.__class__ = ScaledLossStudent
    kwargs = dict(
        model=student,
        args=make_args(out, **values),
        train_dataset=random_token_dataset(40, seed=21),
        eval_dataset=(
            {"a": random_token_dataset(10, seed=3), "b": random_token_dataset(6, seed=4)}
            if dict_eval
            else random_token_dataset(10, seed=3)
        ),
        data_collator=pad_collate,
        callbacks=[events, *callbacks],
    )
    if cls is DistillationTrainer:
        kwargs["teacher_model"] = _model("teacher")
    trainer = cls(**kwargs)
    trainer.train(resume_from_checkpoint=resume)
    predictions = trainer.predict(random_token_dataset(7, seed=5)) if predict else None
    logs = [{k: v for k, v in entry.items() if not k.startswith("loss_")} for entry in trainer.state.log_history]
    return {
        "logs": logs,
        "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "events": events.events,
        "predictions": predictions,
        "best": trainer.state.best_model_checkpoint,
    }


_TIMING = ("runtime", "per_second", "preparation_time", "total_flos")


def _comparable(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not any(t in k for t in _TIMING)}


def _assert_same_logs(expected: list[dict], got: list[dict], case: str) -> None:
    assert len(got) == len(expected), (case, len(expected), len(got))
    for a, b in zip(expected, got):
        assert set(b) == set(a), (case, set(a) ^ set(b))
        for key, value in _comparable(a).items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (case, a.get("step"), key)
            else:
                assert b[key] == value, (case, key)


CASES = {
    "plain": {},
    "gradient-accumulation": dict(per_device_train_batch_size=2, gradient_accumulation_steps=4),
    "eval-and-save-steps": dict(eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2),
    "load-best-model-at-end": dict(
        eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2, load_best_model_at_end=True
    ),
    "early-stopping": dict(
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        max_steps=10,
        learning_rate=5e-2,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=1.0)],
    ),
    "sequential-sampler": dict(train_sampling_strategy="sequential"),
    "group-by-length": dict(train_sampling_strategy="group_by_length"),
    "bf16": dict(bf16=True),
    "eval-on-start": dict(eval_strategy="steps", eval_steps=3, eval_on_start=True),
    "num-input-tokens-seen": dict(include_num_input_tokens_seen="non_padding"),
    "empty-cache-steps": dict(torch_empty_cache_steps=2),
    "dict-eval-sets": dict(eval_strategy="steps", eval_steps=3, dict_eval=True),
    "predict": dict(predict=True),
    "epochs": dict(max_steps=-1, num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_task_only_distillation_trainer_matches_trainer(case, tmp_path):
    """See the module docstring: logs, weights, metric keys and callback events must be Trainer's own."""
    options = dict(CASES[case])
    callbacks = options.pop("callbacks", [])
    expected = _run(Trainer, tmp_path / "trainer", callbacks=copy.deepcopy(callbacks), **options)
    got = _run(DistillationTrainer, tmp_path / "ours", callbacks=copy.deepcopy(callbacks), **options)

    assert got["events"] == expected["events"]
    _assert_same_logs(expected["logs"], got["logs"], case)
    for name, value in expected["weights"].items():
        torch.testing.assert_close(got["weights"][name], value, rtol=1e-5, atol=1e-6, msg=f"{case}: {name}")
    if expected["best"] is not None:
        assert Path(got["best"]).name == Path(expected["best"]).name
    if expected["predictions"] is not None:
        p, q = expected["predictions"], got["predictions"]
        assert set(q.metrics) == set(p.metrics)
        torch.testing.assert_close(torch.as_tensor(q.predictions), torch.as_tensor(p.predictions))


def test_resume_mid_epoch_matches_trainer(tmp_path):
    """Resuming in the middle of an epoch must restore the same sampler position, schedule and logs as `Trainer`."""
    runs = {}
    for name, cls in (("trainer", Trainer), ("ours", DistillationTrainer)):
        out = tmp_path / name
        _run(cls, out, max_steps=3, save_strategy="steps", save_steps=3, lr_scheduler_type="linear")
        runs[name] = _run(
            cls, out, max_steps=6, save_strategy="steps", save_steps=3, resume=str(out / "out" / "checkpoint-3")
        )
    expected, got = runs["trainer"], runs["ours"]
    assert got["events"] == expected["events"]
    _assert_same_logs(expected["logs"], got["logs"], "resume")
    for name, value in expected["weights"].items():
        torch.testing.assert_close(got["weights"][name], value, rtol=1e-5, atol=1e-6)

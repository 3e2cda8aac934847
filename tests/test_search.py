"""`model_init` and `hyperparameter_search` over the distillation settings (Optuna, the `tune` extra)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from hf_distill import DistillationTrainer

from .conftest import pad_collate, random_token_dataset, tiny_bert_config
from .test_trainer import make_args


def _teacher() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()


def _student_init() -> BertForSequenceClassification:
    torch.manual_seed(1)
    return BertForSequenceClassification(tiny_bert_config(num_labels=3, num_hidden_layers=2))


def _search_trainer(tmp_path, cls=DistillationTrainer, rows: int = 16, **args) -> DistillationTrainer:
    return cls(
        model_init=_student_init,
        teacher_model=_teacher(),
        args=make_args(tmp_path, **args),
        train_dataset=random_token_dataset(rows),
        eval_dataset=random_token_dataset(8, seed=2),
        data_collator=pad_collate,
    )


def test_model_init_builds_a_fresh_student_and_trains(tmp_path):
    """`model_init` was refused ("needs the student as `model`"), so the standard Trainer route to a search could
    not be used. A student factory must work, with the teacher checked against the student it builds."""
    trainer = _search_trainer(tmp_path, max_steps=2)
    trainer.train()
    assert any("loss_kd" in entry for entry in trainer.state.log_history)


def test_model_init_students_are_checked_against_the_teacher(tmp_path):
    """A factory that builds an incompatible student (other label count) must fail before `Trainer.__init__`
    creates the output directory, like a `model=` student does."""

    def wrong_init():
        return BertForSequenceClassification(tiny_bert_config(num_labels=5, num_hidden_layers=2))

    with pytest.raises(ValueError, match="num_labels"):
        DistillationTrainer(
            model_init=wrong_init,
            teacher_model=_teacher(),
            args=make_args(tmp_path),
            train_dataset=random_token_dataset(8),
            data_collator=pad_collate,
        )
    assert not (tmp_path / "out").exists()


def test_hyperparameter_search_over_temperature_and_weights_uses_each_trial(tmp_path):
    """A search whose trial values never reach the loss (read once in `__init__`, or before `Trainer` applies the
    trial) would train every trial identically and pick a winner at random. Each trial's temperature and alpha_kd
    must be the ones the loss used, and the trials must differ."""
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    used: list[tuple[dict, float, float]] = []

    class Recording(DistillationTrainer):
        def train(self, *args, trial=None, **kwargs):
            result = super().train(*args, trial=trial, **kwargs)
            used.append((dict(trial.params), self.temperature, self.loss_weights["kd"]))
            return result

    trainer = _search_trainer(tmp_path, cls=Recording, max_steps=2, eval_strategy="no")

    def space(trial):
        return {
            "temperature": trial.suggest_float("temperature", 1.0, 8.0),
            "alpha_kd": trial.suggest_float("alpha_kd", 0.5, 5.0),
        }

    best = trainer.hyperparameter_search(
        hp_space=space,
        backend="optuna",
        n_trials=3,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    assert len(used) == 3 and len({(t, kd) for _, t, kd in used}) == 3, used
    for params, temperature, alpha_kd in used:
        assert temperature == pytest.approx(params["temperature"]) and alpha_kd == pytest.approx(params["alpha_kd"])
    assert set(best.hyperparameters) == {"temperature", "alpha_kd"}


def test_a_trial_with_an_invalid_value_is_refused(tmp_path):
    """A search space that reaches a value validation refuses (temperature 0) must fail with the same clear error,
    not train on it."""
    optuna = pytest.importorskip("optuna")
    trainer = _search_trainer(tmp_path, rows=8, max_steps=1)
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        trainer.hyperparameter_search(
            hp_space=lambda trial: {"temperature": trial.suggest_float("temperature", -1.0, 0.0)},
            backend="optuna",
            n_trials=1,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )

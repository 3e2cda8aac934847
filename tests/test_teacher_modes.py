"""Teacher modes on tiny models: ensembles, a route of teacher checkpoints (RCO) and co-training."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from hf_distill import DistillationTrainer
from hf_distill.cotraining import TEACHER_DIR
from hf_distill.losses import ensemble_logits, kd_loss

from .conftest import pad_collate, random_token_dataset
from .test_trainer import StopAt, make_args, make_trainer, one_batch_loss, student_like, train_logs


def other_teacher(teacher, seed: int = 11):
    """A second teacher of the same kind, with other weights."""
    return student_like(teacher, num_layers=3, seed=seed)


# ---- ensembles ------------------------------------------------------------------------------------------------------


def test_ensemble_target_is_the_weighted_mean_of_softened_probabilities(tiny_classifier, tmp_path):
    """The mean of logits is another target (a geometric mean); the ensemble must teach the mixture of the teachers'
    temperature-softened distributions, weighted as asked."""
    second = other_teacher(tiny_classifier)
    with torch.no_grad():  # confident, disagreeing teachers: the two candidate targets differ clearly
        tiny_classifier.classifier.weight.mul_(40)
        second.classifier.weight.mul_(-40)
    trainer = make_trainer(
        student_like(tiny_classifier),
        [tiny_classifier, second],
        tmp_path,
        alpha_cos=0.0,
        alpha_task=0.0,
        teacher_weights=[3.0, 1.0],
        temperature=2.0,
    )
    batch = pad_collate(random_token_dataset(8, seed=9).to_list())
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        student = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        probabilities = [
            F.softmax(t(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits / 2, -1)
            for t in (tiny_classifier, second)
        ]
    mixture = 0.75 * probabilities[0] + 0.25 * probabilities[1]
    expected = (mixture * (mixture.log() - F.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert parts["kd"] == pytest.approx(expected.item(), rel=1e-4)
    mean_of_logits = kd_loss(
        student, (0.75 * torch.log(probabilities[0]) + 0.25 * torch.log(probabilities[1])) * 2, temperature=2.0
    )
    assert parts["kd"] != pytest.approx(mean_of_logits.item(), rel=1e-3)


def test_ensemble_of_regressors_averages_predictions(tiny_regressor, tmp_path):
    """A softmax over one regression output is meaningless; an ensemble of regressors teaches the weighted mean."""
    second = other_teacher(tiny_regressor)
    trainer = make_trainer(
        student_like(tiny_regressor),
        [tiny_regressor, second],
        tmp_path,
        dataset=random_token_dataset(8, label_kind="float"),
        alpha_cos=0.0,
        alpha_task=0.0,
        teacher_weights=[1.0, 1.0],
    )
    batch = pad_collate(random_token_dataset(8, seed=2, label_kind="float").to_list())
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mean = (tiny_regressor(**inputs).logits + second(**inputs).logits) / 2
        expected = (trainer.model(**inputs).logits - mean).pow(2).mean()
    assert parts["kd"] == pytest.approx(expected.item(), rel=1e-5)


def test_sigmoid_and_span_ensembles_stay_finite():
    """Log-space mixtures must not turn saturated logits into inf or NaN targets."""
    logits = torch.tensor([[[80.0, -80.0]], [[-80.0, 80.0]]])
    for kind in ("softmax", "sigmoid"):
        out = ensemble_logits(logits, torch.tensor([0.5, 0.5]), temperature=1.0, kind=kind)
        assert torch.isfinite(out).all(), kind
    out = ensemble_logits(logits, torch.tensor([0.5, 0.5]), temperature=1.0, kind="sigmoid")
    torch.testing.assert_close(out, torch.zeros(1, 2), atol=1e-4, rtol=0)  # p = 0.5 per label


def test_ensemble_trains_and_uses_the_designated_teacher_for_cos(tiny_classifier, tmp_path):
    """L_cos against an unnamed or the wrong teacher in an ensemble would follow a representation nobody chose."""
    second = other_teacher(tiny_classifier)
    seen: list[str] = []
    tiny_classifier.register_forward_hook(
        lambda m, a, kw_out: seen.append(("first", "output_hidden_states" in str(a)))
    )
    with pytest.raises(ValueError, match="cos_teacher=<index>"):
        make_trainer(student_like(tiny_classifier), [tiny_classifier, second], tmp_path)
    trainer = make_trainer(student_like(tiny_classifier), [tiny_classifier, second], tmp_path, cos_teacher=1)
    logs = train_logs(trainer)
    assert len(logs) == 4 and all({"loss_kd", "loss_cos", "loss_task"} <= set(entry) for entry in logs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(teacher_weights=[1.0]), "1 value"),
        (dict(teacher_weights=[1.0, 0.0]), "finite numbers > 0"),
        (dict(teacher_weights=[1.0, -2.0]), "finite numbers > 0"),
        (dict(cos_teacher=2), "indices 0 to 1"),
    ],
)
def test_bad_ensemble_settings_raise_before_training(tiny_classifier, overrides, message, tmp_path):
    """A weight per teacher that is missing, zero or negative gives a target no one asked for."""
    with pytest.raises(ValueError, match=message):
        make_trainer(
            student_like(tiny_classifier),
            [tiny_classifier, other_teacher(tiny_classifier)],
            tmp_path,
            alpha_cos=0.0,
            **overrides,
        )
    assert not (tmp_path / "out").exists()


def test_teachers_that_disagree_are_named(tiny_classifier, tmp_path):
    """An ensemble member with other labels teaches class i as class j; the error must say which one differs."""
    bad = other_teacher(tiny_classifier)
    bad.config.id2label = {0: "x", 1: "y", 2: "z"}
    student = student_like(tiny_classifier)
    student.config.id2label = {0: "a", 1: "b", 2: "c"}
    tiny_classifier.config.id2label = {0: "a", 1: "b", 2: "c"}
    with pytest.raises(ValueError, match=r"^teacher 1: teacher id2label"):
        make_trainer(student, [tiny_classifier, bad], tmp_path, alpha_cos=0.0)


# ---- a route of teacher checkpoints ---------------------------------------------------------------------------------


class RecordTeacher(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.refs = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.refs.append(weakref.ref(self.trainer.teacher_model))


@pytest.fixture
def route(tiny_classifier, tmp_path):
    paths = []
    for step, seed in ((2, 21), (4, 22), (6, 23)):
        model = other_teacher(tiny_classifier, seed=seed)
        path = tmp_path / "teacher" / f"checkpoint-{step}"
        model.save_pretrained(path)
        paths.append(str(path))
    return paths


def test_route_switches_at_the_stated_steps_one_teacher_at_a_time(tiny_classifier, route, tmp_path):
    """A route that switches late, early, or keeps every checkpoint in memory is not the schedule asked for."""
    trainer = make_trainer(
        student_like(tiny_classifier), route, tmp_path, max_steps=6, teacher_route=True, route_switch_steps=[2, 5]
    )
    recorder = RecordTeacher(trainer)
    trainer.add_callback(recorder)
    logs = train_logs(trainer)
    assert [entry["route_checkpoint"] for entry in logs] == [0, 0, 1, 1, 1, 2]
    gc.collect()
    alive = {id(ref()) for ref in recorder.refs if ref() is not None}
    assert len(alive) == 1, "an earlier route checkpoint is still in memory"
    assert trainer.teacher_model.config.num_hidden_layers == 3


def test_even_and_epoch_schedules(tiny_classifier, route, tmp_path):
    """Without switch steps the route must spread over training; in epochs it must follow the epoch length."""
    even = train_logs(
        make_trainer(student_like(tiny_classifier), route, tmp_path / "a", max_steps=6, teacher_route=True)
    )
    assert [e["route_checkpoint"] for e in even] == [0, 0, 1, 1, 2, 2]
    epochs = make_trainer(
        student_like(tiny_classifier),
        route,
        tmp_path / "b",
        max_steps=-1,
        num_train_epochs=3,
        teacher_route=True,
        route_switch_epochs=[1, 2.5],
    )  # 32 rows / 8 = 4 steps per epoch: switches at 4 and 10
    assert [e["route_checkpoint"] for e in train_logs(epochs)] == [0] * 4 + [1] * 6 + [2] * 2


def test_resume_in_the_middle_of_the_route(tiny_classifier, route, tmp_path):
    """A resume that restarts the route at its first checkpoint teaches the wrong teacher for the rest of the run."""
    overrides = dict(max_steps=6, teacher_route=True, route_switch_steps=[2, 4], save_strategy="steps", save_steps=3)
    full_logs = train_logs(make_trainer(student_like(tiny_classifier), route, tmp_path / "full", **overrides))
    cut = make_trainer(student_like(tiny_classifier), route, tmp_path / "cut", **overrides)
    cut.add_callback(StopAt(3))
    cut.train()
    resumed = make_trainer(student_like(tiny_classifier, seed=5), route, tmp_path / "cut", **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-3"))
    resumed_logs = [e for e in resumed.state.log_history if "loss" in e]
    assert [e["route_checkpoint"] for e in resumed_logs] == [0, 0, 1, 1, 2, 2]
    for a, b in zip(full_logs, resumed_logs):
        for key in ("loss", "loss_kd", "loss_cos", "route_checkpoint"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["step"], key)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(route_switch_steps=[2]), "1 value"),
        (dict(route_switch_steps=[2, 9]), "between 1 and 5"),
        (dict(route_switch_steps=[4, 2]), "increase strictly"),
        (dict(route_switch_epochs=[1.0], route_switch_steps=[1, 2]), "not both"),
    ],
)
def test_bad_route_settings_raise(tiny_classifier, route, overrides, message, tmp_path):
    """A switch after the end of training or out of order means a checkpoint never teaches."""
    with pytest.raises(ValueError, match=message):
        trainer = make_trainer(
            student_like(tiny_classifier), route, tmp_path, max_steps=6, teacher_route=True, **overrides
        )
        trainer.train()


def test_route_needs_teacher_route_and_two_checkpoints(tiny_classifier, route, tmp_path):
    """Switch steps without `teacher_route` would silently make an ensemble of the checkpoints."""
    with pytest.raises(ValueError, match="teacher_route is False"):
        make_args(tmp_path, route_switch_steps=[2, 4])
    with pytest.raises(ValueError, match="at least two checkpoints"):
        make_trainer(student_like(tiny_classifier), route[:1], tmp_path, teacher_route=True)
    with pytest.raises(ValueError, match="checkpoint 1 of the route"):
        make_trainer(
            student_like(tiny_classifier), [route[0], str(tmp_path / "missing")], tmp_path, teacher_route=True
        )


# ---- co-training ----------------------------------------------------------------------------------------------------


def teacher_gradient(trainer, batch):
    trainer.model.zero_grad()
    trainer.teacher_model.zero_grad()
    loss, _ = one_batch_loss(trainer, batch)
    loss.backward()
    return trainer.teacher_model.classifier.weight.grad.clone()


def test_isolation_decides_whether_distillation_reaches_the_teacher(tiny_classifier, tmp_path):
    """Without isolation the student's soft-target loss must move the teacher; with it, only the teacher's own task
    loss may."""
    batch = pad_collate(random_token_dataset(8, seed=3).to_list())
    isolated = make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path / "a", cotrain_teacher=True)
    gradient = teacher_gradient(isolated, batch)
    tiny_classifier.zero_grad()
    own = tiny_classifier(**batch).loss
    own.backward()
    torch.testing.assert_close(gradient, tiny_classifier.classifier.weight.grad, atol=1e-6, rtol=0)

    open_ = make_trainer(
        student_like(tiny_classifier), tiny_classifier, tmp_path / "b", cotrain_teacher=True, cotrain_isolation=False
    )
    assert not torch.allclose(teacher_gradient(open_, batch), gradient, atol=1e-6)


def test_cotraining_trains_both_and_checkpoints_resume_exactly(tiny_classifier, tmp_path):
    """A co-trained teacher outside the optimizer never learns; one missing from checkpoints restarts on resume."""
    dataset = random_token_dataset(48, seed=6)
    overrides = dict(
        max_steps=6, cotrain_teacher=True, cotrain_teacher_learning_rate=5e-4, save_strategy="steps", save_steps=3
    )

    def fresh():
        return student_like(tiny_classifier), student_like(tiny_classifier, num_layers=4, seed=77)

    student, teacher = fresh()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    full = make_trainer(student, teacher, tmp_path / "full", dataset=dataset, **overrides)
    full_logs = train_logs(full)
    assert all("loss_teacher_task" in entry for entry in full_logs)
    assert any(not torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    rates = sorted({group["initial_lr"] for group in full.optimizer.param_groups})
    assert len(full.optimizer.param_groups) == 4 and len(rates) == 2  # student and teacher groups, own rates
    assert (tmp_path / "full" / "out" / "checkpoint-3" / TEACHER_DIR / "config.json").exists()

    student, teacher = fresh()
    cut = make_trainer(student, teacher, tmp_path / "cut", dataset=dataset, **overrides)
    cut.add_callback(StopAt(3))
    cut.train()
    student, teacher = fresh()
    resumed = make_trainer(student, teacher, tmp_path / "cut", dataset=dataset, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-3"))
    resumed_logs = [e for e in resumed.state.log_history if "loss" in e]
    for a, b in zip(full_logs, resumed_logs):
        for key in ("loss", "loss_kd", "loss_teacher_task"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["step"], key)
    for mine, theirs in ((resumed.model, full.model), (resumed.teacher_model, full.teacher_model)):
        for name, value in theirs.state_dict().items():
            torch.testing.assert_close(mine.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)

    resumed.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final" / TEACHER_DIR).exists()
    saved = __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(tmp_path / "final" / "model.safetensors")
    )
    assert not any(".layer.2." in key or ".layer.3." in key for key in saved)  # the 4-layer teacher's layers


@pytest.mark.parametrize(
    "teacher_kind, overrides, message",
    [
        ("frozen", {}, "requires_grad=False"),
        ("list", {}, "trains one teacher"),
        ("single", dict(cotrain_teacher=False, cotrain_teacher_learning_rate=1e-3), "cotrain_teacher is False"),
        ("single", dict(cotrain_teacher=False, cotrain_isolation=False), "only applies to co-training"),
    ],
)
def test_bad_cotraining_settings_raise(tiny_classifier, teacher_kind, overrides, message, tmp_path):
    """A co-trained teacher that cannot learn, or co-training flags that silently do nothing."""
    teacher = tiny_classifier
    if teacher_kind == "frozen":
        teacher.requires_grad_(False)
    if teacher_kind == "list":
        teacher = [tiny_classifier, other_teacher(tiny_classifier)]
    with pytest.raises(ValueError, match=message):
        make_trainer(student_like(tiny_classifier), teacher, tmp_path, **{"cotrain_teacher": True, **overrides})


@pytest.mark.parametrize("mode", ["cotrain", "ensemble"])
def test_gradient_accumulation_stays_exact_in_the_new_modes(tiny_classifier, mode, tmp_path):
    """Teacher gradients that pile up across optimizer steps, or an ensemble normalised per micro-batch, make 8 x 1
    and 2 x 4 train different models."""
    dataset = random_token_dataset(32, seed=8)
    runs = {}
    for batch, steps in ((8, 1), (2, 4)):
        teacher = copy.deepcopy(tiny_classifier)
        teachers = teacher if mode == "cotrain" else [teacher, other_teacher(tiny_classifier)]
        extra = dict(cotrain_teacher=True) if mode == "cotrain" else dict(cos_teacher=0)
        trainer = make_trainer(
            student_like(tiny_classifier),
            teachers,
            tmp_path / f"{batch}",
            dataset=dataset,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=steps,
            **extra,
        )
        logs = train_logs(trainer)
        runs[batch] = (logs, trainer.model.state_dict(), teacher.state_dict())
    (logs_a, student_a, teacher_a), (logs_b, student_b, teacher_b) = runs[8], runs[2]
    for a, b in zip(logs_a, logs_b):
        for key in (k for k in a if k.startswith("loss")):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    for first, second in ((student_a, student_b), (teacher_a, teacher_b)):
        for name, value in first.items():
            torch.testing.assert_close(second[name], value, atol=1e-5, rtol=0, msg=name)


def test_span_ensemble_mixes_distributions_over_real_tokens_only(tiny_qa, tmp_path):
    """Mixing span distributions that still hold probability on padding positions teaches the student a target
    that no teacher gave; the mixture must be of each teacher's distribution over the real tokens."""
    second = other_teacher(tiny_qa)
    with torch.no_grad():
        tiny_qa.qa_outputs.weight.mul_(30)
        second.qa_outputs.weight.mul_(-30)
    trainer = make_trainer(
        student_like(tiny_qa),
        [tiny_qa, second],
        tmp_path,
        dataset=random_token_dataset(8, label_kind="span"),
        alpha_cos=0.0,
        alpha_task=0.0,
        temperature=1.0,
    )
    batch = pad_collate(random_token_dataset(8, seed=4, label_kind="span").to_list())
    assert not batch["attention_mask"].all()
    _, parts = one_batch_loss(trainer, batch)
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    padding = ~batch["attention_mask"].bool()
    with torch.no_grad():
        student, teachers = trainer.model(**inputs), [t(**inputs) for t in (tiny_qa, second)]
    expected = 0.0
    for key in ("start_logits", "end_logits"):
        low = torch.finfo(torch.float32).min
        mixture = sum(0.5 * F.softmax(t[key].masked_fill(padding, low), -1) for t in teachers)
        log_q = F.log_softmax(student[key].masked_fill(padding, low), -1)
        kl = torch.where(mixture > 0, mixture * (mixture.clamp_min(1e-30).log() - log_q), torch.zeros(()))
        expected += kl.sum(-1).mean() / 2
    assert parts["kd"] == pytest.approx(float(expected), rel=1e-4)


def test_only_the_cos_teacher_needs_the_students_hidden_size(tiny_classifier, tmp_path):
    """A wider second teacher was refused for L_cos although L_cos follows only cos_teacher."""
    wide = type(tiny_classifier)(
        tiny_classifier.config.__class__(**{**tiny_classifier.config.to_dict(), "hidden_size": 48})
    )
    trainer = make_trainer(
        student_like(tiny_classifier), [tiny_classifier, wide], tmp_path, cos_teacher=0, max_steps=1
    )
    assert [e for e in train_logs(trainer) if "loss_cos" in e]
    with pytest.raises(ValueError, match="teacher 1: alpha_cos > 0 needs equal hidden sizes"):
        make_trainer(student_like(tiny_classifier), [tiny_classifier, wide], tmp_path, cos_teacher=1)


def test_cotraining_refusals_name_the_real_cause(tiny_classifier, tmp_path):
    """Co-training without labels was blamed on alpha_task; a user optimizer without the teacher failed only in
    train(), after the output directory existed."""
    unlabelled = random_token_dataset(8).remove_columns("labels")
    with pytest.raises(ValueError, match="cotrain_teacher=True needs labels"):
        make_trainer(
            student_like(tiny_classifier),
            tiny_classifier,
            tmp_path,
            dataset=unlabelled,
            cotrain_teacher=True,
            alpha_task=0.0,
        )
    student = student_like(tiny_classifier)
    with pytest.raises(ValueError, match="does not hold the teacher's parameters"):
        DistillationTrainer(
            model=student,
            teacher_model=tiny_classifier,
            args=make_args(tmp_path, cotrain_teacher=True),
            train_dataset=random_token_dataset(8),
            data_collator=pad_collate,
            optimizers=(torch.optim.AdamW(student.parameters()), None),
        )
    assert not (tmp_path / "out").exists()


def test_cotraining_logs_the_joint_gradient_norm(tiny_classifier, tmp_path):
    """The logged grad_norm was the joint norm when clipping and the student's alone without it."""
    norms = {}
    for clip in (0.0, 1e6):
        teacher = copy.deepcopy(tiny_classifier)
        trainer = make_trainer(
            student_like(tiny_classifier),
            teacher,
            tmp_path / str(clip),
            cotrain_teacher=True,
            max_grad_norm=clip,
            max_steps=1,
        )
        norms[clip] = train_logs(trainer)[0]["grad_norm"]
    assert norms[0.0] == pytest.approx(norms[1e6], rel=1e-5)

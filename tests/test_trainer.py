"""DistillationTrainer on tiny random models: loss terms, masking, accumulation, teacher isolation, logs, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from hf_distill import DistillationTrainer, DistillationTrainingArguments
from hf_distill.losses import cosine_loss, kd_loss, mse_loss

from .conftest import pad_collate, random_token_dataset, tiny_bert_config


def student_like(teacher: torch.nn.Module, num_layers: int = 2, seed: int = 123) -> torch.nn.Module:
    """A randomly initialised student of the teacher's class with fewer layers (no weight copying involved)."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    torch.manual_seed(seed)
    return type(teacher)(config)


def make_args(tmp_path, **overrides) -> DistillationTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=7,
        data_seed=7,
        disable_tqdm=True,
    )
    values.update(overrides)
    return DistillationTrainingArguments(**values)


def make_trainer(student, teacher, tmp_path, dataset=None, **overrides) -> DistillationTrainer:
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, **overrides),
        train_dataset=dataset if dataset is not None else random_token_dataset(32),
        data_collator=pad_collate,
    )


def train_logs(trainer: DistillationTrainer) -> list[dict]:
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


# ---- loss values on one batch -----------------------------------------------------------------------------------


def one_batch_loss(trainer: DistillationTrainer, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch, and the unweighted terms it recorded."""
    trainer.model.train()
    trainer._loss_parts = {}
    loss = trainer.compute_loss(trainer.model, batch)
    return loss, {name: value.item() for name, value in trainer._loss_parts.items()}


def test_sequence_level_terms_match_independent_formulas(tiny_classifier, tmp_path):
    """A KD averaged over padded tokens, a missing T², or a cosine over padding gives a different value."""
    teacher = tiny_classifier
    student = student_like(teacher)
    trainer = make_trainer(student, teacher, tmp_path, temperature=3.0, alpha_mse=0.5)
    batch = pad_collate([random_token_dataset(6, seed=3)[i] for i in range(6)])
    loss, parts = one_batch_loss(trainer, batch)

    with torch.no_grad():
        s = student(**batch, output_hidden_states=True)
        t = teacher(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    expected = {
        "kd": kd_loss(s.logits, t.logits, temperature=3.0).item(),
        "task": s.loss.item(),
        "cos": cosine_loss(s.hidden_states[-1], t.hidden_states[-1], mask=mask).item(),
        "mse": mse_loss(s.logits, t.logits).item(),
    }
    assert parts == pytest.approx(expected, rel=1e-5)
    weighted = 5.0 * expected["kd"] + 2.0 * expected["task"] + 1.0 * expected["cos"] + 0.5 * expected["mse"]
    assert loss.item() == pytest.approx(weighted, rel=1e-5)
    # Padding is really excluded: the unmasked cosine is a different number on this batch.
    unmasked = cosine_loss(s.hidden_states[-1], t.hidden_states[-1]).item()
    assert abs(unmasked - expected["cos"]) > 1e-4


def test_masked_lm_kd_counts_only_label_positions(tiny_mlm, tmp_path):
    """Masked-LM distillation over every position (DistilBERT computes it on masked tokens only) dilutes the signal."""
    teacher = tiny_mlm
    student = student_like(teacher)
    dataset = random_token_dataset(6, seed=4, label_kind="mlm")
    trainer = make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_cos=0.0, alpha_task=0.0)
    batch = pad_collate([dataset[i] for i in range(6)])
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    label_mask = batch["labels"].ne(-100)
    expected = kd_loss(s.logits, t.logits, temperature=2.0, mask=label_mask).item()
    assert parts["kd"] == pytest.approx(expected, rel=1e-5)
    assert parts["kd"] != pytest.approx(
        kd_loss(s.logits, t.logits, temperature=2.0, mask=batch["attention_mask"].bool()).item(), rel=1e-3
    )


def test_token_level_kd_without_labels_uses_attention_mask(tiny_tagger, tmp_path):
    """Unlabelled token-level distillation must still skip padding positions."""
    teacher = tiny_tagger
    student = student_like(teacher)
    dataset = random_token_dataset(6, seed=5, label_kind=None)
    trainer = make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_task=0.0, alpha_cos=0.0)
    batch = pad_collate([dataset[i] for i in range(6)])
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        s, t = student(**batch), teacher(**batch)
    expected = kd_loss(s.logits, t.logits, temperature=2.0, mask=batch["attention_mask"].bool()).item()
    assert parts == pytest.approx({"kd": expected}, rel=1e-5)


def test_regression_head_uses_mse_as_kd(tiny_regressor, tmp_path):
    """A softmax over a single regression output is constant, so a KL-based KD would teach nothing."""
    teacher = tiny_regressor
    student = student_like(teacher)
    dataset = random_token_dataset(6, seed=6, label_kind="float")
    trainer = make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_cos=0.0)
    batch = pad_collate([dataset[i] for i in range(6)])
    loss, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        s = student(**batch)
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    expected_kd = ((s.logits - t.logits) ** 2).mean().item()
    assert parts["kd"] == pytest.approx(expected_kd, rel=1e-5)
    assert parts["task"] == pytest.approx(s.loss.item(), rel=1e-5)
    assert parts["kd"] > 0


def test_question_answering_kd_masks_padding_positions(tiny_qa, tmp_path):
    """Start/end distributions must not spread probability over padding positions."""
    teacher = tiny_qa
    student = student_like(teacher)
    dataset = random_token_dataset(6, seed=8, label_kind="span")
    trainer = make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_cos=0.0, alpha_task=0.0)
    batch = pad_collate([dataset[i] for i in range(6)])
    _, parts = one_batch_loss(trainer, batch)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s, t = student(**inputs), teacher(**inputs)
    expected = 0.0
    for key in ("start_logits", "end_logits"):
        for row in range(6):
            keep = batch["attention_mask"][row].bool()
            expected += kd_loss(s[key][row][keep][None], t[key][row][keep][None], temperature=2.0).item()
    # KL of near-equal distributions is a small difference of larger numbers: compare with an absolute tolerance.
    assert parts["kd"] == pytest.approx(expected / 2 / 6, abs=1e-6)


def test_label_smoothing_is_respected(tiny_classifier, tmp_path):
    """`label_smoothing_factor` set by the user must change the task term, as it does in plain Trainer."""
    teacher = tiny_classifier
    student = student_like(teacher)
    trainer = make_trainer(student, teacher, tmp_path, label_smoothing_factor=0.2)
    batch = pad_collate([random_token_dataset(6, seed=9)[i] for i in range(6)])
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], label_smoothing=0.2).item()
    assert parts["task"] == pytest.approx(expected, rel=1e-5)


def test_zero_weight_terms_are_not_computed(tiny_classifier, tmp_path):
    """A term with weight 0 must cost nothing: no hidden states requested, no teacher run for a task-only loss."""
    teacher = tiny_classifier
    calls: list[dict] = []
    teacher.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    trainer = make_trainer(student_like(teacher), teacher, tmp_path, alpha_cos=0.0)
    batch = pad_collate([random_token_dataset(4)[i] for i in range(4)])
    _, parts = one_batch_loss(trainer, batch)
    assert set(parts) == {"kd", "task"}
    assert calls and not calls[-1].get("output_hidden_states")

    calls.clear()
    trainer = make_trainer(student_like(teacher), teacher, tmp_path, alpha_kd=0.0, alpha_cos=0.0)
    _, parts = one_batch_loss(trainer, batch)
    assert set(parts) == {"task"} and calls == []


# ---- training runs ---------------------------------------------------------------------------------------------


def test_each_term_is_logged_and_adds_up_to_the_loss(tiny_classifier, tmp_path):
    """Per-term logs that drift from `loss` (other averaging, weights applied twice) mislead every tuning decision."""
    logs = train_logs(make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path, logging_steps=2))
    assert len(logs) == 2
    for entry in logs:
        assert {"loss_kd", "loss_task", "loss_cos"} <= entry.keys()
        assert "loss_mse" not in entry
        weighted = 5.0 * entry["loss_kd"] + 2.0 * entry["loss_task"] + 1.0 * entry["loss_cos"]
        assert entry["loss"] == pytest.approx(weighted, rel=1e-5)


@pytest.mark.parametrize("fixture, label_kind", [("tiny_classifier", "class"), ("tiny_mlm", "mlm")])
def test_gradient_accumulation_is_exact(fixture, label_kind, request, tmp_path):
    """Dividing each micro-batch mean by the number of steps is wrong when micro-batches hold different numbers of
    tokens or masked positions; 8 x 1 and 2 x 4 must give the same losses and weights."""
    teacher = request.getfixturevalue(fixture)
    dataset = random_token_dataset(32, seed=11, label_kind=label_kind)
    runs = {}
    for batch_size, accumulation in ((8, 1), (2, 4)):
        trainer = make_trainer(
            student_like(teacher),
            teacher,
            tmp_path / f"{batch_size}x{accumulation}",
            dataset=dataset,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=3,
        )
        logs = train_logs(trainer)
        runs[(batch_size, accumulation)] = (logs, {k: v.clone() for k, v in trainer.model.state_dict().items()})
    (logs_a, weights_a), (logs_b, weights_b) = runs[(8, 1)], runs[(2, 4)]
    assert len(logs_a) == len(logs_b) == 3
    for a, b in zip(logs_a, logs_b):
        for key in ("loss", "loss_kd", "loss_task", "loss_cos"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=1e-5, rtol=0, msg=name)


def test_teacher_is_frozen_isolated_and_unchanged(tiny_classifier, tmp_path):
    """A teacher that trains along, runs with dropout, builds autograd graphs or enters the optimizer corrupts the
    targets and wastes memory."""
    teacher = tiny_classifier
    teacher.train()  # the user hands over a model in train mode
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen: list[tuple[bool, bool]] = []
    teacher.register_forward_hook(
        lambda module, args, out: seen.append((module.training, torch.is_inference_mode_enabled()))
    )
    trainer = make_trainer(student_like(teacher), teacher, tmp_path)
    trainer.train()

    assert seen and all(not training and inference for training, inference in seen)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in teacher.parameters()}
    assert all(not name.startswith("teacher") for name, _ in trainer.model.named_modules())
    assert next(trainer.teacher_model.parameters()).device == next(trainer.model.parameters()).device


def test_the_users_teacher_object_is_left_as_given(tiny_classifier, tmp_path):
    """`requires_grad_(False)` left on the user's teacher after training made a later `copy.deepcopy(teacher)` or
    further training of it fail with "element 0 of tensors does not require grad"; its module modes must come back
    too."""
    teacher = tiny_classifier
    teacher.train()
    teacher.bert.embeddings.eval()  # a mixed-mode model: each module's flag must come back as it was
    modes = [m.training for m in teacher.modules()]
    flags = [p.requires_grad for p in teacher.parameters()]
    make_trainer(student_like(teacher), teacher, tmp_path).train()

    assert [p.requires_grad for p in teacher.parameters()] == flags
    assert [m.training for m in teacher.modules()] == modes
    # The teacher can still be trained and copied in the same process.
    copy.deepcopy(teacher)
    batch = pad_collate(random_token_dataset(4).to_list())
    teacher(**batch).loss.backward()
    assert teacher.classifier.weight.grad is not None


def test_checkpoint_holds_the_student_only(tiny_classifier, tmp_path):
    """A checkpoint that also stores the teacher doubles its size and reloads into the wrong model."""
    student = student_like(tiny_classifier)
    trainer = make_trainer(student, tiny_classifier, tmp_path, save_strategy="steps", save_steps=4)
    trainer.train()
    saved = load_file(str(tmp_path / "out" / "checkpoint-4" / "model.safetensors"))
    state = trainer.model.state_dict()
    assert set(saved) <= set(state)
    assert not any(".layer.2." in key or ".layer.3." in key for key in saved)  # the teacher's extra layers
    for key, value in saved.items():
        assert torch.equal(value, state[key]), key
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "out" / "checkpoint-4")
    assert reloaded.config.num_hidden_layers == 2


def test_eval_loss_is_the_students_task_loss_without_teacher(tiny_classifier, tmp_path):
    """An eval loss that includes the KD term cannot be compared with a plain fine-tune, and running the teacher in
    evaluation doubles its cost."""
    teacher = tiny_classifier
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    student = student_like(teacher)
    eval_set = random_token_dataset(12, seed=21)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, per_device_eval_batch_size=12),
        train_dataset=random_token_dataset(16),
        eval_dataset=eval_set,
        data_collator=pad_collate,
    )
    metrics = trainer.evaluate()
    assert calls == []
    batch = pad_collate([eval_set[i] for i in range(12)])
    with torch.no_grad():
        expected = student.eval()(**batch).loss.item()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)
    predictions = trainer.predict(eval_set)
    assert calls == [] and predictions.metrics["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_plain_training_arguments_and_teacher_path_work(tiny_classifier, tmp_path):
    """Moving a script to distillation must need only the class change and `teacher_model`, even as a path."""
    teacher_dir = tmp_path / "teacher"
    tiny_classifier.save_pretrained(teacher_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, logging_steps=1, report_to="none", use_cpu=True
    )
    trainer = DistillationTrainer(
        model=student_like(tiny_classifier),
        args=args,
        train_dataset=random_token_dataset(16),
        data_collator=pad_collate,
        teacher_model=str(teacher_dir),
    )
    assert isinstance(trainer.teacher_model, BertForSequenceClassification)
    logs = train_logs(trainer)
    assert all({"loss_kd", "loss_task", "loss_cos"} <= entry.keys() for entry in logs)
    assert isinstance(trainer, Trainer)


# ---- errors before training ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"temperature": 0.0}, "temperature must be a positive finite number, got 0.0"),
        ({"temperature": -1.0}, "temperature must be a positive finite number, got -1.0"),
        ({"temperature": math.nan}, "temperature must be a positive finite number, got nan"),
        ({"temperature": math.inf}, "temperature must be a positive finite number, got inf"),
        ({"alpha_kd": -0.5}, "alpha_kd must be >= 0, got -0.5"),
        ({"alpha_cos": math.nan}, "alpha_cos must be a finite number >= 0, got nan"),
        ({"alpha_task": math.inf}, "alpha_task must be a finite number >= 0, got inf"),
        ({"alpha_kd": 0, "alpha_task": 0, "alpha_cos": 0, "alpha_mse": 0}, "all loss weights are 0"),
    ],
)
def test_bad_arguments_raise(overrides, message, tmp_path):
    """An invalid temperature or weight must fail at construction, not as NaN losses hours into a run."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_args(tmp_path, **overrides)


def test_arguments_changed_after_construction_are_checked_before_training(tiny_classifier, tmp_path):
    """A dataclass edited after `__post_init__` bypasses its checks; the trainer must check again."""
    args = make_args(tmp_path)
    args.temperature = -2.0
    with pytest.raises(ValueError, match="temperature must be a positive finite number, got -2.0"):
        DistillationTrainer(model=student_like(tiny_classifier), teacher_model=tiny_classifier, args=args)


def _mismatch_cases():
    base = dict(num_labels=3)
    return [
        ("vocab", dict(base, vocab_size=120), {}, "teacher vocab_size 99 differs from student vocab_size 120"),
        ("num_labels", dict(num_labels=4), {}, "teacher num_labels 3 differs from student num_labels 4"),
        (
            "id2label",
            dict(base, id2label={0: "neg", 1: "neu", 2: "pos"}),
            {"id2label": {0: "pos", 1: "neu", 2: "neg"}},
            "teacher id2label .* differs from student id2label",
        ),
        ("hidden", dict(base, hidden_size=16, num_attention_heads=2), {}, "alpha_cos > 0 needs equal hidden sizes"),
    ]


@pytest.mark.parametrize("name, student_overrides, teacher_config_changes, message", _mismatch_cases())
def test_incompatible_teacher_and_student_raise(name, student_overrides, teacher_config_changes, message, tmp_path):
    """A student that reads token ids or class ids differently from its teacher learns garbage at a normal loss."""
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3, **teacher_config_changes))
    student = BertForSequenceClassification(tiny_bert_config(num_hidden_layers=2, **student_overrides))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        make_trainer(student, teacher, tmp_path)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    assert not (tmp_path / "out").exists()


def test_default_label_names_do_not_count_as_a_mismatch(tmp_path):
    """Generic LABEL_i names on one side are not a real disagreement and must not block distillation."""
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=2, id2label={0: "neg", 1: "pos"}))
    student = BertForSequenceClassification(tiny_bert_config(num_labels=2, num_hidden_layers=2))
    make_trainer(student, teacher, tmp_path, dataset=random_token_dataset(8, num_labels=2))


def test_missing_teacher_raises(tiny_classifier, tmp_path):
    """Without a teacher the trainer would silently fall back to plain fine-tuning."""
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillationTrainer(model=tiny_classifier, args=make_args(tmp_path))


def test_teacher_sharing_weights_with_student_raises(tiny_classifier, tmp_path):
    """A student that shares tensors with its teacher would train the teacher too."""
    with pytest.raises(ValueError, match="teacher_model is the student itself"):
        make_trainer(tiny_classifier, tiny_classifier, tmp_path)
    student = student_like(tiny_classifier)
    student.bert.embeddings = tiny_classifier.bert.embeddings
    with pytest.raises(ValueError, match="share weights"):
        make_trainer(student, tiny_classifier, tmp_path)


def test_different_heads_raise(tiny_classifier, tiny_mlm, tmp_path):
    """Matching a classifier's logits against a masked-LM teacher's vocabulary logits is meaningless."""
    with pytest.raises(ValueError, match="the teacher is a BertForMaskedLM but the student is a Bert"):
        make_trainer(student_like(tiny_classifier), tiny_mlm, tmp_path)


def test_task_loss_without_labels_raises_before_training(tiny_classifier, tmp_path):
    """With alpha_task > 0 and no labels the task term would be skipped or crash mid-run."""
    unlabelled = random_token_dataset(16, label_kind=None)
    with pytest.raises(ValueError, match="alpha_task > 0 but the training dataset has no label column"):
        make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path, dataset=unlabelled)

    # A dataset without column names is checked on the first batch, before any optimizer step.
    student = student_like(tiny_classifier)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = make_trainer(student, tiny_classifier, tmp_path, dataset=list(unlabelled))
    with pytest.raises(ValueError, match="alpha_task > 0 but the batch carries no labels"):
        trainer.train()
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())

    # alpha_task=0 distils on the same unlabelled data.
    logs = train_logs(
        make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path, alpha_task=0.0, dataset=unlabelled)
    )
    assert logs and all("loss_task" not in entry and "loss_kd" in entry for entry in logs)


def test_compute_loss_func_is_used_for_the_task_term(tiny_classifier, tmp_path):
    """A user's `compute_loss_func` (e.g. class-weighted cross-entropy) silently replaced by the model's own loss
    would train on another objective than the script asks for."""
    weights = torch.tensor([1.0, 3.0, 0.5])

    def weighted_ce(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weights)

    student = student_like(tiny_classifier)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=tiny_classifier,
        args=make_args(tmp_path),
        train_dataset=random_token_dataset(16),
        data_collator=pad_collate,
        compute_loss_func=weighted_ce,
    )
    batch = pad_collate([random_token_dataset(6, seed=12)[i] for i in range(6)])
    _, parts = one_batch_loss(trainer, batch)
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=weights).item()
    assert parts["task"] == pytest.approx(expected, rel=1e-5)


def test_bf16_autocast_keeps_kd_nonnegative_and_close_to_fp32(tiny_classifier, tmp_path):
    """Under bf16 autocast a KL computed in bf16 can go negative; the logits must be upcast before the softmax."""
    batch = pad_collate([random_token_dataset(8, seed=13)[i] for i in range(8)])
    student = student_like(tiny_classifier)
    values = {}
    for bf16 in (False, True):
        trainer = make_trainer(copy.deepcopy(student), tiny_classifier, tmp_path, bf16=bf16, alpha_cos=0.0)
        trainer.model.train()
        trainer._loss_parts = {}
        with trainer.compute_loss_context_manager():
            trainer.compute_loss(trainer.model, dict(batch))
        values[bf16] = trainer._loss_parts["kd"].item()
    assert values[True] >= 0
    assert values[True] == pytest.approx(values[False], rel=0.05, abs=1e-3)


class StopAt(TrainerCallback):
    """Ends training after `step` optimizer steps, as an interruption would, right after a checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tiny_classifier, tmp_path):
    """A resume that restarts the data order, the scheduler or the per-term log windows differs silently from the run
    it continues; final weights and every logged loss must match an uninterrupted run."""
    dataset = random_token_dataset(48, seed=14)
    overrides = dict(max_steps=6, save_strategy="steps", save_steps=2, logging_steps=1)

    full = make_trainer(
        student_like(tiny_classifier), tiny_classifier, tmp_path / "full", dataset=dataset, **overrides
    )
    full_logs = train_logs(full)

    interrupted = make_trainer(
        student_like(tiny_classifier), tiny_classifier, tmp_path / "cut", dataset=dataset, **overrides
    )
    interrupted.add_callback(StopAt(4))
    interrupted.train()
    assert interrupted.state.global_step == 4

    resumed = make_trainer(
        student_like(tiny_classifier, seed=999), tiny_classifier, tmp_path / "cut", dataset=dataset, **overrides
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-4"))
    resumed_logs = [entry for entry in resumed.state.log_history if "loss" in entry]

    assert [entry["step"] for entry in resumed_logs] == [entry["step"] for entry in full_logs]
    for a, b in zip(full_logs, resumed_logs):
        for key in ("loss", "loss_kd", "loss_task", "loss_cos"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


# ---- tiny students and unlabelled rows (transfer sets) ----------------------------------------------------------


def unlabelled_rows(num_rows: int = 32, seed: int = 21):
    """Rows of which about half have no gold label (`labels == -100`), as in a transfer set."""
    dataset = random_token_dataset(num_rows, seed=seed)
    return dataset.map(
        lambda row, i: {"labels": row["labels"] if i % 2 == 0 or i % 7 == 0 else -100}, with_indices=True
    )


@pytest.mark.parametrize("student_type", ["bilstm", "textcnn"])
def test_task_loss_counts_only_labelled_rows_and_kd_every_row(student_type, tiny_classifier, tmp_path):
    """Rows without a gold label (-100) must not enter the task loss (a mean over all rows dilutes it by the share of
    unlabelled rows), while the soft targets cover every row; a batch with no labelled row gives 0, not NaN."""
    from hf_distill import make_tiny_student

    teacher = tiny_classifier
    torch.manual_seed(0)
    student = make_tiny_student(teacher, student_type, dropout=0.0)
    trainer = make_trainer(student, teacher, tmp_path, alpha_cos=0.0, alpha_mse=0.5)
    rows = unlabelled_rows(8)
    batch = pad_collate([rows[i] for i in range(8)])
    _, parts = one_batch_loss(trainer, batch)
    labelled = batch["labels"] != -100
    assert 0 < int(labelled.sum()) < 8
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert parts["task"] == pytest.approx(
        torch.nn.functional.cross_entropy(s[labelled], batch["labels"][labelled]).item(), rel=1e-5
    )
    assert parts["kd"] == pytest.approx(kd_loss(s, t, temperature=2.0).item(), rel=1e-5)
    assert parts["mse"] == pytest.approx(mse_loss(s, t).item(), rel=1e-5)

    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss, parts = one_batch_loss(trainer, batch)
    assert parts["task"] == 0.0 and math.isfinite(loss.item())


def test_gradient_accumulation_is_exact_with_unlabelled_rows(tiny_classifier, tmp_path):
    """Micro-batches of a transfer set hold different numbers of labelled rows; a task term averaged per micro-batch
    weighs a lone labelled row like a full batch of them. 8 x 1 and 2 x 4 must agree."""
    from hf_distill import make_tiny_student

    dataset = unlabelled_rows(32)
    runs = {}
    for batch_size, accumulation in ((8, 1), (2, 4)):
        torch.manual_seed(0)
        student = make_tiny_student(tiny_classifier, "bilstm", dropout=0.0)
        trainer = make_trainer(
            student,
            tiny_classifier,
            tmp_path / f"{batch_size}x{accumulation}",
            dataset=dataset,
            alpha_cos=0.0,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=3,
        )
        runs[(batch_size, accumulation)] = (train_logs(trainer), trainer.model.state_dict())
    (logs_a, weights_a), (logs_b, weights_b) = runs[(8, 1)], runs[(2, 4)]
    for a, b in zip(logs_a, logs_b):
        for key in ("loss", "loss_kd", "loss_task"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("cached", [False, True])
def test_cosine_term_is_refused_for_tiny_students_before_any_work(cached, tiny_classifier, tmp_path):
    """A BiLSTM has no hidden states comparable to the teacher's; without a check, alpha_cos > 0 (the default) fails
    at the first step, or worse, compares unrelated vectors. The error comes before the output dir exists."""
    from hf_distill import cache_teacher_outputs, make_tiny_student

    student = make_tiny_student(tiny_classifier, "textcnn")
    dataset = random_token_dataset(8)
    teacher = tiny_classifier
    if cached:
        dataset = cache_teacher_outputs(
            tiny_classifier,
            dataset,
            data_collator=pad_collate,
            hidden_states=True,
            cache_file_name=str(tmp_path / "cache" / "outputs.arrow"),
        )
        teacher = None
    with pytest.raises(ValueError, match="alpha_cos > 0 .*TextCNNForSequenceClassification.*alpha_cos=0"):
        make_trainer(student, teacher, tmp_path, dataset=dataset)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="gradient_checkpointing=True, but TextCNNForSequenceClassification"):
        make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_cos=0.0, gradient_checkpointing=True)
    assert not (tmp_path / "out").exists()
    trainer = make_trainer(student, teacher, tmp_path, dataset=dataset, alpha_cos=0.0, max_steps=2)
    logs = train_logs(trainer)
    assert {"loss_kd", "loss_task"} <= set(logs[-1]) and "loss_cos" not in logs[-1]

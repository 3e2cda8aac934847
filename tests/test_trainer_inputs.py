"""What each model is given and what comes back: teacher-only columns, tuple outputs, padding, steps without labels,
custom label columns."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    TrainerCallback,
)

from hf_distill import DistillationTrainer, DistillationTrainingArguments
from hf_distill.losses import pkd_loss

from .conftest import VOCAB_SIZE, pad_collate, random_token_dataset, target_label_rows, tiny_bert_config
from .test_trainer import make_args, one_batch_loss, student_like


def _pad(features: list[dict], length: int, *, token_labels: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad every row to `length` (pad id 0, mask 0, token labels -100), whatever the natural length."""
    batch: dict[str, list] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
    for f in features:
        pad = length - len(f["input_ids"])
        batch["input_ids"].append(list(f["input_ids"]) + [0] * pad)
        batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        batch["token_type_ids"].append([0] * length)
        for key in ("labels", "start_positions", "end_positions"):
            if key in f:
                value = f[key]
                batch.setdefault(key, []).append(list(value) + [-100] * pad if token_labels else value)
    return {k: torch.tensor(v) for k, v in batch.items()}


def _multi_label_rows(n: int, num_labels: int = 4) -> list[dict]:
    rows = random_token_dataset(n, seed=5, label_kind=None)
    generator = torch.Generator().manual_seed(9)
    labels = (torch.rand((n, num_labels), generator=generator) > 0.5).float().tolist()
    return [{"input_ids": rows[i]["input_ids"], "labels": labels[i]} for i in range(n)]


def _choice_batch(length: int, rows: list[dict], choices: int = 3) -> dict[str, torch.Tensor]:
    flat = _pad(rows[: 2 * choices], length)
    batch = {k: v.view(2, choices, -1) for k, v in flat.items() if k != "labels"}
    batch["labels"] = torch.tensor([0, 2])
    return batch


# head name -> (model class, config overrides, rows maker, terms expected to be padding-invariant)
HEADS = {
    "sequence": (BertForSequenceClassification, {"num_labels": 3}, lambda: random_token_dataset(6, seed=3)),
    "regression": (
        BertForSequenceClassification,
        {"num_labels": 1},
        lambda: random_token_dataset(6, label_kind="float"),
    ),
    "multi_label": (
        BertForSequenceClassification,
        {"num_labels": 4, "problem_type": "multi_label_classification"},
        lambda: _multi_label_rows(6),
    ),
    "token": (BertForTokenClassification, {"num_labels": 3}, lambda: random_token_dataset(6, label_kind="token")),
    "masked_lm": (BertForMaskedLM, {}, lambda: random_token_dataset(6, label_kind="mlm")),
    "question_answering": (BertForQuestionAnswering, {}, lambda: random_token_dataset(6, label_kind="span")),
    "multiple_choice": (BertForMultipleChoice, {}, lambda: random_token_dataset(6, seed=4, label_kind=None)),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_term_on_every_head_is_padding_invariant(head, tmp_path):
    """A term averaged over padding positions (as `loss_mse` on question answering was) changes with the batch's
    padding length: the same examples padded to 14 or 32 tokens gave 0.0028 and 0.0012. Every distillation term must
    be the same however far a batch is padded, the layer terms included (multiple choice, whose encoder runs on
    (batch x choices) sequences, crashed them with a mask of the wrong shape). The task term is the model's own loss,
    as in `Trainer`; transformers' question-answering loss takes its softmax over padding positions too, so it is
    left out for that head alone."""
    cls, overrides, rows_maker = HEADS[head]
    torch.manual_seed(0)
    teacher = cls(tiny_bert_config(**overrides)).eval()
    student = student_like(teacher)
    rows = list(rows_maker())
    weights = dict(alpha_kd=1.0, alpha_task=1.0, alpha_cos=1.0, alpha_mse=1.0, alpha_hint=1.0, alpha_attn=1.0)
    weights.update(alpha_rel=1.0, attn_loss="kl")
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=make_args(tmp_path, **weights), data_collator=pad_collate
    )
    longest = max(len(r["input_ids"]) for r in rows)
    if head == "multiple_choice":
        short, long = _choice_batch(longest, rows), _choice_batch(longest + 13, rows)
    else:
        token_labels = head in ("token", "masked_lm")
        short = _pad(rows, longest, token_labels=token_labels)
        long = _pad(rows, longest + 13, token_labels=token_labels)
    _, parts_short = one_batch_loss(trainer, short)
    _, parts_long = one_batch_loss(trainer, long)
    expected = {"kd", "cos", "mse", "hint", "attn", "rel"} | ({"task"} if head != "question_answering" else set())
    assert expected <= set(parts_short)
    for name in sorted(expected):
        assert parts_long[name] == pytest.approx(parts_short[name], rel=1e-5, abs=1e-7), (head, name)


@pytest.mark.parametrize("head", ["token", "masked_lm"])
def test_a_step_without_label_positions_is_zero_not_nan(head, tmp_path):
    """A step whose labels are all -100 divided the KD sum by a label count of 0: `loss_kd` was NaN and the loss
    NaN (logged as 0.0 by Trainer's NaN filter). Each term of such a step must be 0 and finite."""
    cls, overrides, rows_maker = HEADS[head]
    torch.manual_seed(0)
    teacher = cls(tiny_bert_config(**overrides)).eval()
    rows = list(rows_maker())
    for row in rows:
        row["labels"] = [-100] * len(row["labels"])
    trainer = DistillationTrainer(
        model=student_like(teacher), teacher_model=teacher, args=make_args(tmp_path), data_collator=pad_collate
    )
    loss, parts = one_batch_loss(trainer, pad_collate(rows))
    assert torch.isfinite(loss), loss
    assert all(value == value for value in parts.values()), parts  # no NaN
    assert parts["kd"] == 0.0 and parts["task"] == 0.0
    loss.backward()  # the graph survives a zero step

    # Through the training loop too: a whole run on unlabelled-position rows logs finite terms.
    dataset = Dataset.from_list(rows)
    trainer = DistillationTrainer(
        model=student_like(teacher),
        teacher_model=teacher,
        args=make_args(tmp_path, per_device_train_batch_size=2, max_steps=2),
        train_dataset=dataset,
        data_collator=pad_collate,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_kd" in entry]
    assert logs and all(entry["loss_kd"] == 0.0 for entry in logs)


def _pair_rows(n: int = 16) -> Dataset:
    generator = torch.Generator().manual_seed(11)
    rows: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        first, second = (
            int(torch.randint(2, 6, (1,), generator=generator)),
            int(torch.randint(2, 6, (1,), generator=generator)),
        )
        ids = torch.randint(1, VOCAB_SIZE, (first + second,), generator=generator).tolist()
        rows["input_ids"].append(ids)
        rows["token_type_ids"].append([0] * first + [1] * second)
        rows["attention_mask"].append([1] * (first + second))
        rows["labels"].append(int(torch.randint(0, 2, (1,), generator=generator)))
    return Dataset.from_dict(rows)


def _pad_pairs(features: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(f["input_ids"]) for f in features)
    batch = {
        key: [list(f[key]) + [0] * (longest - len(f[key])) for f in features] for key in features[0] if key != "labels"
    }
    batch["labels"] = [f["labels"] for f in features]
    return {k: torch.tensor(v) for k, v in batch.items()}


def test_teacher_gets_its_own_inputs_when_the_student_takes_fewer(tmp_path):
    """`remove_unused_columns` kept only the student's inputs: a BERT teacher paired with a DistilBERT student never
    received `token_type_ids` on sentence pairs and scored inputs it was never trained on. The teacher must get the
    columns its forward takes, and the student (which has no `token_type_ids`) only its own."""
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=2, type_vocab_size=2)).eval()
    student = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=VOCAB_SIZE, dim=32, n_layers=1, n_heads=2, hidden_dim=37, num_labels=2)
    )
    seen: dict[str, set[str]] = {"teacher": set(), "student": set()}
    teacher_forward, student_forward = teacher.forward, student.forward

    def record(name, forward):
        def wrapped(*args, **kwargs):
            seen[name] |= {k for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
            return forward(*args, **kwargs)

        wrapped.__signature__ = inspect.signature(forward)
        return wrapped

    teacher.forward = record("teacher", teacher_forward)
    student.forward = record("student", student_forward)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, max_steps=2, alpha_cos=0.0),
        train_dataset=_pair_rows(),
        eval_dataset=_pair_rows(8),
        data_collator=_pad_pairs,
    )
    trainer.train()
    assert "token_type_ids" in seen["teacher"], seen
    assert "token_type_ids" not in seen["student"], seen
    metrics = trainer.evaluate()  # the student is evaluated on its own inputs too
    assert "eval_loss" in metrics
    assert "token_type_ids" not in seen["student"], seen


@pytest.mark.parametrize("weights", [{}, {"alpha_cos": 0.0}, {"alpha_kd": 0.0, "alpha_cos": 0.0}])
def test_models_configured_to_return_tuples_train(weights, tmp_path):
    """`return_dict=False` models crashed with `'tuple' object has no attribute 'get'` at the teacher outputs,
    whatever the weights, where plain `Trainer` trains them; they must train and log every active term."""
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3, return_dict=False)).eval()
    student = student_like(teacher)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, max_steps=2, **weights),
        train_dataset=random_token_dataset(16),
        eval_dataset=random_token_dataset(8, seed=2),
        data_collator=pad_collate,
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and "loss_task" in logged[-1]
    assert ("loss_kd" in logged[-1]) == (weights.get("alpha_kd", 5.0) > 0)
    assert "eval_loss" in trainer.evaluate()
    assert teacher.config.return_dict is False and student.config.return_dict is False  # the user's config kept


def test_a_custom_label_column_gets_a_clear_error(tiny_classifier, tmp_path):
    """`label_names=["target"]` failed with `KeyError: 'loss'` deep in the task term. The error must say the student
    returned no loss, name the inputs it received and the label names, and give the fix."""
    rows, collate = target_label_rows(16)

    trainer = DistillationTrainer(
        model=student_like(tiny_classifier),
        teacher_model=tiny_classifier,
        args=make_args(tmp_path, label_names=["target"]),
        train_dataset=rows,
        data_collator=collate,
    )
    with pytest.raises(ValueError) as raised:
        trainer.train()
    message = str(raised.value)
    assert "returned no loss" in message and "'target'" in message and "rename the label column" in message
    assert not (tmp_path / "out" / "checkpoint-1").exists()


def test_teacher_path_without_the_task_head_is_refused(tiny_classifier, tmp_path):
    """A teacher path holding a base `BertModel` (or a masked-LM checkpoint) was loaded with the student's Auto
    class and its classifier initialised at random: a random teacher, with only transformers' load report to show
    it. It must be refused, naming the missing weights, before anything is created."""
    from transformers import BertModel

    base_dir = tmp_path / "base"
    BertModel(tiny_bert_config()).save_pretrained(base_dir)
    with pytest.raises(ValueError, match=r"no weights for \['classifier.bias', 'classifier.weight'\]"):
        DistillationTrainer(
            model=student_like(tiny_classifier),
            teacher_model=str(base_dir),
            args=make_args(tmp_path),
            train_dataset=random_token_dataset(8),
            data_collator=pad_collate,
        )
    assert not (tmp_path / "out").exists()
    # The same directory with its head saved loads fine.
    full_dir = tmp_path / "full"
    tiny_classifier.save_pretrained(full_dir)
    trainer = DistillationTrainer(
        model=student_like(tiny_classifier),
        teacher_model=str(full_dir),
        args=make_args(tmp_path),
        train_dataset=random_token_dataset(8),
        data_collator=pad_collate,
    )
    torch.testing.assert_close(trainer.teacher_model.classifier.weight, tiny_classifier.classifier.weight)


def test_missing_local_teacher_path_says_so(tiny_classifier, tmp_path):
    """A local path that does not exist got a Hub repo-id error; the message must say the path is missing."""
    with pytest.raises(ValueError, match="does not exist"):
        DistillationTrainer(
            model=student_like(tiny_classifier),
            teacher_model=str(tmp_path / "no" / "such" / "teacher"),
            args=make_args(tmp_path),
        )


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.parametrize("spelling", ["true", "True"])
def test_resume_from_checkpoint_accepts_the_command_line_spelling(spelling, tiny_classifier, tmp_path):
    """`--resume_from_checkpoint true` arrives as the string "true" and was taken as a path named "true", with an
    error telling the user to pass True, which they had. It must resume from the newest checkpoint."""
    args = dict(max_steps=4, save_strategy="steps", save_steps=2)
    first = DistillationTrainer(
        model=student_like(tiny_classifier),
        teacher_model=tiny_classifier,
        args=make_args(tmp_path, **args),
        train_dataset=random_token_dataset(32),
        data_collator=pad_collate,
    )
    first.train()
    resumed = DistillationTrainer(
        model=student_like(tiny_classifier),
        teacher_model=copy.deepcopy(tiny_classifier),
        args=make_args(tmp_path, max_steps=6, save_strategy="steps", save_steps=2),
        train_dataset=random_token_dataset(32),
        data_collator=pad_collate,
    )
    steps = CountSteps()
    resumed.add_callback(steps)
    resumed.train(resume_from_checkpoint=spelling)
    # Resumed from checkpoint-4: only steps 5 and 6 were trained in this run.
    assert resumed.state.global_step == 6 and steps.steps == [5, 6]


def test_numeric_types_users_pass_are_accepted(tmp_path):
    """`numpy.float32(2.0)` or a 0-d tensor as a temperature or weight was refused as "not a number"."""
    import numpy as np

    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "o"),
        temperature=np.float32(3.0),
        alpha_kd=torch.tensor(2.0),
        alpha_task=1,
        report_to="none",
    )
    from hf_distill.arguments import distillation_settings

    temperature, weights = distillation_settings(args)
    assert temperature == 3.0 and weights["kd"] == 2.0 and weights["task"] == 1.0
    assert isinstance(temperature, float)


@pytest.mark.parametrize("temperature", [0.01, 1000.0])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_values_at_the_edges_of_validation_never_give_nan(temperature, scale, tiny_classifier, tmp_path):
    """A value that passes validation must never produce NaN at the first step: the extreme temperatures accepted,
    with large logits and the largest accepted weight, give a finite loss and finite gradients."""
    teacher = copy.deepcopy(tiny_classifier)
    with torch.no_grad():
        teacher.classifier.weight.mul_(scale)
    trainer = DistillationTrainer(
        model=student_like(teacher),
        teacher_model=teacher,
        args=make_args(tmp_path, temperature=temperature, alpha_kd=1e6, alpha_mse=1e6),
        data_collator=pad_collate,
    )
    loss, parts = one_batch_loss(trainer, pad_collate([random_token_dataset(6)[i] for i in range(6)]))
    assert torch.isfinite(loss), (loss, parts)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.model.parameters() if p.grad is not None)


class PlainClassifier(torch.nn.Module):
    """A classifier without `config` (a plain `nn.Module`, as `Trainer` accepts), returning a dict."""

    def __init__(self, seed: int, hidden: int = 16, with_hidden_states: bool = True, as_tuple: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(VOCAB_SIZE, hidden)
        self.head = torch.nn.Linear(hidden, 3)
        self.with_hidden_states, self.as_tuple = with_hidden_states, as_tuple

    def forward(self, input_ids, attention_mask=None, labels=None, output_hidden_states=False):
        hidden = self.embed(input_ids)
        mask = attention_mask.unsqueeze(-1).float() if attention_mask is not None else torch.ones_like(hidden[..., :1])
        logits = self.head((hidden * mask).sum(1) / mask.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        if self.as_tuple:
            return (loss, logits) if loss is not None else (logits,)
        out = {"loss": loss, "logits": logits}
        if output_hidden_states and self.with_hidden_states:
            out["hidden_states"] = (hidden,)
        return out


def _plain_trainer(tmp_path, student, teacher, **overrides):
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, max_steps=2, **overrides),
        train_dataset=random_token_dataset(16),
        data_collator=pad_collate,
    )


def test_models_without_a_config_train(tmp_path):
    """A model without `.config` got an `AttributeError` from the checks, although `Trainer` trains such modules and
    the signature accepts them. With named outputs it must distil with every term."""
    trainer = _plain_trainer(tmp_path, PlainClassifier(1), PlainClassifier(0))
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    assert {"loss_kd", "loss_task", "loss_cos"} <= set(logged)


def test_unnamed_outputs_and_missing_hidden_states_get_clear_errors(tmp_path):
    """Tuple outputs of a plain module, or outputs without `hidden_states` while `alpha_cos > 0`, gave raw
    `KeyError`s; the error must name the term or the output, the model and the fix."""
    with pytest.raises(ValueError, match="returned a tuple, whose parts have no names"):
        _plain_trainer(tmp_path, PlainClassifier(1, as_tuple=True), PlainClassifier(0)).train()
    with pytest.raises(ValueError, match="alpha_cos > 0 needs the student's hidden states"):
        _plain_trainer(tmp_path, PlainClassifier(1, with_hidden_states=False), PlainClassifier(0)).train()
    with pytest.raises(ValueError, match="alpha_cos > 0 needs the teacher's hidden states"):
        _plain_trainer(tmp_path, PlainClassifier(1), PlainClassifier(0, with_hidden_states=False)).train()
    # With alpha_cos = 0 the same models train.
    _plain_trainer(tmp_path, PlainClassifier(1, with_hidden_states=False), PlainClassifier(0), alpha_cos=0.0).train()


def test_evaluate_before_train_prepares_the_student_like_trainer(tiny_classifier, tmp_path):
    """The teacher was prepared into the accelerator at construction, and `Trainer`'s evaluation loop prepares the
    model only while none is: a student evaluated before distillation ran unprepared (fp32 logits under bf16, no
    `eval_model_preparation_time`). Evaluating first must behave exactly as with `Trainer`."""
    from transformers import Trainer

    dataset = random_token_dataset(8, seed=2)
    common = dict(bf16=True, per_device_eval_batch_size=8)
    plain = Trainer(
        model=student_like(tiny_classifier), args=make_args(tmp_path / "a", **common), data_collator=pad_collate
    )
    ours = DistillationTrainer(
        model=student_like(tiny_classifier),
        teacher_model=tiny_classifier,
        args=make_args(tmp_path / "b", **common),
        data_collator=pad_collate,
    )
    expected, got = plain.predict(dataset), ours.predict(dataset)
    assert set(got.metrics) == set(expected.metrics), set(expected.metrics) ^ set(got.metrics)
    assert "test_model_preparation_time" in got.metrics
    assert got.predictions.dtype == expected.predictions.dtype
    np.testing.assert_allclose(got.predictions, expected.predictions)


def test_a_plain_module_student_distils_from_a_transformers_teacher(tiny_classifier, tmp_path):
    """A plain `nn.Module` student was refused as "a different head" (with a garbled `AutoModelModel` hint), though
    the signature accepts it. With named outputs of the teacher's shapes it must distil."""
    trainer = _plain_trainer(tmp_path, PlainClassifier(1), tiny_classifier, alpha_cos=0.0)
    trainer.train()
    assert any("loss_kd" in entry for entry in trainer.state.log_history)


def test_numpy_settings_still_serialise(tmp_path):
    """`temperature=numpy.float32(3.0)` passed validation but broke `args.to_json_string()` (called by TensorBoard
    and the Hub card); values are stored as the floats they equal."""
    import json

    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "o"), temperature=np.float32(3.0), alpha_kd=torch.tensor(2.0), report_to="none"
    )
    saved = json.loads(args.to_json_string())
    assert saved["temperature"] == 3.0 and saved["alpha_kd"] == 2.0


def test_a_compute_loss_func_written_for_trainer_gets_its_item_count(tiny_classifier, tmp_path):
    """`compute_loss_func` was always called with `num_items_in_batch=None`, so a function written for `Trainer`'s
    contract (a sum divided by the count) crashed; it must get the accumulated batch's label count, as in `Trainer`,
    and then train exactly like a model-loss run under gradient accumulation."""

    def summed_ce(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs["logits"], labels, reduction="sum") / num_items_in_batch

    runs = {}
    for name, extra in (("func", {"compute_loss_func": summed_ce}), ("model", {})):
        trainer = DistillationTrainer(
            model=student_like(tiny_classifier),
            teacher_model=tiny_classifier,
            args=make_args(tmp_path / name, per_device_train_batch_size=2, gradient_accumulation_steps=4),
            train_dataset=random_token_dataset(32),
            data_collator=pad_collate,
            **extra,
        )
        trainer.train()
        runs[name] = [e for e in trainer.state.log_history if "loss" in e]
    for a, b in zip(runs["model"], runs["func"]):
        assert b["loss_task"] == pytest.approx(a["loss_task"], rel=1e-5), a["step"]


def test_pkd_hints_on_multiple_choice_average_over_each_examples_choices(tmp_path):
    """PKD's distance between unit vectors is at most 4 per item; summing it over every choice's sequence and
    dividing by the examples gave 5.5 on multiple choice. Each example must count once: the mean over its choices."""
    cls, overrides, rows_maker = HEADS["multiple_choice"]
    torch.manual_seed(0)
    teacher = cls(tiny_bert_config(**overrides)).eval()
    student = student_like(teacher)
    rows = list(rows_maker())
    batch = _choice_batch(max(len(r["input_ids"]) for r in rows), rows)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=make_args(tmp_path, alpha_hint=1.0, hint_loss="pkd"),
        data_collator=pad_collate,
    )  # fmt: skip
    _, parts = one_batch_loss(trainer, batch)
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        s = student.bert(**flat, output_hidden_states=True).hidden_states
        t = teacher.bert(**flat, output_hidden_states=True).hidden_states
    pairs = trainer.layer_plan.hint_pairs
    expected = sum(pkd_loss(s[i][:, 0], t[j][:, 0]).item() for i, j in pairs) / len(pairs)
    assert 0 < parts["hint"] <= 4 and parts["hint"] == pytest.approx(expected, rel=1e-5)

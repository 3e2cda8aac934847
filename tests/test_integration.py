"""Real model, real data: the packaged all-MiniLM-L6-v2 teacher, fine-tuned and distilled on real SST-2 rows."""

from __future__ import annotations

import csv
import random

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from hf_distill import DistillationTrainer, DistillationTrainingArguments, make_student

pytestmark = pytest.mark.integration


def read_sst2(path, limit: int | None = None, seed: int | None = None) -> dict[str, list]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if seed is not None:
        random.Random(seed).shuffle(rows)
    rows = rows[:limit]
    return {"sentence": [r["sentence"] for r in rows], "label": [int(r["label"]) for r in rows]}


def accuracy(model, tokenizer, data: dict[str, list]) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data["label"]), 64):
            batch = tokenizer(data["sentence"][start : start + 64], padding=True, truncation=True, return_tensors="pt")
            predictions = model(**batch).logits.argmax(-1)
            correct += int((predictions == torch.tensor(data["label"][start : start + 64])).sum())
    return correct / len(data["label"])


COMMON = dict(
    per_device_train_batch_size=32,
    num_train_epochs=1,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    seed=0,
    disable_tqdm=True,
)


@pytest.fixture(scope="module")
def sst2_teacher(minilm_path, glue_dir, tmp_path_factory):
    """The packaged MiniLM fine-tuned one epoch on 960 real SST-2 train rows (shared by the tests of this module),
    with its tokenizer, the tokenised rows, their raw text and 200 dev rows."""
    from datasets import Dataset

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    labels = {0: "negative", 1: "positive"}
    teacher = AutoModelForSequenceClassification.from_pretrained(
        minilm_path, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    train = read_sst2(glue_dir / "SST-2" / "train.tsv", limit=960, seed=0)
    dev = read_sst2(glue_dir / "SST-2" / "dev.tsv", limit=200)
    raw = Dataset.from_dict(train)
    train_set = raw.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=64), batched=True)
    train_set = train_set.remove_columns("sentence")
    Trainer(
        model=teacher,
        args=TrainingArguments(output_dir=str(tmp_path_factory.mktemp("teacher")), learning_rate=2e-4, **COMMON),
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
    ).train()
    return teacher.eval(), tokenizer, train_set, raw, dev


def test_minilm_teacher_distils_into_half_depth_student_on_sst2(sst2_teacher, tmp_path):
    """The whole path on real weights and data: a broken layer copy, a teacher that drifts, or a KD loss that does not
    transfer knowledge shows up as a student near chance (50%) or a teacher that changed."""
    teacher, tokenizer, train_set, _, dev = sst2_teacher
    common = COMMON
    collator = DataCollatorWithPadding(tokenizer)
    teacher_accuracy = accuracy(teacher, tokenizer, dev)
    assert teacher_accuracy >= 0.70, f"the fine-tuned teacher should beat chance clearly, got {teacher_accuracy}"

    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = make_student(teacher)
    assert student.config.num_hidden_layers == 3
    assert student.config.distillation["teacher_layers"] == [0, 2, 4]
    student_at_init = accuracy(student, tokenizer, dev)

    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=DistillationTrainingArguments(output_dir=str(tmp_path / "student"), learning_rate=3e-4, **common),
        train_dataset=train_set,
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_kd" in entry]
    student_accuracy = accuracy(student, tokenizer, dev)

    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert logs[-1]["loss_kd"] < logs[0]["loss_kd"], logs
    assert student_accuracy >= 0.65, f"student {student_accuracy} (teacher {teacher_accuracy})"
    assert student_accuracy > student_at_init, (student_at_init, student_accuracy)

    trainer.save_model(str(tmp_path / "final"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    assert reloaded.config.distillation["teacher_layers"] == [0, 2, 4]
    assert accuracy(reloaded, tokenizer, dev) == pytest.approx(student_accuracy)


def test_bilstm_distils_from_a_teacher_labelled_transfer_set_on_sst2(sst2_teacher, tmp_path):
    """Tang et al.'s path on real weights and data: a transfer set whose variants keep gold labels, a cache that pairs
    outputs with other rows, or a BiLSTM that reads padding shows up as a student near chance, a task term over the
    variants, or a teacher that changed."""
    from hf_distill import cache_teacher_outputs, make_tiny_student
    from hf_distill.augment import AugmentationRules, augment_dataset

    teacher, tokenizer, _, raw, dev = sst2_teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    transfer = augment_dataset(
        raw,
        text_columns=["sentence"],
        mask_token=tokenizer.mask_token,
        rules=AugmentationRules(n_iter=2, seed=0),
        protected_tokens=tokenizer.all_special_tokens,
    )
    assert len(transfer) > 1.5 * len(raw) and transfer["label"].count(-100) == len(transfer) - len(raw)
    transfer = transfer.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=64), batched=True)
    collator = DataCollatorWithPadding(tokenizer)
    cached = cache_teacher_outputs(
        teacher,
        transfer.remove_columns("sentence"),
        data_collator=collator,
        cache_file_name=str(tmp_path / "cache" / "outputs.arrow"),
    )
    torch.manual_seed(0)
    student = make_tiny_student(teacher, "bilstm")
    at_init = accuracy(student, tokenizer, dev)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=None,
        args=DistillationTrainingArguments(
            output_dir=str(tmp_path / "bilstm"), learning_rate=1e-3, alpha_cos=0.0, **{**COMMON, "num_train_epochs": 2}
        ),
        train_dataset=cached,
        data_collator=collator,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_kd" in entry]
    student_accuracy = accuracy(student, tokenizer, dev)

    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert logs[-1]["loss_kd"] < logs[0]["loss_kd"], logs
    assert student_accuracy >= 0.62, f"BiLSTM {student_accuracy} (at init {at_init})"
    trainer.save_model(str(tmp_path / "final"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    assert type(reloaded).__name__ == "BiLSTMForSequenceClassification"
    assert accuracy(reloaded, tokenizer, dev) == pytest.approx(student_accuracy)

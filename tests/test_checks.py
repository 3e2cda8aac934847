"""The bad-input catalogue: every entry of docs/bad_inputs.md raises its documented error before training, and the
document lists exactly the cases tested here."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    AutoTokenizer,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    DataCollatorForLanguageModeling,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    TrainingArguments,
)

from hf_distill import (
    BiLSTMConfig,
    DistillationTrainer,
    DistillationTrainingArguments,
    cache_teacher_outputs,
    heads_to_prune,
    make_student,
    make_tiny_student,
    prune_heads,
    quantize,
)
from hf_distill.augment import AugmentationRules, augment_dataset, spacy_pos_tagger
from hf_distill.checks import (
    check_augment_flags,
    check_label_order,
    check_max_seq_length,
    check_push_arguments,
    check_run_flags,
    check_same_tokenization,
    check_student_flags,
    plan_resume,
)
from hf_distill.compare import check_compare_arguments
from hf_distill.compression import check_compression_flags
from hf_distill.glue import get_task, load_glue, tokenize_glue
from hf_distill.masking import MaskedLMCollator, check_masking_workers
from hf_distill.student import check_student_layers, freeze_position_embeddings
from hf_distill.teachers import (
    TEACHER_DONE_FILE,
    check_teacher_reuse,
    load_masked_lm,
    load_task_model,
    warn_if_near_chance,
)
from hf_distill.text_corpus import load_text_corpus, tokenize_corpus

from .conftest import REPO_ROOT, pad_collate, random_token_dataset, target_label_rows, tiny_bert_config

CATALOGUE = REPO_ROOT / "docs" / "bad_inputs.md"


def _teacher(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_labels=3, **overrides))


def _student(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(1)
    return BertForSequenceClassification(tiny_bert_config(num_labels=3, num_hidden_layers=2, **overrides))


def _trainer(tmp_path, *, teacher=None, student=None, dataset=None, **args):
    return DistillationTrainer(
        model=student if student is not None else _student(),
        teacher_model=teacher if teacher is not None else _teacher(),
        args=DistillationTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **args),
        train_dataset=dataset if dataset is not None else random_token_dataset(16),
        data_collator=pad_collate,
    )


def _args(tmp_path, **values):
    return DistillationTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", **values)


def _word_tokenizer(tmp_path, words: list[str]) -> BertTokenizerFast:
    """A word-level BERT tokenizer over a tiny vocabulary, built in process."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)})


def _case_output_dir_is_a_file(tmp_path):
    # A file where the output directory should be (a permission test would pass as root, where CI may run).
    target = tmp_path / "results.txt"
    target.write_text("the user's file\n")
    try:
        DistillationTrainer(
            model=_student(),
            teacher_model=_teacher(),
            args=DistillationTrainingArguments(output_dir=str(target), report_to="none"),
        )
    finally:
        assert target.read_text() == "the user's file\n"


def _case_output_dir_unwritable(tmp_path):
    # Permission bits do not bind root (CI may run as root), so the permission answer itself is simulated.
    from unittest import mock

    with mock.patch("hf_distill.checks.os.access", return_value=False):
        _trainer(tmp_path)


def _case_unlabelled_batches(tmp_path):
    trainer = _trainer(tmp_path, dataset=list(random_token_dataset(16, label_kind=None)))
    trainer.train()


def _case_nan_teacher(tmp_path):
    teacher = _teacher()
    with torch.no_grad():
        teacher.classifier.weight.fill_(math.nan)
    _trainer(tmp_path, teacher=teacher, max_steps=1).train()


def _glue_dir_missing_task(tmp_path):
    (tmp_path / "glue").mkdir()
    load_glue(get_task("rte"), glue_dir=tmp_path / "glue")


def _case_teacher_without_head(tmp_path):
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    return _trainer(tmp_path, teacher=str(tmp_path / "base"))


def _case_mlm_teacher_without_head(tmp_path):
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    return load_masked_lm(str(tmp_path / "base"))


def _case_student_returns_no_loss(tmp_path):
    rows, collate = target_label_rows(8)

    trainer = DistillationTrainer(
        model=_student(),
        teacher_model=_teacher(),
        args=_args(tmp_path, label_names=["target"], use_cpu=True, max_steps=1),
        train_dataset=rows,
        data_collator=collate,
    )
    trainer.train()


def _case_teacher_reuse(tmp_path):
    teacher_dir = tmp_path / "_teacher"
    teacher_dir.mkdir()
    (teacher_dir / TEACHER_DONE_FILE).write_text(json.dumps({"settings": {"task": "mrpc", "epochs": 1.0}}))
    check_teacher_reuse(teacher_dir, {"task": "rte", "epochs": 1.0})


def _case_recipe_teacher_without_head(tmp_path):
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    load_task_model(str(tmp_path / "base"), get_task("rte"), require_head=True)


def _case_finished_output_dir(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")
    plan_resume(tmp_path / "run", None)


def _case_position_limit(tmp_path):
    tokenizer = _word_tokenizer(tmp_path, ["good"])
    check_max_seq_length(256, tokenizer, _teacher())  # the tiny teacher has 64 positions


def _case_generic_label_count(tmp_path):
    BertForSequenceClassification(tiny_bert_config(num_labels=3)).save_pretrained(tmp_path / "three")
    load_task_model(str(tmp_path / "three"), get_task("rte"), require_head=True)


def _tokenize(tmp_path, texts: list[str], max_seq_length: int = 32):
    tokenizer = _word_tokenizer(tmp_path, ["good", "bad"])
    tokenizer.model_max_length = 64
    raw = {"train": Dataset.from_dict({"sentence": texts, "label": [0] * len(texts)})}
    from datasets import DatasetDict

    tokenize_glue(DatasetDict(raw), get_task("sst2"), tokenizer, max_seq_length=max_seq_length)


# (case id, where, callable(tmp_path), literal fragment of the error message)
def _cached(tmp_path, *, hidden_states: bool = False) -> Dataset:
    return cache_teacher_outputs(_teacher(), random_token_dataset(16), hidden_states=hidden_states)


def _cached_trainer(tmp_path, dataset=None, *, student=None, data_collator=pad_collate, **args):
    return DistillationTrainer(
        model=student if student is not None else _student(),
        args=DistillationTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **args),
        train_dataset=dataset if dataset is not None else _cached(tmp_path),
        data_collator=data_collator,
    )


def _case_cache_shape(tmp_path):
    student = BertForSequenceClassification(tiny_bert_config(num_labels=2, num_hidden_layers=2))
    _cached_trainer(tmp_path, student=student, alpha_cos=0.0)


def _case_cache_masking_collator(tmp_path):
    tokenizer = _word_tokenizer(tmp_path, ["a", "b"])
    _cached_trainer(tmp_path, data_collator=DataCollatorForLanguageModeling(tokenizer), alpha_cos=0.0)


def _case_cache_changed(tmp_path):
    changed = _cached(tmp_path).map(lambda row: {"input_ids": row["input_ids"][:-1]})
    _cached_trainer(tmp_path, changed, alpha_cos=0.0, max_steps=1).train()


def _route(tmp_path, count: int = 2) -> list[str]:
    paths = []
    for step in range(count):
        path = tmp_path / "route" / f"checkpoint-{step + 1}"
        _teacher().save_pretrained(path)
        paths.append(str(path))
    return paths


def _case_route_switch_late(tmp_path):
    _trainer(tmp_path, teacher=_route(tmp_path), teacher_route=True, route_switch_steps=[50], max_steps=4)


def _case_cotrain_optimizer(tmp_path):
    student = _student()
    DistillationTrainer(
        model=student,
        teacher_model=_teacher(),
        args=_args(tmp_path, cotrain_teacher=True, use_cpu=True),
        train_dataset=random_token_dataset(16),
        data_collator=pad_collate,
        optimizers=(torch.optim.AdamW(student.parameters()), None),
    )


def _case_cotrain_frozen(tmp_path):
    _trainer(tmp_path, teacher=_teacher().requires_grad_(False), cotrain_teacher=True)


def _case_layer_terms_cached(tmp_path):
    DistillationTrainer(
        model=_student(),
        teacher_model=None,
        args=_args(tmp_path, alpha_cos=0.0, alpha_hint=1.0),
        train_dataset=cache_teacher_outputs(_teacher(), random_token_dataset(8)),
        data_collator=pad_collate,
    )


def _case_attention_unsupported(tmp_path):
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    config = ModernBertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=3, pad_token_id=0,
    )  # fmt: skip
    teacher = ModernBertForSequenceClassification(config)
    _trainer(tmp_path, teacher=teacher, student=copy.deepcopy(teacher), alpha_attn=1.0)


def _case_projections_user_optimizer(tmp_path):
    student = _student(hidden_size=16, intermediate_size=20)
    DistillationTrainer(
        model=student,
        teacher_model=_teacher(),
        args=_args(tmp_path, alpha_cos=0.0, alpha_hint=1.0),
        train_dataset=random_token_dataset(8),
        data_collator=pad_collate,
        optimizers=(torch.optim.SGD(student.parameters(), lr=0.1), None),
    )


CASES = [
    ("temperature-zero", "arguments", lambda t: _args(t, temperature=0.0), "temperature must be a positive finite"),
    (
        "temperature-nan",
        "arguments",
        lambda t: _args(t, temperature=math.nan),
        "temperature must be a positive finite",
    ),
    ("weight-negative", "arguments", lambda t: _args(t, alpha_kd=-1.0), "alpha_kd must be >= 0, got -1.0"),
    ("weight-not-finite", "arguments", lambda t: _args(t, alpha_cos=math.inf), "alpha_cos must be a finite number"),
    (
        "temperature-out-of-range",
        "arguments",
        lambda t: _args(t, temperature=1e-4),
        "temperature must be between 0.01 and 1000",
    ),
    ("weight-too-large", "arguments", lambda t: _args(t, alpha_kd=1e9), "alpha_kd must be at most 1e+06"),
    (
        "batch-size-not-positive",
        "arguments",
        lambda t: _args(t, per_device_train_batch_size=0),
        "per_device_train_batch_size must be a positive integer",
    ),
    (
        "weights-all-zero",
        "arguments",
        lambda t: _args(t, alpha_kd=0, alpha_task=0, alpha_cos=0, alpha_mse=0),
        "all loss weights are 0",
    ),
    (
        "no-teacher",
        "trainer",
        lambda t: DistillationTrainer(model=_student(), args=_args(t)),
        "DistillationTrainer needs a teacher",
    ),
    (
        "no-student",
        "trainer",
        lambda t: DistillationTrainer(teacher_model=_teacher(), args=_args(t)),
        "needs the student as `model`",
    ),
    (
        "teacher-path-missing",
        "trainer",
        lambda t: _trainer(t, teacher=str(t / "no" / "such" / "teacher")),
        "does not exist",
    ),
    ("teacher-without-head-weights", "trainer", _case_teacher_without_head, "has no weights for"),
    ("student-returns-no-loss", "trainer", _case_student_returns_no_loss, "returned no loss"),
    (
        "teacher-is-student",
        "trainer",
        lambda t: (lambda m: _trainer(t, teacher=m, student=m))(_teacher()),
        "teacher_model is the student itself",
    ),
    (
        "shared-weights",
        "trainer",
        lambda t: (lambda te: _trainer(t, teacher=te, student=copy.copy(te)))(_teacher()),
        "teacher and student share weights",
    ),
    (
        "different-heads",
        "trainer",
        lambda t: _trainer(t, teacher=BertForMaskedLM(tiny_bert_config())),
        "cannot be matched",
    ),
    ("vocab-mismatch", "trainer", lambda t: _trainer(t, student=_student(vocab_size=120)), "vocab_size"),
    (
        "num-labels-mismatch",
        "trainer",
        lambda t: _trainer(
            t, student=BertForSequenceClassification(tiny_bert_config(num_labels=4, num_hidden_layers=2))
        ),
        "teacher num_labels 3 differs from student num_labels 4",
    ),
    (
        "label-names-mismatch",
        "trainer",
        lambda t: _trainer(
            t,
            teacher=_teacher(id2label={0: "a", 1: "b", 2: "c"}),
            student=_student(id2label={0: "c", 1: "b", 2: "a"}),
        ),
        "teacher id2label",
    ),
    (
        "hidden-size-mismatch",
        "trainer",
        lambda t: _trainer(t, student=_student(hidden_size=16)),
        "alpha_cos > 0 needs equal hidden sizes",
    ),
    (
        "no-label-column",
        "trainer",
        lambda t: _trainer(t, dataset=random_token_dataset(16, label_kind=None)),
        "the training dataset has no label column",
    ),
    ("no-labels-in-batches", "trainer", _case_unlabelled_batches, "the batch carries no labels"),
    (
        "empty-dataset",
        "trainer",
        lambda t: _trainer(t, dataset=random_token_dataset(16).select([])),
        "the training dataset is empty",
    ),
    ("output-dir-is-a-file", "trainer", _case_output_dir_is_a_file, "is a file, not a directory"),
    ("output-dir-unwritable", "trainer", _case_output_dir_unwritable, "cannot be written"),
    ("teacher-nan-outputs", "trainer", _case_nan_teacher, "the teacher produced NaN or inf values"),
    ("layers-out-of-range", "make_student", lambda t: make_student(_teacher(), layers=[0, 4]), "0..3"),
    ("layers-unsorted", "make_student", lambda t: make_student(_teacher(), layers=[2, 0]), "strictly increasing"),
    ("layers-duplicate", "make_student", lambda t: make_student(_teacher(), layers=[1, 1]), "strictly increasing"),
    ("layers-empty", "make_student", lambda t: make_student(_teacher(), layers=[]), "empty"),
    (
        "more-layers-than-teacher",
        "make_student",
        lambda t: make_student(_teacher(), num_layers=5),
        "more layers than its teacher",
    ),
    (
        "unsupported-architecture",
        "make_student",
        lambda t: make_student(GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=99))),
        "gpt2",
    ),
    (
        "tokenizers-differ",
        "checks",
        lambda t: check_same_tokenization(
            _word_tokenizer(t, ["good", "bad"]), _word_tokenizer(t, ["bad", "good", "ok"]), ["good bad"]
        ),
        "tokenize",
    ),
    (
        "label-order-differs",
        "checks",
        lambda t: check_label_order({0: "positive", 1: "negative"}, ["negative", "positive"]),
        "in another order than the dataset's",
    ),
    (
        "teacher-at-chance",
        "recipe --fail_on_chance_teacher",
        lambda t: warn_if_near_chance(get_task("sst2"), {"eval_accuracy": 0.5}, [0, 1, 0, 1], error=True),
        "the teacher is near chance",
    ),
    (
        "teacher-reuse-other-settings",
        "recipe --teacher_finetune_epochs",
        _case_teacher_reuse,
        "holds a teacher fine-tuned with other settings",
    ),
    (
        "teacher-without-head",
        "recipe --teacher_model_name_or_path",
        _case_recipe_teacher_without_head,
        "without a sequence-classification head",
    ),
    (
        "student-layers-before-work",
        "recipe --student_layers",
        lambda t: check_student_layers(tiny_bert_config(), layers=[9]),
        "out of range",
    ),
    (
        "teacher-label-count",
        "recipe --teacher_model_name_or_path",
        _case_generic_label_count,
        "classifies 3 labels but rte has 2",
    ),
    (
        "teacher-finetune-epochs-negative",
        "recipe --teacher_finetune_epochs",
        lambda t: check_run_flags(_args(t), teacher_finetune_epochs=-1.0),
        "--teacher_finetune_epochs must be >= 0",
    ),
    (
        "eval-only-flags",
        "recipe --do_eval",
        lambda t: check_run_flags(_args(t, do_eval=True)),
        "--do_eval without --do_train",
    ),
    (
        "test-file-without-predict",
        "recipe --test_file",
        lambda t: check_run_flags(_args(t), test_file="test.tsv"),
        "add --do_predict",
    ),
    ("finished-output-dir", "recipe --output_dir", _case_finished_output_dir, "already holds a finished run"),
    (
        "resume-without-checkpoint",
        "recipe --resume_from_checkpoint",
        lambda t: plan_resume(t / "new", "true"),
        "holds no complete checkpoint",
    ),
    ("max-seq-length-positions", "recipe --max_seq_length", _case_position_limit, "position limit (64 tokens)"),
    ("unknown-task", "recipe --task_name", lambda t: get_task("sst3"), "sst3"),
    ("glue-dir-wrong-layout", "recipe --glue_dir", _glue_dir_missing_task, "RTE"),
    (
        "missing-train-split",
        "recipe --glue_dir",
        lambda t: load_glue(get_task("qnli"), glue_dir=REPO_ROOT.parent / "shared" / "data" / "glue"),
        "train_file",
    ),
    ("text-column-empty", "recipe data", lambda t: _tokenize(t, ["", " "]), "is empty in all 2 rows"),
    ("max-seq-length-too-long", "recipe --max_seq_length", lambda t: _tokenize(t, ["good"], 4096), "max_seq_length"),
    (
        "push-without-model-id",
        "recipe --push_to_hub",
        lambda t: check_push_arguments(TrainingArguments(output_dir=str(t / "o"), push_to_hub=True, report_to="none")),
        "--push_to_hub needs --hub_model_id",
    ),
    (
        "cache-and-teacher",
        "trainer",
        lambda t: _trainer(t, dataset=_cached(t)),
        "unclear which to distil from",
    ),
    ("cache-head-mismatch", "trainer", _case_cache_shape, "teacher_logits have 3 outputs"),
    ("cache-cos-without-hidden-states", "trainer", lambda t: _cached_trainer(t), "hidden_states=True"),
    ("cache-masking-collator", "trainer", _case_cache_masking_collator, "masks tokens at random"),
    ("cache-changed-after-caching", "trainer.train", _case_cache_changed, "belong to other input_ids"),
    (
        "ensemble-weight-count",
        "trainer",
        lambda t: _trainer(t, teacher=[_teacher(), _teacher()], teacher_weights=[1.0, 2.0, 3.0], alpha_cos=0.0),
        "teacher_weights has 3 value(s) for 2 teacher(s)",
    ),
    (
        "ensemble-weight-zero",
        "arguments",
        lambda t: _args(t, teacher_weights=[1.0, 0.0]),
        "teacher_weights must all be finite numbers > 0",
    ),
    (
        "ensemble-cos-teacher-missing",
        "trainer",
        lambda t: _trainer(t, teacher=[_teacher(), _teacher()]),
        "needs the one whose hidden states L_cos follows",
    ),
    (
        "ensemble-teacher-differs",
        "trainer",
        lambda t: _trainer(t, teacher=[_teacher(), _teacher(vocab_size=120)], alpha_cos=0.0),
        "teacher 1: teacher vocab_size 120",
    ),
    (
        "route-switches-without-route",
        "arguments",
        lambda t: _args(t, route_switch_steps=[100]),
        "teacher_route is False",
    ),
    (
        "route-one-checkpoint",
        "trainer",
        lambda t: _trainer(t, teacher=_route(t, 1), teacher_route=True),
        "needs at least two checkpoints",
    ),
    ("route-switch-after-end", "trainer", _case_route_switch_late, "every checkpoint must teach"),
    (
        "route-switch-count",
        "trainer",
        lambda t: _trainer(t, teacher=_route(t, 2), teacher_route=True, route_switch_steps=[1, 2]),
        "route_switch_steps has 2 value(s) for a route of 2 checkpoints",
    ),
    ("cotrain-frozen-teacher", "trainer", _case_cotrain_frozen, "every teacher parameter has requires_grad=False"),
    (
        "cotrain-with-route",
        "arguments",
        lambda t: _args(t, cotrain_teacher=True, teacher_route=True),
        "cannot follow a teacher_route",
    ),
    (
        "cotrain-option-without-cotrain",
        "arguments",
        lambda t: _args(t, cotrain_teacher_learning_rate=1e-4),
        "cotrain_teacher is False",
    ),
    (
        "cotrain-without-labels",
        "trainer",
        lambda t: _trainer(t, dataset=random_token_dataset(16, label_kind=None), cotrain_teacher=True, alpha_task=0.0),
        "cotrain_teacher=True needs labels",
    ),
    (
        "cotrain-optimizer-without-teacher",
        "trainer",
        _case_cotrain_optimizer,
        "does not hold the teacher's parameters",
    ),
    (
        "cache-multiple-choice",
        "cache_teacher_outputs",
        lambda t: cache_teacher_outputs(_teacher(), Dataset.from_dict({"input_ids": [[[1, 2], [3, 4]]]})),
        "several per example (multiple choice)",
    ),
    (
        "cache-cos-teacher-not-first",
        "trainer",
        lambda t: _cached_trainer(
            t,
            cache_teacher_outputs([_teacher(), _teacher()], random_token_dataset(16), hidden_states=True),
            cos_teacher=1,
        ),
        "cached hidden states are the first teacher's",
    ),
    (
        "cotrain-with-cache",
        "trainer",
        lambda t: _cached_trainer(t, cotrain_teacher=True, alpha_cos=0.0),
        "needs live teachers",
    ),
    (
        "tiny-student-cos",
        "trainer",
        lambda t: _trainer(t, student=make_tiny_student(_teacher(), "bilstm")),
        "has no hidden states comparable to a transformer's",
    ),
    (
        "tiny-student-gradient-checkpointing",
        "trainer",
        lambda t: _trainer(
            t, student=make_tiny_student(_teacher(), "textcnn"), alpha_cos=0.0, gradient_checkpointing=True
        ),
        "does not support activation checkpointing",
    ),
    (
        "augment-label-column-missing",
        "augment_dataset",
        lambda t: augment_dataset(
            Dataset.from_dict({"sentence": ["a b"], "labels": [0]}),
            text_columns=["sentence"],
            mask_token="[MASK]",
            label_column="target",
        ),
        "is not a column of the dataset",
    ),
    (
        "tiny-student-unknown-field",
        "make_tiny_student",
        lambda t: make_tiny_student(_teacher(), "bilstm", hiden_size=300),
        "has no field ['hiden_size']",
    ),
    (
        "tiny-student-embedding-too-wide",
        "make_tiny_student",
        lambda t: make_tiny_student(_teacher(), "textcnn", embedding_dim=300),
        "is larger than the teacher's embeddings",
    ),
    (
        "tiny-student-token-teacher",
        "make_tiny_student",
        lambda t: make_tiny_student(BertForMaskedLM(tiny_bert_config()), "bilstm"),
        "the tiny students are sequence classifiers",
    ),
    ("tiny-student-config", "config", lambda t: BiLSTMConfig(pooling="mean"), "pooling must be one of"),
    (
        "augment-float-labels",
        "augment_dataset",
        lambda t: augment_dataset(
            Dataset.from_dict({"sentence": ["a b"], "label": [0.5]}), text_columns=["sentence"], mask_token="[MASK]"
        ),
        "pass drop_labels=True",
    ),
    (
        "augment-no-mask-token",
        "augment_dataset",
        lambda t: augment_dataset(
            Dataset.from_dict({"sentence": ["a b"], "label": [0]}), text_columns=["sentence"], mask_token=None
        ),
        "but mask_token is None",
    ),
    (
        "augment-no-tagger",
        "augment_dataset",
        lambda t: spacy_pos_tagger("no_such_spacy_pipeline"),
        "p_pos > 0 needs a part-of-speech tagger",
    ),
    (
        "augment-mask-plus-pos",
        "augment_dataset",
        lambda t: AugmentationRules(p_mask=0.5, p_pos=0.6),
        "p_mask + p_pos must be at most 1",
    ),
    (
        "recipe-student-type-conflict",
        "recipe --student_type",
        lambda t: check_student_flags(
            "bilstm",
            student_path=None,
            layers=[0, 2],
            num_layers=None,
            config_overrides={},
            embedding_init="teacher",
            terms={"kd"},
            alpha_cos_given=False,
        ),
        "--student_layers choose a transformer student",
    ),
    (
        "recipe-student-path-and-layers",
        "recipe --student_layers",
        lambda t: check_student_flags(
            "transformer",
            student_path="students/general",
            layers=[0, 2],
            num_layers=None,
            config_overrides={},
            embedding_init="teacher",
            terms={"kd"},
            alpha_cos_given=False,
        ),
        "gives a ready one; drop one of them",
    ),
    (
        "recipe-tiny-student-cos",
        "recipe --alpha_cos",
        lambda t: check_student_flags(
            "textcnn",
            student_path=None,
            layers=None,
            num_layers=None,
            config_overrides={},
            embedding_init="teacher",
            terms={"kd", "cos"},
            alpha_cos_given=True,
        ),
        "pass --alpha_cos 0",
    ),
    (
        "recipe-augment-regression",
        "recipe --augment",
        lambda t: check_augment_flags(
            2, regression=True, terms={"kd", "task"}, teacher_route=False, cotrain_teacher=False
        ),
        "pass --alpha_task 0",
    ),
    (
        "recipe-augment-route",
        "recipe --augment",
        lambda t: check_augment_flags(2, regression=False, terms={"kd"}, teacher_route=True, cotrain_teacher=False),
        "drop --teacher_route or --augment",
    ),
    ("layer-map-malformed", "arguments", lambda t: _args(t, alpha_hint=1.0, layer_map=["1-2"]), "student:teacher"),
    (
        "layer-map-out-of-range",
        "trainer",
        lambda t: _trainer(t, alpha_hint=1.0, layer_map=["1:5"]),
        "names teacher layer 5, but the teacher has 4 layers",
    ),
    (
        "layer-terms-cached",
        "trainer",
        _case_layer_terms_cached,
        "cached teacher outputs hold the logits",
    ),
    (
        "attention-heads-mismatch",
        "trainer",
        lambda t: _trainer(t, student=_student(num_attention_heads=4), alpha_attn=1.0),
        "matches attention heads one to one",
    ),
    (
        "relation-heads-indivisible",
        "trainer",
        lambda t: _trainer(t, alpha_rel=1.0, relation_heads=3),
        "relation_heads=3 must divide both hidden sizes",
    ),
    ("attention-unsupported-model", "trainer", _case_attention_unsupported, "is supported for"),
    ("hint-projections-user-optimizer", "trainer", _case_projections_user_optimizer, "cannot hold them"),
    ("schedule-malformed", "arguments", lambda t: _args(t, schedules=["alpha_kd:1:steps"]), "has shape 'steps'"),
    (
        "schedule-end-invalid",
        "arguments",
        lambda t: _args(t, schedules=["temperature:0"]),
        "at the end of the schedules",
    ),
    (
        "prune-fraction-out-of-range",
        "recipe --prune_heads",
        lambda t: check_compression_flags(
            int8=False, int8_backend="torch", prune_fractions=[1.5], recovery_epochs=0.0, model_type="bert"
        ),
        "strictly between 0 and 1, got 1.5",
    ),
    (
        "prune-more-heads-than-exist",
        "heads_to_prune",
        lambda t: heads_to_prune(torch.rand(2, 2), 0.9),
        "pruning more heads than exist",
    ),
    ("prune-whole-layer", "prune_heads", lambda t: prune_heads(_teacher(), {0: [0, 1]}), "keep at least one head"),
    (
        "prune-unsupported-model",
        "prune_heads",
        lambda t: prune_heads(
            DistilBertForSequenceClassification(
                DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
            ),
            {0: [0]},
        ),
        "does not support the architecture DistilBertForSequenceClassification",
    ),
    ("int8-unknown-backend", "quantize", lambda t: quantize(_teacher(), "tensorrt"), "got 'tensorrt'"),
    (
        "compare-one-model",
        "hf-distill compare",
        lambda t: check_compare_arguments(
            ["teacher"],
            task=None,
            glue_dir=None,
            int8=False,
            int8_backend="torch",
            onnx=False,
            batch_sizes=[1],
            seq_len=8,
            repeats=1,
        ),  # fmt: skip
        "at least one student",
    ),
    (
        "corpus-two-sources",
        "load_text_corpus",
        lambda t: load_text_corpus(glue_dir=t, dataset_name="wikitext"),
        "give exactly one corpus source",
    ),
    (
        "corpus-shorter-than-a-block",
        "tokenize_corpus",
        lambda t: tokenize_corpus(
            DatasetDict(train=Dataset.from_dict({"text": ["a b"]}), validation=Dataset.from_dict({"text": ["a"]})),
            _word_tokenizer(t, ["a", "b"]),
            max_seq_length=64,
        ),
        "shorter than one block",
    ),
    ("mlm-teacher-without-head", "load_masked_lm", _case_mlm_teacher_without_head, "has no trained masked-LM head"),
    (
        "mlm-probability-zero",
        "MaskedLMCollator",
        lambda t: MaskedLMCollator(_word_tokenizer(t, ["a"]), mlm_probability=0.0),
        "mlm_probability must be between 0 and 1",
    ),
    (
        "mlm-cached-outputs-dynamic-masking",
        "cache_teacher_outputs",
        lambda t: cache_teacher_outputs(
            _teacher(), random_token_dataset(4), data_collator=MaskedLMCollator(_word_tokenizer(t, ["a"]))
        ),
        "masks tokens at random",
    ),
    (
        "mlm-persistent-workers",
        "recipe --dataloader_persistent_workers",
        lambda t: check_masking_workers(_args(t, dataloader_num_workers=1, dataloader_persistent_workers=True)),
        "would repeat the first epoch's masks",
    ),
    (
        "teacher-sharding-unknown",
        "arguments",
        lambda t: _args(t, teacher_sharding="zero3"),
        "teacher_sharding must be one of",
    ),
    (
        "teacher-sharding-cotrain",
        "arguments",
        lambda t: _args(t, teacher_sharding="shard", cotrain_teacher=True),
        "cotrain_teacher=True trains it",
    ),
    ("kd-positions-unknown", "arguments", lambda t: _args(t, kd_positions="masked"), "kd_positions must be one of"),
    (
        "freeze-positions-without-any",
        "freeze_position_embeddings",
        lambda t: freeze_position_embeddings(torch.nn.Linear(2, 2)),
        "no learned absolute position embeddings",
    ),
]


@pytest.mark.parametrize("case_id, where, action, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(case_id, where, action, fragment, tmp_path, monkeypatch):
    """A bad input that fails late (or not at all) costs a run; each must raise its documented ValueError early."""
    if case_id == "missing-train-split" and not (REPO_ROOT.parent / "shared" / "data" / "glue").is_dir():
        pytest.skip("real GLUE data not found")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises((ValueError, TypeError)) as raised:
        action(tmp_path)
    assert fragment.lower() in str(raised.value).lower(), str(raised.value)
    # Nothing the user owns is created or removed by a failed start (the "out" dir is never made).
    assert not (tmp_path / "out" / "checkpoint-1").exists()
    assert set(before) <= {p.name for p in tmp_path.iterdir()}


def test_catalogue_documents_every_tested_case():
    """A catalogue that drifts from the code promises errors users never get; every case id and its message must be
    in docs/bad_inputs.md, and the document must hold at least 25 cases."""
    text = CATALOGUE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.MULTILINE))
    tested = {case[0] for case in CASES}
    assert documented == tested, (documented - tested, tested - documented)
    assert len(tested) >= 25
    for case_id, _, _, fragment in CASES:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{case_id}` |"))
        assert fragment.lower() in row.lower(), (case_id, fragment)


def test_tokenizer_fixture_is_not_the_real_one_by_accident(minilm_path):
    """The tokenization check must pass for two copies of one tokenizer, or it would block every valid run."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    check_same_tokenization(tokenizer, AutoTokenizer.from_pretrained(minilm_path), ["a fine movie", "dull"])


@pytest.mark.parametrize("spelling", ["false", "False", "0", None, ""])
def test_resume_false_on_the_command_line_starts_a_new_run(spelling, tmp_path):
    """`--resume_from_checkpoint false` was verified as a checkpoint path named "false" by the recipe's pre-flight
    plan; it means a new run, as in the trainer (one parser of the flag, `checkpoints.resume_argument`)."""
    assert plan_resume(tmp_path / "new", spelling) is None

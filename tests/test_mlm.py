"""Task-agnostic (masked-LM) distillation: the masking collator, the KD positions, padding, the corpus, perplexity,
and the recipe `recipes/mlm_distill.py` end to end (one and two processes, then the GLUE fine-tuning phase)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertForMaskedLM,
    BertModel,
    TrainerCallback,
)

from hf_distill import (
    DistillationTrainer,
    DistillationTrainingArguments,
    MaskedLMCollator,
    MaskingEpochCallback,
    cache_teacher_outputs,
    freeze_position_embeddings,
    load_text_corpus,
    make_student,
    mask_once,
    masked_lm_metrics,
    tokenize_corpus,
)
from hf_distill.losses import cosine_loss, kd_loss
from hf_distill.results import is_bookkeeping, retention
from hf_distill.text_corpus import glue_sentences

from .conftest import REPO_ROOT, pad_collate, random_token_dataset, save_tiny_checkpoint, tiny_bert_config

RECIPE = REPO_ROOT / "recipes" / "mlm_distill.py"
GLUE_RECIPE = REPO_ROOT / "recipes" / "glue_distill.py"
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a charming and affecting journey",
    "it is a film that will make you think about the world",
    "nothing happens and it happens slowly",
    "one of the best films of the year",
    "the plot is thin but the actors carry it",
    "i would not watch it again",
    "a quiet story told with care and humour",
]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def load_recipe(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_recipe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_recipe(monkeypatch, path: Path, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    load_recipe(path).main()


@pytest.fixture(scope="module")
def mlm_teacher_dir(tmp_path_factory, minilm_path) -> Path:
    """A tiny 4-layer BertForMaskedLM (no dropout) with the real MiniLM tokenizer, saved like a Hub checkpoint."""
    path = tmp_path_factory.mktemp("mlm_teacher")
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return save_tiny_checkpoint(path, BertForMaskedLM, minilm_path, **no_dropout)


def recipe_args(output_dir: Path, teacher: Path, glue_dir: Path, *extra: str) -> list[str]:
    return [
        "--teacher_model_name_or_path", str(teacher), "--glue_dir", str(glue_dir), "--glue_tasks", "rte",
        "--output_dir", str(output_dir), "--max_seq_length", "32", "--max_train_samples", "96",
        "--max_eval_samples", "24", "--per_device_train_batch_size", "8", "--max_steps", "12",
        "--learning_rate", "3e-3", "--logging_steps", "4", "--report_to", "none", "--use_cpu", "true",
        "--save_strategy", "no", "--disable_tqdm", "true", "--latency_repeats", "1", "--seed", "5", *extra,
    ]  # fmt: skip


# ---- the collator ------------------------------------------------------------------------------------------------


def test_masks_do_not_depend_on_the_batch(tokenizer):
    """`DataCollatorForLanguageModeling` draws a batch's mask from one stream, so an example's mask changes with its
    batch mates, the process count and the accumulation steps, and nothing compares exactly across them."""
    collator = MaskedLMCollator(tokenizer, seed=3)
    examples = [tokenizer(text) for text in TEXTS]
    whole = collator([dict(e) for e in examples])
    for begin in (0, 3, 5):
        part = collator([dict(e) for e in examples[begin:]])
        width = part["labels"].shape[1]
        assert torch.equal(whole["labels"][begin:, :width], part["labels"])
        assert torch.equal(whole["input_ids"][begin:, :width], part["input_ids"])
        assert (whole["labels"][begin:, width:] == -100).all()
    assert (whole["labels"] != -100).any()
    # Another epoch or another seed masks anew.
    collator.set_epoch(1)
    assert not torch.equal(collator([dict(e) for e in examples])["labels"], whole["labels"])
    assert not torch.equal(MaskedLMCollator(tokenizer, seed=4)([dict(e) for e in examples])["labels"], whole["labels"])
    pickle.dumps(collator)  # sent to dataloader workers
    with pytest.raises(ValueError, match="returns torch tensors"):  # numpy would bypass the per-example masks
        collator([dict(e) for e in examples], return_tensors="np")


def test_masking_follows_the_80_10_10_rule_and_never_masks_special_tokens(tokenizer):
    """A rewrite of the masking rule could mask [CLS]/[SEP]/[PAD] or change the shares; it must be upstream's."""
    collator = MaskedLMCollator(tokenizer, seed=0)
    examples = [tokenizer(" ".join(TEXTS), truncation=True, max_length=128) for _ in range(1)] * 1
    originals, chosen, as_mask, unchanged = [], 0, 0, 0
    for epoch in range(60):
        collator.set_epoch(epoch)
        batch = collator([dict(e) for e in examples])
        original = torch.tensor(examples[0]["input_ids"])
        labels, ids = batch["labels"][0], batch["input_ids"][0]
        picked = labels.ne(-100)
        assert torch.equal(labels[picked], original[picked])  # labels hold the original tokens
        assert not picked[0] and not picked[-1]  # [CLS] and [SEP]
        chosen += int(picked.sum())
        as_mask += int((ids[picked] == tokenizer.mask_token_id).sum())
        unchanged += int((ids[picked] == original[picked]).sum())
        originals.append(len(original) - 2)
    assert 0.12 < chosen / sum(originals) < 0.18
    assert 0.74 < as_mask / chosen < 0.86
    assert 0.05 < unchanged / chosen < 0.15


def test_masked_examples_pass_through_and_a_mixed_batch_is_refused(tokenizer):
    """A held-out split masked once must keep its masks at every evaluation (re-masking would score other tokens),
    and a batch mixing masked and unmasked examples is a data bug."""
    collator = MaskedLMCollator(tokenizer, seed=1)
    held_out = mask_once(Dataset.from_list([dict(tokenizer(t)) for t in TEXTS]), collator)
    rows = [held_out[i] for i in range(3)]
    first, second = collator(copy.deepcopy(rows)), collator(copy.deepcopy(rows))
    assert torch.equal(first["labels"], second["labels"]) and torch.equal(first["input_ids"], second["input_ids"])
    assert torch.equal(first["labels"][0, : len(rows[0]["labels"])], torch.tensor(rows[0]["labels"]))
    unmasked = dict(tokenizer(TEXTS[0]))
    with pytest.raises(ValueError, match="some examples of the batch hold `labels`"):
        collator([rows[0], unmasked])
    with pytest.raises(ValueError, match="already holds labels"):
        mask_once(held_out, collator)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mlm=False), "mlm=True"),
        (dict(whole_word_mask=True), "whole-word"),
        (dict(seed=None), "integer seed"),
        (dict(mlm_probability=0.0), "mlm_probability"),
        (dict(mlm_probability=1.0), "mlm_probability"),
        (dict(return_tensors="np"), "torch tensors"),
    ],
)
def test_collator_settings_that_cannot_mask_reproducibly_are_refused(tokenizer, kwargs, message):
    """A collator that silently does not mask (mlm=False), masks nothing (probability 0) or depends on the batch
    again (no seed) would train something else than asked."""
    with pytest.raises(ValueError, match=message):
        MaskedLMCollator(tokenizer, **kwargs)


def test_masking_epoch_callback_moves_the_epoch_and_resumes_in_it(tokenizer):
    """Without the callback every epoch repeats epoch 0's masks (static masking); on resume inside an epoch the
    epoch is the float progress's whole part."""
    collator = MaskedLMCollator(tokenizer, seed=0)
    callback = MaskingEpochCallback(collator)
    for progress, expected in ((0.0, 0), (1.0, 1), (2.5, 2), (None, 0)):
        state = type("State", (), {"epoch": progress})()
        callback.on_epoch_begin(None, state, None)
        assert collator.epoch == expected


# ---- the loss: KD positions, padding, accumulation ----------------------------------------------------------------


def _student_of(teacher, seed=123):
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = 2
    torch.manual_seed(seed)
    return type(teacher)(config)


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=3, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=7, data_seed=7, disable_tqdm=True,
    )  # fmt: skip
    values.update(overrides)
    return DistillationTrainingArguments(**values)


def _terms(trainer, batch):
    trainer.model.train()
    trainer._loss_parts = {}
    trainer.compute_loss(trainer.model, batch)
    return {name: value.item() for name, value in trainer._loss_parts.items()}


def test_kd_positions_all_covers_every_non_padding_token(tiny_mlm, tmp_path):
    """`kd_positions="all"` (DistilBERT without restrict_ce_to_mask) must cover every real token, padding excluded,
    and the default must stay on the masked positions."""
    student = _student_of(tiny_mlm)
    dataset = random_token_dataset(6, seed=4, label_kind="mlm")
    batch = pad_collate([dataset[i] for i in range(6)])
    assert not batch["attention_mask"].all()  # the batch has padding
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = tiny_mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    on_tokens = kd_loss(s, t, temperature=2.0, mask=batch["attention_mask"].bool()).item()
    on_labels = kd_loss(s, t, temperature=2.0, mask=batch["labels"].ne(-100)).item()
    weights = dict(alpha_cos=0.0, alpha_task=0.0)
    for positions, expected in (("all", on_tokens), ("labelled", on_labels)):
        trainer = DistillationTrainer(
            model=student,
            teacher_model=tiny_mlm,
            args=_args(tmp_path, kd_positions=positions, **weights),
            train_dataset=dataset,
            data_collator=pad_collate,
        )
        assert _terms(trainer, dict(batch))["kd"] == pytest.approx(expected, rel=1e-5)
    assert on_tokens != pytest.approx(on_labels, rel=1e-3)
    with pytest.raises(ValueError, match="kd_positions must be one of"):
        _args(tmp_path, kd_positions="masked")


def test_cosine_term_on_masked_lm_ignores_padding(tiny_mlm, tmp_path):
    """Padding hidden states (which change with whatever ids sit under the padding) in `L_cos` would make the term
    depend on how far a batch is padded."""
    student = _student_of(tiny_mlm)
    dataset = random_token_dataset(6, seed=8, label_kind="mlm")
    trainer = DistillationTrainer(
        model=student,
        teacher_model=tiny_mlm,
        args=_args(tmp_path, alpha_kd=0.0, alpha_task=0.0, alpha_cos=1.0),
        train_dataset=dataset,
        data_collator=pad_collate,
    )
    batch = pad_collate([dataset[i] for i in range(6)])
    wider = {key: torch.nn.functional.pad(value, (0, 5), value=0) for key, value in batch.items()}
    wider["input_ids"][:, -5:] = torch.randint(5, 90, (6, 5), generator=torch.Generator().manual_seed(0))
    wider["labels"][:, -5:] = -100
    with torch.no_grad():
        kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        s, t = student(**kwargs).hidden_states[-1], tiny_mlm(**kwargs).hidden_states[-1]
    expected = cosine_loss(s, t, mask=batch["attention_mask"].bool()).item()
    assert _terms(trainer, dict(batch))["cos"] == pytest.approx(expected, rel=1e-5)
    assert _terms(trainer, wider)["cos"] == pytest.approx(expected, rel=1e-5)
    assert cosine_loss(s, t).item() != pytest.approx(expected, rel=1e-3)  # padding would have changed it


def test_accumulation_is_exact_with_dynamic_masking(tiny_mlm, tokenizer, tmp_path):
    """With `DataCollatorForLanguageModeling` the masks of 8 x 1 and 2 x 4 differ (one random stream, drawn per
    batch), so gradient accumulation cannot be checked, or trusted, on masked LM; the masks must not depend on it."""
    config = tiny_bert_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64)
    torch.manual_seed(0)
    teacher = BertForMaskedLM(config)
    rows = Dataset.from_list([dict(tokenizer(text)) for text in TEXTS * 2])
    runs = []
    for batch_size, accumulation in ((8, 1), (2, 4)):
        collator = MaskedLMCollator(tokenizer, seed=2)
        trainer = DistillationTrainer(
            model=make_student(teacher, layers=[0, 3]),
            teacher_model=teacher,
            args=_args(
                tmp_path / f"{batch_size}x{accumulation}",
                per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation,
                max_steps=4,  # two epochs of 2 steps: the second masks anew
            ),
            train_dataset=rows,
            data_collator=collator,
            callbacks=[MaskingEpochCallback(collator)],
        )
        trainer.train()
        assert collator.epoch == 1
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        runs.append((logs, {k: v.clone() for k, v in trainer.model.state_dict().items()}))
    (logs_a, weights_a), (logs_b, weights_b) = runs
    for a, b in zip(logs_a, logs_b, strict=True):
        for key in ("loss", "loss_kd", "loss_task", "loss_cos"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=1e-5, rtol=0, msg=name)


def test_cached_teacher_outputs_are_refused_with_dynamic_masking(tiny_mlm, tokenizer, tmp_path):
    """Outputs cached for one masking belong to other inputs at the next batch: a silent wrong target."""
    collator = MaskedLMCollator(tokenizer, seed=0)
    dataset = random_token_dataset(8, seed=1, label_kind=None)
    with pytest.raises(ValueError, match="masks tokens at random"):
        cache_teacher_outputs(tiny_mlm, dataset, data_collator=collator)
    cached = cache_teacher_outputs(tiny_mlm, dataset, data_collator=pad_collate)
    with pytest.raises(ValueError, match="masks tokens at random"):
        DistillationTrainer(
            model=_student_of(tiny_mlm),
            teacher_model=None,
            args=_args(tmp_path, alpha_cos=0.0, alpha_task=0.0),
            train_dataset=cached,
            data_collator=collator,
        )
    assert not (tmp_path / "out").exists()


def test_freeze_position_embeddings_keeps_the_teachers(tiny_mlm, tmp_path):
    """DistilBERT froze the student's position embeddings; a flag that froze nothing (or froze more) would train
    another model than asked. A model without absolute position embeddings is refused."""
    student = make_student(tiny_mlm)
    assert freeze_position_embeddings(student) == ["bert.embeddings.position_embeddings.weight"]
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = DistillationTrainer(
        model=student,
        teacher_model=tiny_mlm,
        args=_args(tmp_path),
        train_dataset=random_token_dataset(16, seed=2, label_kind="mlm"),
        data_collator=pad_collate,
    )
    trainer.train()
    after = student.state_dict()
    assert torch.equal(
        after["bert.embeddings.position_embeddings.weight"], before["bert.embeddings.position_embeddings.weight"]
    )
    assert not torch.equal(
        after["bert.embeddings.word_embeddings.weight"], before["bert.embeddings.word_embeddings.weight"]
    )
    no_positions = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no learned absolute position embeddings"):
        freeze_position_embeddings(no_positions)


# ---- corpus, perplexity, results -----------------------------------------------------------------------------------


def test_corpus_files_text_columns_and_held_out_split(tmp_path):
    """A text column guessed wrong, empty lines kept as documents, or a held-out split that overlaps the training
    split would train or score on the wrong text."""
    (tmp_path / "c.txt").write_text("\n".join(TEXTS[:6]) + "\n\n  \n" + "\n".join(TEXTS[6:]) + "\n")
    corpus = load_text_corpus(train_file=tmp_path / "c.txt", validation_split_percentage=25, seed=0)
    assert len(corpus["train"]) == 6 and len(corpus["validation"]) == 2
    assert sorted([*corpus["train"]["text"], *corpus["validation"]["text"]]) == sorted(TEXTS)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": i, "body": t}) for i, t in enumerate(TEXTS)))
    assert (
        load_text_corpus(train_file=tmp_path / "c.jsonl", validation_file=tmp_path / "c.jsonl")["validation"]["text"]
        == TEXTS
    )  # the only string column
    (tmp_path / "c.csv").write_text("title,body\n" + "\n".join(f"t{i},{t}" for i, t in enumerate(TEXTS)))
    with pytest.raises(ValueError, match="pass --text_column"):
        load_text_corpus(train_file=tmp_path / "c.csv")
    assert load_text_corpus(train_file=tmp_path / "c.csv", text_column="body", validation_split_percentage=50)
    with pytest.raises(ValueError, match="has no column 'txt'"):
        load_text_corpus(train_file=tmp_path / "c.csv", text_column="txt")
    # A dataset by name (here a local dataset directory, as the Hub's builders read it) keeps its own held-out split.
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "train.csv").write_text("body\n" + "\n".join(TEXTS[:5]))
    (tmp_path / "hub" / "validation.csv").write_text("body\n" + "\n".join(TEXTS[5:]))
    named = load_text_corpus(dataset_name=str(tmp_path / "hub"))
    assert list(named["validation"]["text"]) == TEXTS[5:] and len(named["train"]) == 5


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(), "exactly one corpus source"),
        (dict(train_file="a.txt", dataset_name="wikitext"), "exactly one corpus source"),
        (dict(dataset_name="wikitext", validation_file="v.txt"), "goes with --train_file"),
        (dict(glue_dir="{glue}", dataset_config_name="x"), "exactly one|goes with --dataset_name"),
        (dict(train_file="missing.txt"), "does not exist"),
        (dict(train_file="{file_pdf}"), "unknown file type"),
        (dict(glue_dir="{glue}", glue_tasks=["sst3"]), "sst3"),
        (dict(train_file="{file_txt}", validation_split_percentage=100), "between 0 and 100"),
        (dict(train_file="{file_txt}", validation_split_percentage=float("nan")), "between 0 and 100"),
    ],
)
def test_bad_corpus_flags_are_refused(flags, message, tmp_path, glue_dir):
    """Two sources silently preferring one, a held-out percentage of 100 (no training text) or a missing file found
    only after the teacher loaded."""
    (tmp_path / "c.txt").write_text("\n".join(TEXTS))
    (tmp_path / "c.pdf").write_text("x")
    values = {"{glue}": str(glue_dir), "{file_pdf}": str(tmp_path / "c.pdf"), "{file_txt}": str(tmp_path / "c.txt")}
    flags = {k: values.get(v, v) if isinstance(v, str) else v for k, v in flags.items()}
    with pytest.raises(ValueError, match=message):
        load_text_corpus(**flags)


def test_glue_sentences_hold_out_the_dev_files(glue_dir):
    """Dev sentences repeated in the training text would make the held-out perplexity a training perplexity."""
    corpus = glue_sentences(glue_dir, ["rte", "mrpc"])
    train, held_out = set(corpus["train"]["text"]), set(corpus["validation"]["text"])
    assert len(train) > 8000 and len(held_out) > 1000 and not train & held_out
    assert len(train) == len(corpus["train"])  # no duplicates


def test_blocks_are_full_and_line_by_line_truncates(tokenizer):
    """Blocks of another length (or a remainder padded in) change what each step trains on; a corpus shorter than a
    block must be an error, not an empty training set."""
    corpus = DatasetDict(
        train=Dataset.from_dict({"text": TEXTS * 4}), validation=Dataset.from_dict({"text": TEXTS[:4]})
    )
    blocks = tokenize_corpus(corpus, tokenizer, max_seq_length=16)
    total = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS * 4)
    assert len(blocks["train"]) == total // 16
    assert {len(ids) for ids in blocks["train"]["input_ids"]} == {16}
    assert blocks["train"]["input_ids"][0][0] == tokenizer.cls_token_id
    lines = tokenize_corpus(corpus, tokenizer, max_seq_length=8, line_by_line=True, max_train_samples=5)
    assert len(lines["train"]) == 5 and max(len(ids) for ids in lines["train"]["input_ids"]) == 8
    with pytest.raises(ValueError, match="shorter than one block"):
        tokenize_corpus(corpus, tokenizer, max_seq_length=512)


def test_masked_lm_metrics_are_per_masked_token(tiny_mlm, tokenizer):
    """Trainer's eval_loss averages per-batch means, weighting a batch with 2 masked tokens like one with 20; the
    held-out loss must be the mean over masked tokens, and the same whatever the batch size."""
    collator = MaskedLMCollator(tokenizer, seed=0)
    model = BertForMaskedLM(tiny_bert_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64))
    held_out = mask_once(Dataset.from_list([dict(tokenizer(t)) for t in TEXTS]), collator)
    one = masked_lm_metrics(model, held_out, data_collator=collator, batch_size=1)
    three = masked_lm_metrics(model, held_out, data_collator=collator, batch_size=3)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in held_out:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            labels = torch.tensor(row["labels"])
            keep = labels.ne(-100)
            total += torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            count += int(keep.sum())
    assert one["masked_tokens"] == three["masked_tokens"] == count
    assert one["mlm_loss"] == pytest.approx(total / count, rel=1e-5)
    assert three["mlm_loss"] == pytest.approx(one["mlm_loss"], rel=1e-6)
    assert one["perplexity"] == pytest.approx(torch.tensor(total / count).exp().item(), rel=1e-5)
    assert model.training  # its mode is restored


def test_perplexity_retention_is_inverted_and_mlm_loss_is_a_metric():
    """Perplexity is lower-is-better: student/teacher would call a worse student "120% retained"; and `mlm_loss`
    must not be hidden as evaluation bookkeeping like `eval_loss`."""
    assert retention(12.0, 10.0, lower_is_better=True) == pytest.approx(10 / 12 * 100)
    assert retention(0.9, 0.8) == pytest.approx(112.5)
    assert not is_bookkeeping("mlm_loss") and not is_bookkeeping("perplexity") and is_bookkeeping("loss")


# ---- the recipe ----------------------------------------------------------------------------------------------------


def test_recipe_distils_a_masked_lm_student_whose_perplexity_falls(mlm_teacher_dir, glue_dir, tmp_path, monkeypatch):
    """The recipe end to end on GLUE sentences: a student that does not learn (held-out perplexity not below its
    start), a student saved without its masked-LM head or tokenizer, missing teacher/student perplexities in
    results.json, or a card for another pipeline."""
    output_dir = tmp_path / "general"
    run_recipe(monkeypatch, RECIPE, *recipe_args(output_dir, mlm_teacher_dir, glue_dir))
    results = json.loads((output_dir / "results.json").read_text())
    assert results["task"] == "masked-lm" and results["main_metric"] == "perplexity"
    for who in ("teacher_metrics", "student_metrics"):
        assert {"mlm_loss", "perplexity", "masked_tokens"} <= set(results[who])
    assert results["teacher_metrics"]["masked_tokens"] == results["student_metrics"]["masked_tokens"] > 0
    assert results["teacher_layers"] == [0, 2] and results["eval_rows"] == 24

    # The student's held-out perplexity before training, on the same masked tokens (the recipe's own pipeline).
    teacher = AutoModelForMaskedLM.from_pretrained(mlm_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    collator = MaskedLMCollator(tokenizer, seed=5)
    corpus = tokenize_corpus(
        glue_sentences(glue_dir, ["rte"]), tokenizer, max_seq_length=32, max_train_samples=96, max_eval_samples=24
    )
    held_out = mask_once(corpus["validation"], collator)
    start = masked_lm_metrics(make_student(teacher), held_out, data_collator=collator)
    assert masked_lm_metrics(teacher, held_out, data_collator=collator) == pytest.approx(results["teacher_metrics"])
    assert results["student_metrics"]["perplexity"] < 0.8 * start["perplexity"]
    student = AutoModelForMaskedLM.from_pretrained(output_dir)
    assert masked_lm_metrics(student, held_out, data_collator=collator)["perplexity"] == pytest.approx(
        results["student_metrics"]["perplexity"], rel=1e-5
    )
    logged = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert {"loss_kd", "loss_task", "loss_cos"} <= set(logged[0])
    card = (output_dir / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "perplexity" in card and "held-out split of the sentences" in card
    assert "lower-is-better" in card and "datasets:\n- nyu-mll/glue" in card

    # A re-run into the finished directory is refused before anything changes.
    before = (output_dir / "results.json").read_text()
    with pytest.raises(ValueError, match="already holds a finished run"):
        run_recipe(monkeypatch, RECIPE, *recipe_args(output_dir, mlm_teacher_dir, glue_dir))
    assert (output_dir / "results.json").read_text() == before

    # Phase two: the general student fine-tuned and distilled on a GLUE task from a task teacher.
    task_dir = tmp_path / "rte"
    run_recipe(
        monkeypatch,
        GLUE_RECIPE,
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--teacher_model_name_or_path", str(mlm_teacher_dir),
        "--teacher_finetune_epochs", "1", "--student_model_name_or_path", str(output_dir),
        "--output_dir", str(task_dir), "--max_train_samples", "24", "--max_eval_samples", "16",
        "--max_seq_length", "32", "--per_device_train_batch_size", "8", "--max_steps", "2", "--report_to", "none",
        "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true", "--latency_repeats", "0",
    )  # fmt: skip
    task_results = json.loads((task_dir / "results.json").read_text())
    assert task_results["task"] == "rte" and "accuracy" in task_results["student_metrics"]
    # The card says where the student came from, not the general student's own record of the masked-LM teacher.
    assert task_results["student_start"] == str(output_dir) and task_results["teacher_layers"] is None
    assert f"started from the given model `{output_dir}`" in (task_dir / "README.md").read_text()
    config = AutoConfig.from_pretrained(task_dir)  # the general student's 2 layers, now with a classifier
    assert config.num_hidden_layers == 2 and config.architectures == ["BertForSequenceClassification"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "wikitext"], "exactly one corpus source"),
        (["--validation_split_percentage", "0"], "between 0 and 100"),
        (["--student_layers", "0", "7"], "7"),
        (["--mlm_probability", "0"], "mlm_probability"),
        (["--kd_positions", "masked"], None),  # argparse's choices: exit 2 with the usage
        (["--push_to_hub", "true"], "hub_model_id"),
        (["--max_seq_length", "512"], "512"),
        (["--dataloader_num_workers", "1", "--dataloader_persistent_workers", "true"], "persistent"),
        (
            [
                "--freeze_position_embeddings",
                "true",
                "--student_model_name_or_path",
                "{teacher}",
                "--student_layers",
                "0",
            ],
            "drop one",
        ),
    ],
)
def test_bad_recipe_flags_fail_before_any_work(extra, message, mlm_teacher_dir, glue_dir, tmp_path, monkeypatch):
    """A bad flag found after the corpus is tokenised and the output directory created wastes the run and leaves a
    half-made directory that the next run refuses."""
    output_dir = tmp_path / "out"
    extra = [str(mlm_teacher_dir) if value == "{teacher}" else value for value in extra]
    with pytest.raises(ValueError, match=message) if message else pytest.raises(SystemExit):
        run_recipe(monkeypatch, RECIPE, *recipe_args(output_dir, mlm_teacher_dir, glue_dir), *extra)
    assert not output_dir.exists()


def test_a_teacher_without_a_trained_mlm_head_is_refused(minilm_path, glue_dir, tmp_path, monkeypatch):
    """A sentence encoder (the packaged MiniLM is a BertModel) gets a random masked-LM head: its soft targets would
    be noise, and the run would look fine."""
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="has no trained masked-LM head"):
        run_recipe(monkeypatch, RECIPE, *recipe_args(output_dir, Path(minilm_path), glue_dir))
    assert not output_dir.exists()
    tiny = tmp_path / "base"
    BertModel(tiny_bert_config()).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tiny)
    with pytest.raises(ValueError, match="has no trained masked-LM head"):
        run_recipe(monkeypatch, RECIPE, *recipe_args(output_dir, tiny, glue_dir))


def test_recipe_two_processes_match_one_process(mlm_teacher_dir, glue_dir, tmp_path):
    """Under `accelerate launch --num_processes 2` each process masks its own half of the batch: with batch-drawn
    masks, or counts normalised per process, the logged losses and the student differ from one process's."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    runs = {}
    for name, command, per_device in (("one", [sys.executable], "8"), ("two", launch, "4")):
        args = recipe_args(tmp_path / name, mlm_teacher_dir, glue_dir, "--latency_repeats", "0")
        args[args.index("--per_device_train_batch_size") + 1] = per_device
        args[args.index("--max_steps") + 1] = "4"
        args[args.index("--logging_steps") + 1] = "1"
        completed = subprocess.run(
            [*command, str(RECIPE), *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        runs[name] = json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
    assert "Process rank: 1 of 2" in completed.stderr
    one, two = ([e for e in runs[name] if "loss" in e] for name in ("one", "two"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        for key in ("loss", "loss_kd", "loss_task", "loss_cos"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), (a["step"], key)
    students = [AutoModelForMaskedLM.from_pretrained(tmp_path / name).state_dict() for name in ("one", "two")]
    for key, value in students[0].items():
        torch.testing.assert_close(students[1][key], value, atol=1e-5, rtol=0, msg=key)


def test_resume_inside_the_second_epoch_equals_an_uninterrupted_run(tokenizer, tmp_path):
    """A resumed run whose collator restarts at epoch 0 (or draws from a fresh random stream) masks other tokens
    than the run it continues: its losses and weights differ silently."""
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_bert_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64))
    rows = Dataset.from_list([dict(tokenizer(text)) for text in TEXTS * 2])
    settings = dict(
        per_device_train_batch_size=4, max_steps=8, save_strategy="steps", save_steps=2, logging_steps=1
    )  # 4 steps per epoch: the checkpoint at step 6 is inside the second epoch

    def run(directory: Path, stop_at: int | None = None, resume: str | None = None) -> DistillationTrainer:
        collator = MaskedLMCollator(tokenizer, seed=9)  # a fresh collator, at epoch 0, as in a new process
        trainer = DistillationTrainer(
            model=make_student(teacher, layers=[0, 3]),
            teacher_model=teacher,
            args=_args(directory, **settings),
            train_dataset=rows,
            data_collator=collator,  # DistillationTrainer adds its MaskingEpochCallback
        )
        if stop_at is not None:

            class Stop(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    control.should_training_stop = state.global_step == stop_at

            trainer.add_callback(Stop())
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop_at=6)
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "out" / "checkpoint-6"))
    full_logs = [entry for entry in full.state.log_history if "loss" in entry]
    resumed_logs = [entry for entry in resumed.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in resumed_logs] == [entry["step"] for entry in full_logs]
    for a, b in zip(full_logs, resumed_logs):
        for key in ("loss", "loss_kd", "loss_task", "loss_cos"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def test_distillation_trainer_moves_a_masked_lm_collators_epoch_once(tiny_mlm, tokenizer, tmp_path):
    """Without the epoch callback every epoch repeats epoch 0's masks (static masking, silently); added twice, a
    user's own callback and the trainer's would both run. The trainer adds exactly one."""
    collator = MaskedLMCollator(tokenizer, seed=0)
    for given in ([], [MaskingEpochCallback(collator)]):
        trainer = DistillationTrainer(
            model=_student_of(tiny_mlm),
            teacher_model=tiny_mlm,
            args=_args(tmp_path),
            train_dataset=random_token_dataset(8, seed=1, label_kind=None),
            data_collator=collator,
            callbacks=given,
        )
        added = [c for c in trainer.callback_handler.callbacks if isinstance(c, MaskingEpochCallback)]
        assert len(added) == 1 and added[0].collator is collator


def test_resuming_a_finished_run_that_trains_nothing_keeps_its_results(
    mlm_teacher_dir, glue_dir, tmp_path, monkeypatch
):
    """Following the finished-run message to `--resume_from_checkpoint true` with the same settings trained 0 steps
    and replaced the run's results.json, metrics and card with an empty run's (training loss 0, time 0)."""
    output_dir = tmp_path / "done"
    args = recipe_args(output_dir, mlm_teacher_dir, glue_dir, "--save_strategy", "steps", "--save_steps", "4")
    args[args.index("--max_steps") + 1] = "4"
    run_recipe(monkeypatch, RECIPE, *args)
    written = {name: (output_dir / name).read_text() for name in ("results.json", "README.md", "train_results.json")}
    with pytest.raises(ValueError, match="nothing left to train"):
        run_recipe(monkeypatch, RECIPE, *args, "--resume_from_checkpoint", "true")
    assert {name: (output_dir / name).read_text() for name in written} == written

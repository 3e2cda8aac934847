"""Cached (offline) teacher outputs: equality with online distillation, the datasets cache, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast, Trainer

from hf_distill import DistillationTrainer, cache_teacher_outputs
from hf_distill.teacher_cache import CACHE_COLUMNS

from .conftest import pad_collate, random_token_dataset
from .test_trainer import make_args, student_like


def run(student, teacher, dataset, tmp_path, **overrides):
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, **overrides),
        train_dataset=dataset,
        data_collator=pad_collate,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return trainer, logs


def train_without_cos(student, cached, tmp_path, data_collator) -> None:
    DistillationTrainer(
        model=student, args=make_args(tmp_path, alpha_cos=0.0), train_dataset=cached, data_collator=data_collator
    ).train()


def count_forwards(model) -> list[int]:
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


CASES = [
    ("tiny_classifier", "class", dict(alpha_cos=1.0)),
    ("tiny_regressor", "float", dict(alpha_cos=0.0, alpha_mse=1.0)),
    ("tiny_tagger", "token", dict(alpha_cos=1.0)),
    ("tiny_qa", "span", dict(alpha_cos=0.0, alpha_mse=0.5)),
]


@pytest.mark.parametrize("fixture, label_kind, weights", CASES, ids=[c[0] for c in CASES])
def test_cached_and_online_distillation_give_the_same_run(fixture, label_kind, weights, request, tmp_path):
    """Cached outputs paired with the wrong rows, padded to the wrong side or length, or read in another layout would
    train a different student; with dropout 0 the logged terms and the weights must match an online run."""
    teacher = request.getfixturevalue(fixture)
    dataset = random_token_dataset(32, seed=3, label_kind=label_kind)
    online, online_logs = run(student_like(teacher), teacher, dataset, tmp_path / "online", **weights)

    cached = cache_teacher_outputs(teacher, dataset, batch_size=7, hidden_states=weights["alpha_cos"] > 0)
    calls = count_forwards(teacher)
    offline, offline_logs = run(student_like(teacher), None, cached, tmp_path / "cached", **weights)

    assert not calls and offline.teacher_model is None
    assert len(offline_logs) == len(online_logs) == 4
    keys = [key for key in online_logs[0] if key.startswith("loss")]
    for a, b in zip(online_logs, offline_logs):
        for key in keys:
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    for name, value in online.model.state_dict().items():
        torch.testing.assert_close(offline.model.state_dict()[name], value, atol=1e-5, rtol=0, msg=name)


def test_left_padding_collator_gets_each_rows_own_outputs(tiny_tagger, tmp_path):
    """Token-level outputs stored unpadded must be placed where each row's tokens are, also with left padding."""

    def left_pad(features):
        batch = pad_collate(features)
        lengths = batch["attention_mask"].sum(1)
        for key in batch:
            if batch[key].dim() == 2:
                batch[key] = torch.stack([row.roll(int(row.numel() - n)) for row, n in zip(batch[key], lengths)])
        return batch

    dataset = random_token_dataset(16, seed=5, label_kind="token")
    cached = cache_teacher_outputs(tiny_tagger, dataset, batch_size=5)  # right padding: each row's own outputs
    trainer = DistillationTrainer(
        model=student_like(tiny_tagger),
        args=make_args(tmp_path, alpha_cos=0.0, max_steps=1),
        train_dataset=cached,
        data_collator=left_pad,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    assert batch["attention_mask"][:, 0].eq(0).any(), "the collator did not pad on the left"
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = [tiny_tagger(input_ids=torch.tensor([dataset[i]["input_ids"]])).logits[0] for i in range(6)]
    torch.testing.assert_close(batch["teacher_logits"][:, 0][mask], torch.cat(expected), atol=1e-5, rtol=0)


def test_rerun_reuses_the_cache_and_changes_invalidate_it(tiny_classifier, tmp_path):
    """Re-running the teacher on every call wastes its whole cost; reusing a cache after the teacher, the
    tokenisation or the data changed pairs the student with stale targets."""
    random_token_dataset(24, seed=1).save_to_disk(str(tmp_path / "data"))
    dataset = load_from_disk(str(tmp_path / "data"))
    calls = count_forwards(tiny_classifier)

    first = cache_teacher_outputs(tiny_classifier, dataset, batch_size=8)
    assert len(calls) == 3
    again = cache_teacher_outputs(tiny_classifier, dataset, batch_size=8)
    assert len(calls) == 3, "the second call ran the teacher again"
    assert again["teacher_logits"] == first["teacher_logits"]
    assert again.cache_files == first.cache_files

    changed_teacher = tiny_classifier
    with torch.no_grad():
        changed_teacher.classifier.bias.add_(0.5)
    cache_teacher_outputs(changed_teacher, dataset, batch_size=8)
    assert len(calls) == 6, "changed teacher weights reused the old cache"

    retokenised = dataset.map(lambda row: {"input_ids": [min(i + 1, 98) for i in row["input_ids"]]})
    cache_teacher_outputs(changed_teacher, retokenised, batch_size=8)
    assert len(calls) == 9, "changed tokenisation reused the old cache"

    fewer = dataset.select(range(16))
    cache_teacher_outputs(changed_teacher, fewer, batch_size=8)
    assert len(calls) == 11, "changed data reused the old cache"


def test_nothing_of_the_users_is_changed(tiny_classifier, tmp_path):
    """Making a cached run work by mutating the user's dataset, arguments or teacher leaks into their later code."""
    tiny_classifier.train()
    dataset = random_token_dataset(16, seed=2)
    cached = cache_teacher_outputs(tiny_classifier, dataset)
    assert tiny_classifier.training and all(m.training for m in tiny_classifier.modules())
    assert dataset.column_names == ["input_ids", "labels"]
    columns, format_before = list(cached.column_names), dict(cached.format)
    args = make_args(tmp_path, alpha_cos=0.0)
    trainer = DistillationTrainer(
        model=student_like(tiny_classifier), args=args, train_dataset=cached, data_collator=pad_collate
    )
    trainer.train()
    assert args.remove_unused_columns is True
    assert cached.column_names == columns and dict(cached.format) == format_before
    assert trainer.data_collator.data_collator is pad_collate


def test_ensemble_cache_matches_the_online_ensemble(tiny_classifier, tmp_path):
    """Cached ensembles must stack the teachers in order and be weighed like the online ensemble."""
    other = student_like(tiny_classifier, num_layers=3, seed=5)
    dataset = random_token_dataset(16, seed=4)
    weights = dict(alpha_cos=0.0, teacher_weights=[3.0, 1.0], max_steps=2)
    online, online_logs = run(
        student_like(tiny_classifier), [tiny_classifier, other], dataset, tmp_path / "a", **weights
    )
    cached = cache_teacher_outputs([tiny_classifier, other], dataset)
    assert torch.tensor(cached[0]["teacher_logits"]).shape == (2, 3)
    _, cached_logs = run(student_like(tiny_classifier), None, cached, tmp_path / "b", **weights)
    for a, b in zip(online_logs, cached_logs):
        assert b["loss_kd"] == pytest.approx(a["loss_kd"], abs=1e-6)


# ---- refusals -----------------------------------------------------------------------------------------------------


def test_cached_outputs_of_another_head_shape_are_refused(tiny_classifier, tmp_path):
    """Cached logits of a 3-label teacher silently broadcast against, or crash deep inside, a 2-label student."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8))
    student = student_like(tiny_classifier)
    student.config.num_labels = 2
    student.classifier = torch.nn.Linear(32, 2)
    with pytest.raises(ValueError, match=r"teacher_logits have 3 outputs .* has 2"):
        DistillationTrainer(model=student, args=make_args(tmp_path, alpha_cos=0.0), train_dataset=cached)
    assert not (tmp_path / "out").exists()


def test_alpha_cos_without_cached_hidden_states_is_refused(tiny_classifier, tmp_path):
    """L_cos with no cached hidden states would have nothing to compare with; refuse before training."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8))
    with pytest.raises(ValueError, match=r"hidden_states=True"):
        DistillationTrainer(model=student_like(tiny_classifier), args=make_args(tmp_path), train_dataset=cached)


def test_dynamic_masking_with_a_cache_is_refused(tiny_mlm, tmp_path):
    """A collator that masks at random pairs cached outputs with inputs the teacher never saw."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=__import__("tokenizers").Tokenizer(
            __import__("tokenizers").models.WordLevel({"[PAD]": 0, "[MASK]": 1, "[UNK]": 2}, unk_token="[UNK]")
        ),
        pad_token="[PAD]",
        mask_token="[MASK]",
    )
    masking = DataCollatorForLanguageModeling(tokenizer)
    dataset = random_token_dataset(8, label_kind="mlm")
    with pytest.raises(ValueError, match="masks tokens at random"):
        cache_teacher_outputs(tiny_mlm, dataset, data_collator=masking)
    cached = cache_teacher_outputs(tiny_mlm, dataset)
    with pytest.raises(ValueError, match="masks tokens at random"):
        DistillationTrainer(
            model=student_like(tiny_mlm),
            args=make_args(tmp_path, alpha_cos=0.0),
            train_dataset=cached,
            data_collator=masking,
        )

    def custom_masking(features):
        batch = pad_collate(features)
        batch["input_ids"][:, 0] = 1
        return batch

    with pytest.raises(ValueError, match="changed the input_ids"):
        train_without_cos(student_like(tiny_mlm), cached, tmp_path, custom_masking)


def test_a_dataset_changed_after_caching_is_refused(tiny_classifier, tmp_path):
    """Re-tokenising a cached dataset keeps the old teacher columns beside the new inputs: stale targets."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8))
    changed = cached.map(lambda row: {"input_ids": row["input_ids"][:-1]})
    with pytest.raises(ValueError, match="belong to other input_ids"):
        train_without_cos(student_like(tiny_classifier), changed, tmp_path, pad_collate)


def test_cache_and_a_teacher_together_are_refused(tiny_classifier, tmp_path):
    """With both, one of them would be ignored without a word."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8))
    with pytest.raises(ValueError, match="unclear which to distil from"):
        DistillationTrainer(
            model=student_like(tiny_classifier),
            teacher_model=tiny_classifier,
            args=make_args(tmp_path),
            train_dataset=cached,
        )
    with pytest.raises(ValueError, match="already holds cached teacher outputs"):
        cache_teacher_outputs(tiny_classifier, cached)
    with pytest.raises(ValueError, match="needs live teachers"):
        DistillationTrainer(
            model=student_like(tiny_classifier),
            args=make_args(tmp_path, alpha_cos=0.0, cotrain_teacher=True),
            train_dataset=cached,
        )


def test_cache_columns_are_named_in_one_place():
    """The trainer, the collator and the docs must agree on the column names."""
    assert CACHE_COLUMNS == (
        "teacher_logits",
        "teacher_start_logits",
        "teacher_end_logits",
        "teacher_hidden_states",
        "teacher_input_checksum",
    )


def test_a_named_cache_file_is_never_read_for_another_teacher(tiny_classifier, tmp_path):
    """`datasets` loads whatever file sits at `cache_file_name`: a second teacher got the first one's outputs."""
    dataset = random_token_dataset(8)
    path = str(tmp_path / "outputs.arrow")
    first = cache_teacher_outputs(tiny_classifier, dataset, cache_file_name=path)
    other = student_like(tiny_classifier, num_layers=3, seed=5)
    second = cache_teacher_outputs(other, dataset, cache_file_name=path)
    assert first["teacher_logits"] != second["teacher_logits"]
    calls = count_forwards(tiny_classifier)
    again = cache_teacher_outputs(tiny_classifier, dataset, cache_file_name=path)
    assert not calls and again["teacher_logits"] == first["teacher_logits"]


def test_multiple_choice_datasets_are_refused_before_the_teacher_runs(tiny_classifier):
    """Several sequences per example cannot be stored per token; the old error blamed the collator for masking."""
    nested = Dataset.from_dict({"input_ids": [[[1, 2, 3], [4, 5, 6]]], "labels": [0]})
    with pytest.raises(ValueError, match="multiple choice"):
        cache_teacher_outputs(tiny_classifier, nested)


def test_a_format_that_hides_the_cache_columns_still_trains(tiny_classifier, tmp_path):
    """`set_format(columns=[...])` without the cache columns hid them from the rows: a bare KeyError."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(16))
    cached.set_format("torch", columns=["input_ids", "labels"])
    trainer, logs = run(student_like(tiny_classifier), None, cached, tmp_path, alpha_cos=0.0, max_steps=2)
    assert len(logs) == 2 and all("loss_kd" in entry for entry in logs)
    assert cached.format["columns"] == ["input_ids", "labels"]  # the user's dataset keeps its format


def test_cached_ensemble_hidden_states_belong_to_the_first_teacher(tiny_classifier, tmp_path):
    """L_cos on cached hidden states of teacher 0 while cos_teacher names teacher 1 follows the wrong teacher."""
    other = student_like(tiny_classifier, num_layers=3, seed=5)
    cached = cache_teacher_outputs([tiny_classifier, other], random_token_dataset(8), hidden_states=True)
    with pytest.raises(ValueError, match="cached hidden states are the first teacher's"):
        DistillationTrainer(
            model=student_like(tiny_classifier), args=make_args(tmp_path, cos_teacher=1), train_dataset=cached
        )


def test_non_finite_cached_outputs_are_refused_at_the_first_step(tiny_classifier, tmp_path):
    """A corrupted cache (NaN targets) would train the student on NaN losses; the step must stop with the cause."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8))
    corrupted = cached.map(lambda row: {"teacher_logits": [[float("nan")] * 3]})
    with pytest.raises(ValueError, match="NaN or inf values in \\['logits'\\]"):
        train_without_cos(student_like(tiny_classifier), corrupted, tmp_path, pad_collate)


@pytest.mark.parametrize("strategy", ["group_by_length", "batch_rebalance"])
def test_length_grouping_reads_lengths_from_one_column(tiny_classifier, tmp_path, monkeypatch, strategy):
    """`Trainer` measured each example for `group_by_length` by reading it whole, row by row: on SST-2 with cached
    hidden states that took minutes before the first step. The sampler must get the same lengths from the input
    column alone, on a selected subset too, and give `Trainer`'s own order."""
    dataset = random_token_dataset(40, seed=2)
    cached = cache_teacher_outputs(tiny_classifier, dataset, batch_size=8, hidden_states=True).select(range(3, 35))
    trainer = DistillationTrainer(
        model=student_like(tiny_classifier),
        args=make_args(tmp_path, train_sampling_strategy=strategy),
        train_dataset=cached,
        data_collator=pad_collate,
    )
    rows_read: list[int] = []
    original = Dataset.__getitem__

    def counting_getitem(self, key):
        if isinstance(key, int) and "teacher_hidden_states" in self.column_names:
            rows_read.append(key)  # a whole example, cached outputs included
        return original(self, key)

    monkeypatch.setattr(Dataset, "__getitem__", counting_getitem)
    torch.manual_seed(0)
    ours = list(trainer._get_train_sampler())
    assert not rows_read, "lengths were read row by row"
    monkeypatch.setattr(Dataset, "__getitem__", original)
    expected = [len(ids) for ids in dataset.select(range(3, 35))["input_ids"]]
    torch.manual_seed(0)
    reference = list(Trainer._get_train_sampler(trainer, cached.add_column("length", expected)))
    assert ours == reference
    indices = [index for item in ours for index in (item if isinstance(item, list) else [item])]  # rebalance: batches
    assert sorted(indices) == list(range(32))


def test_caching_batches_examples_of_similar_length_and_keeps_the_order(tiny_classifier):
    """Caching ran the teacher on batches in dataset order, so each short sentence was padded to its batch's longest
    one: on SST-2 most of the teacher's time went to padding. Batches must hold examples of similar length, and each
    row must still get its own outputs, in the dataset's order (equal to running the teacher on it alone)."""
    dataset = random_token_dataset(64, seed=3, min_len=2, max_len=30)
    padded_lengths: list[int] = []
    hook = tiny_classifier.register_forward_pre_hook(
        lambda _, args, kwargs: padded_lengths.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    try:
        cached = cache_teacher_outputs(tiny_classifier, dataset, batch_size=8, hidden_states=True)
    finally:
        hook.remove()
    lengths = sorted(len(ids) for ids in dataset["input_ids"])
    fewest = sum(max(lengths[i : i + 8]) * len(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    assert sum(padded_lengths) == fewest
    alone = cache_teacher_outputs(tiny_classifier, dataset, batch_size=1, hidden_states=True)
    assert cached["input_ids"] == dataset["input_ids"]
    for ours, reference in zip(cached, alone):
        torch.testing.assert_close(torch.tensor(ours["teacher_logits"]), torch.tensor(reference["teacher_logits"]))
        torch.testing.assert_close(
            torch.tensor(ours["teacher_hidden_states"]), torch.tensor(reference["teacher_hidden_states"])
        )


def test_numpy_collators_and_numpy_batch_sizes_are_accepted(tiny_classifier):
    """A collator built with `return_tensors="np"` failed with a bare `KeyError: 'input_ids'` from inside the library,
    and `batch_size=np.int64(8)` (a length computed with numpy) was refused; both are ordinary inputs. A collator
    that returns no input_ids at all must get a message naming what it returned."""
    dataset = random_token_dataset(12, seed=4)

    def numpy_pad(features):
        return {key: value.numpy() for key, value in pad_collate(features).items()}

    ours = cache_teacher_outputs(tiny_classifier, dataset, data_collator=numpy_pad, batch_size=np.int64(4))
    reference = cache_teacher_outputs(tiny_classifier, dataset, batch_size=4)
    torch.testing.assert_close(torch.tensor(ours["teacher_logits"]), torch.tensor(reference["teacher_logits"]))
    with pytest.raises(ValueError, match="returned no `input_ids` tensor .*'input_ids': 'list'"):
        cache_teacher_outputs(tiny_classifier, dataset, data_collator=lambda features: {"input_ids": [1]})

"""The transfer set of Tang et al. (2019): each rule on a fixed seed, deduplication, labels, and refusals."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from hf_distill.augment import AugmentationRules, augment_dataset, augment_words, spacy_pos_tagger

WORDS = "the film is a charming and affecting journey through grief".split()


def test_ngram_sampling_returns_a_contiguous_ngram_of_the_input():
    """N-gram sampling that shuffles, skips words or exceeds n builds inputs no real sentence resembles."""
    rules = AugmentationRules(p_mask=0.0, p_pos=0.0, p_ng=1.0, max_ngram=5)
    rng = random.Random(0)
    lengths = set()
    for _ in range(300):
        out = augment_words(WORDS, rng, rules, mask_token="[MASK]")
        n = len(out)
        lengths.add(n)
        assert 1 <= n <= 5
        assert any(WORDS[i : i + n] == out for i in range(len(WORDS) - n + 1)), out
    assert lengths == {1, 2, 3, 4, 5}
    short = augment_words(["great", "film"], random.Random(1), rules, mask_token="[MASK]")
    assert short in (["great"], ["film"], ["great", "film"])


def test_masking_rate_and_special_tokens():
    """Masking at the wrong rate changes the transfer set's difficulty; masking a special token written in the text
    ([SEP] between two segments) corrupts the input structure the teacher reads."""
    rules = AugmentationRules(p_mask=0.1, p_pos=0.0, p_ng=0.0)
    rng = random.Random(0)
    words = [*WORDS, "[SEP]", *WORDS]
    masked = total = 0
    for _ in range(400):
        out = augment_words(words, rng, rules, mask_token="[MASK]", protected=frozenset({"[SEP]"}))
        assert len(out) == len(words) and out[len(WORDS)] == "[SEP]"
        masked += sum(word == "[MASK]" for word in out)
        total += len(words) - 1
        assert all(o in ("[MASK]", w) for o, w in zip(out, words))
    assert 0.08 < masked / total < 0.12
    everything = AugmentationRules(p_mask=1.0, p_ng=0.0)
    out = augment_words(["[CLS]", "a", "b"], rng, everything, mask_token="[MASK]", protected=frozenset({"[CLS]"}))
    assert out == ["[CLS]", "[MASK]", "[MASK]"]


def test_pos_replacement_draws_a_training_word_with_the_same_tag():
    """A replacement of another tag ('film' -> 'quickly') makes ungrammatical inputs the teacher labels arbitrarily;
    one from outside the training words brings in tokens the student never sees labelled."""
    tags = {"the": "DT", "a": "DT", "film": "NN", "movie": "NN", "story": "NN", "good": "JJ", "dull": "JJ"}

    def tagger(batch: list[list[str]]) -> list[list[str]]:
        return [[tags[word] for word in words] for words in batch]

    data = Dataset.from_dict({"sentence": ["the film good", "a movie dull", "the story good"], "label": [1, 0, 1]})
    rules = AugmentationRules(n_iter=30, p_mask=0.0, p_pos=0.5, p_ng=0.0, seed=3)
    out = augment_dataset(data, text_columns=["sentence"], mask_token="[MASK]", rules=rules, pos_tagger=tagger)
    variants = out["sentence"][3:]
    assert variants, "no variant was made"
    for sentence in variants:
        words = sentence.split()
        assert [tags[w] for w in words] == ["DT", "NN", "JJ"], sentence
    assert {w for s in variants for w in s.split()} <= set(tags)
    replaced = {s.split()[1] for s in variants}
    assert len(replaced) > 1


def test_spacy_tagger_tags_the_given_words():
    """The default tagger must tag the words as split, one tag each: a re-tokenising tagger ("don't" -> "do",
    "n't") misaligns every tag after the first contraction."""
    pytest.importorskip("spacy")
    tag = spacy_pos_tagger()
    words = "it does n't work , but the movies were fun".split()
    tags = tag([words, []])
    assert len(tags[0]) == len(words) and tags[1] == []
    assert tags[0][words.index("movies")] == "NNS" and tags[0][words.index("the")] == "DT"


def test_transfer_set_rows_labels_seed_and_deduplication():
    """Variants that keep the gold label teach the task loss labels nobody gave; duplicates over-weight short
    examples; a run that is not reproducible from its recorded seed cannot be audited."""
    labels = ClassLabel(names=["neg", "pos"])
    features = Features({"sentence": Value("string"), "label": labels, "idx": Value("int32")})
    data = Dataset.from_dict(
        {"sentence": [" ".join(WORDS), "bad", "not good at all"], "label": [1, 0, 0], "idx": [0, 1, 2]},
        features=features,
    )
    rules = AugmentationRules(n_iter=20, seed=5)
    out = augment_dataset(data, text_columns=["sentence"], mask_token="[MASK]", rules=rules)
    assert out.select(range(3))["sentence"] == data["sentence"] and out["label"][:3] == [1, 0, 0]
    assert len(out) > 3 and set(out["label"][3:]) == {-100}
    assert len(set(out["sentence"])) == len(out), "duplicates kept"
    assert all(s in out["sentence"][:3] or s not in data["sentence"] for s in out["sentence"][3:])
    again = augment_dataset(data, text_columns=["sentence"], mask_token="[MASK]", rules=rules)
    assert again["sentence"] == out["sentence"]
    other = augment_dataset(
        data, text_columns=["sentence"], mask_token="[MASK]", rules=AugmentationRules(n_iter=20, seed=6)
    )
    assert other["sentence"] != out["sentence"]
    # The one-word example can only become "[MASK]" or itself: at most one variant.
    assert sum(idx == 1 for idx in out["idx"]) <= 2
    assert asdict(rules)["seed"] == 5


def test_sentence_pairs_augment_both_columns():
    """Augmenting only the first sentence of a pair leaves half of every transfer example unchanged."""
    data = Dataset.from_dict({"s1": [" ".join(WORDS)] * 2, "s2": [" ".join(reversed(WORDS))] * 2, "label": [0, 1]})
    rules = AugmentationRules(n_iter=10, p_mask=0.3, p_ng=0.0)
    out = augment_dataset(data, text_columns=["s1", "s2"], mask_token="[MASK]", rules=rules)
    assert any("[MASK]" in s for s in out["s1"][2:]) and any("[MASK]" in s for s in out["s2"][2:])


def test_refusals_before_any_work():
    """A float label copied to the variants, a mask token that does not exist, or an empty rule set each give a
    transfer set that silently teaches the wrong thing; they must fail with the fix named."""
    regression = Dataset.from_dict({"sentence": ["a b c"], "label": [3.5]})
    with pytest.raises(ValueError, match="drop_labels=True"):
        augment_dataset(regression, text_columns=["sentence"], mask_token="[MASK]")
    dropped = augment_dataset(regression, text_columns=["sentence"], mask_token="[MASK]", drop_labels=True)
    assert "label" not in dropped.column_names and len(dropped) >= 1
    data = Dataset.from_dict({"sentence": ["a b c"], "label": [1]})
    with pytest.raises(ValueError, match="mask_token"):
        augment_dataset(data, text_columns=["sentence"], mask_token=None)
    with pytest.raises(ValueError, match="text columns"):
        augment_dataset(data, text_columns=["text"], mask_token="[MASK]")
    with pytest.raises(ValueError, match="all augmentation probabilities are 0"):
        AugmentationRules(p_mask=0.0, p_pos=0.0, p_ng=0.0)
    with pytest.raises(ValueError, match="p_mask \\+ p_pos"):
        AugmentationRules(p_mask=0.6, p_pos=0.6)
    with pytest.raises(ValueError, match="n_iter"):
        AugmentationRules(n_iter=0)
    with pytest.raises(ValueError, match="p_ng"):
        AugmentationRules(p_ng=1.5)


def test_label_column_names_other_than_label_and_odd_inputs():
    """A dataset whose gold labels sit in `labels` (the Trainer's name) was taken as unlabelled: every variant kept
    its example's gold label and entered the task loss. Non-text columns and a bare column name fail clearly."""
    data = Dataset.from_dict({"sentence": ["a b c", "d e f"], "labels": [0, 1]})
    rules = AugmentationRules(n_iter=3, seed=1)
    out = augment_dataset(data, text_columns="sentence", mask_token="[MASK]", rules=rules)
    assert out["labels"][:2] == [0, 1] and len(out) > 2 and set(out["labels"][2:]) == {-100}
    with pytest.raises(ValueError, match="label_column='target'"):
        augment_dataset(data, text_columns=["sentence"], mask_token="[MASK]", label_column="target")
    numbers = Dataset.from_dict({"sentence": [1, 2], "label": [0, 1]})
    with pytest.raises(ValueError, match="not strings"):
        augment_dataset(numbers, text_columns=["sentence"], mask_token="[MASK]")
    import numpy as np

    assert AugmentationRules(n_iter=np.int64(2), p_mask=np.float32(0.5)).n_iter == 2

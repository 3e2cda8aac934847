"""ONNX export (`hf_distill.onnx_export.export_onnx`) and the ONNX Runtime wrapper `OnnxModel`.

The models here have one layer, not the four of `conftest`: the `torch.export`-based exporter takes several seconds
per layer on a busy 2-core machine, and one layer exercises every op of the others. They are a little wider (hidden
size 64), so that the weights, not the graph's structure, dominate the file sizes compared. The exports are
module-scoped.
"""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertTokenizer,
)
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

from hf_distill.onnx_export import ONNX_CONFIG_FILE, ONNX_FILE, OnnxModel, export_onnx

from .conftest import VOCAB_SIZE, tiny_bert_config

# Measured: ORT float32 within 2e-8 of PyTorch; int8 within 7e-4 (tiny random logits are ~0.07 in size).
FP32_TOLERANCE = 1e-5
INT8_TOLERANCE = 0.01


def _model(cls: type, seed: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cls(tiny_bert_config(num_hidden_layers=1, hidden_size=64, intermediate_size=128, **overrides))


def _batch(batch_size: int, length: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids with padding: row 0 keeps 3 tokens, the last row keeps all of them, others random lengths."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB_SIZE, (batch_size, length), generator=generator)
    lengths = torch.randint(1, length + 1, (batch_size,), generator=generator)
    lengths[0], lengths[-1] = min(3, length), length
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    token_type_ids = (torch.arange(length)[None, :] >= length // 2).long().expand(batch_size, -1).contiguous()
    return {
        "input_ids": input_ids * attention_mask,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }


def _reference(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        return copied(**batch)


def _roberta_style_tokenizer(tmp_path) -> BertTokenizer:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(vocab))
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory):
    """A classifier in training mode, a snapshot of its weights, and its float32 export."""
    model = _model(BertForSequenceClassification, 0, num_labels=3).train()
    snapshot = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    directory = export_onnx(model, None, tmp_path_factory.mktemp("fp32") / "export")
    return model, snapshot, directory


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """The same classifier exported int8 with a tokenizer that has no token_type_ids (as RoBERTa's)."""
    model = _model(BertForSequenceClassification, 0, num_labels=3)
    tokenizer = _roberta_style_tokenizer(tmp_path_factory.mktemp("vocab"))
    directory = export_onnx(model, tokenizer, tmp_path_factory.mktemp("int8") / "export", int8=True)
    return model, directory


def test_fp32_matches_pytorch_on_other_shapes(classifier_export):
    """The graph must not be frozen to the example inputs' batch 2 x length 8, and padding must be masked: a static
    axis fails at other shapes, and a mask baked in from the example shifts the logits of padded rows."""
    model, _, directory = classifier_export
    onnx_model = OnnxModel.from_pretrained(directory, num_threads=1)
    assert onnx_model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert onnx_model.output_names == ["logits"] and not onnx_model.is_int8
    for batch_size, length in [(5, 13), (1, 3), (3, 40)]:
        batch = _batch(batch_size, length)
        output = onnx_model(**batch)
        assert isinstance(output, SequenceClassifierOutput) and isinstance(output.logits, torch.Tensor)
        torch.testing.assert_close(output.logits, _reference(model, batch).logits, atol=FP32_TOLERANCE, rtol=0)


def test_export_leaves_user_model_unchanged(classifier_export):
    """Exporting must work on a copy: putting the user's model in eval mode or casting/moving it would silently
    change their later training."""
    model, snapshot, _ = classifier_export
    assert model.training and all(module.training for module in model.modules())
    assert next(model.parameters()).device.type == "cpu"
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    assert all(torch.equal(state[name], snapshot[name]) for name in snapshot)


def test_export_directory_contents(classifier_export):
    """The export is one self-contained file plus the config and a record: external data (`model.onnx.data`) would be
    lost when only model.onnx is copied, and a missing config.json breaks AutoConfig loading."""
    model, _, directory = classifier_export
    assert sorted(path.name for path in directory.iterdir()) == sorted(["config.json", ONNX_CONFIG_FILE, ONNX_FILE])
    record = json.loads((directory / ONNX_CONFIG_FILE).read_text())
    assert record["int8"] is False and record["opset_version"] >= 18 and record["output_names"] == ["logits"]
    assert record["hf_distill_version"]
    assert AutoConfig.from_pretrained(directory).num_labels == model.config.num_labels


def test_defaults_and_extra_keys_like_pytorch(classifier_export):
    """A missing token_type_ids / attention_mask must mean zeros / ones as in the PyTorch model (not an ORT error),
    labels must be ignored rather than fed, and missing input_ids must raise a clear error."""
    model, _, directory = classifier_export
    onnx_model = OnnxModel.from_pretrained(directory).eval()
    batch = _batch(4, 9)
    del batch["token_type_ids"]
    expected = _reference(model, batch).logits
    output = onnx_model(**{k: v.numpy() for k, v in batch.items()}, labels=torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(output.logits, expected, atol=FP32_TOLERANCE, rtol=0)
    no_mask = onnx_model(input_ids=batch["input_ids"]).logits
    torch.testing.assert_close(no_mask, _reference(model, {"input_ids": batch["input_ids"]}).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs input_ids"):
        onnx_model(attention_mask=batch["attention_mask"])
    with pytest.raises(ValueError, match="pad every input alike"):
        onnx_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"][:, :4])


def test_save_pretrained_round_trip_and_overwrite_rules(classifier_export, tmp_path):
    """A copy must give identical outputs; saving again over a previous export replaces it but keeps the user's own
    files, while a directory of user files is refused instead of clobbered."""
    _, _, directory = classifier_export
    onnx_model = OnnxModel.from_pretrained(directory)
    target = tmp_path / "copy"
    onnx_model.save_pretrained(target)
    (target / "notes.txt").write_text("mine")
    onnx_model.save_pretrained(target)
    assert (target / "notes.txt").read_text() == "mine"
    batch = _batch(3, 7)
    torch.testing.assert_close(
        OnnxModel.from_pretrained(target)(**batch).logits, onnx_model(**batch).logits, atol=0, rtol=0
    )
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "data.csv").write_text("a,b")
    with pytest.raises(ValueError, match="no previous export"):
        onnx_model.save_pretrained(user_dir)
    assert [path.name for path in user_dir.iterdir()] == ["data.csv"]


def test_int8_roberta_style_inputs(int8_export, classifier_export):
    """A tokenizer without token_type_ids (RoBERTa) must give a graph without that input; the int8 graph must stay
    close to float32, predict the same class on most rows, and really be smaller on disk."""
    model, directory = int8_export
    onnx_model = OnnxModel.from_pretrained(directory)
    assert onnx_model.is_int8 and onnx_model.input_names == ["input_ids", "attention_mask"]
    record = json.loads((directory / ONNX_CONFIG_FILE).read_text())
    assert "tokenizer_config.json" in record["files"] and (directory / "tokenizer_config.json").is_file()
    batch = _batch(16, 12)
    del batch["token_type_ids"]
    expected = _reference(model, batch).logits
    logits = onnx_model(**batch).logits
    assert (logits - expected).abs().max() < INT8_TOLERANCE
    assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.75
    fp32_size = (classifier_export[2] / ONNX_FILE).stat().st_size
    assert (directory / ONNX_FILE).stat().st_size < 0.6 * fp32_size


def test_question_answering_two_outputs(tmp_path):
    """QA heads return two tensors; exporting only the first (or in the wrong order) would swap or lose span ends."""
    model = _model(BertForQuestionAnswering, 2)
    onnx_model = OnnxModel.from_pretrained(export_onnx(model, None, tmp_path / "qa"))
    assert onnx_model.output_names == ["start_logits", "end_logits"]
    batch = _batch(4, 11)
    output = onnx_model(**batch)
    expected = _reference(model, batch)
    assert isinstance(output, QuestionAnsweringModelOutput)
    torch.testing.assert_close(output.start_logits, expected.start_logits, atol=FP32_TOLERANCE, rtol=0)
    torch.testing.assert_close(output.end_logits, expected.end_logits, atol=FP32_TOLERANCE, rtol=0)


def test_bad_inputs_raise_and_create_nothing(tmp_path, monkeypatch, tiny_classifier):
    """Each bad argument must fail before any work, with the documented error, and leave no directory behind."""
    target = tmp_path / "out"
    with pytest.raises(TypeError, match="PreTrainedModel"):
        export_onnx(torch.nn.Linear(2, 2), None, target)
    with pytest.raises(ValueError, match="opset_version"):
        export_onnx(tiny_classifier, None, target, opset_version=11)
    assert not target.exists()
    target.write_text("a file")
    with pytest.raises(ValueError, match="is a file"):
        export_onnx(tiny_classifier, None, target)
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "model.onnx").write_text("user's own")
    with pytest.raises(ValueError, match="no previous export"):
        export_onnx(tiny_classifier, None, user_dir)
    assert (user_dir / "model.onnx").read_text() == "user's own"
    with pytest.raises(ValueError, match="holds no ONNX export"):
        OnnxModel.from_pretrained(user_dir)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"hf-distill\[onnx\]"):
        export_onnx(tiny_classifier, None, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_multiple_choice_is_refused_with_the_reason():
    """A multiple-choice model takes (batch, choices, sequence) inputs; exporting it with (batch, sequence) axes failed
    deep in the exporter with "shape '[-1, 8]' is invalid", which says nothing about the cause."""
    from transformers import BertForMultipleChoice

    with pytest.raises(ValueError, match="BertForMultipleChoice takes .batch, choices, sequence."):
        export_onnx(BertForMultipleChoice(tiny_bert_config(num_hidden_layers=1)), None, "/nonexistent/never-created")

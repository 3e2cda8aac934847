"""Int8 quantization for CPU serving (`hf_distill.quantization`) on its three backends, and saving and reloading."""

from __future__ import annotations

import copy
import gc
import sys

import pytest
import torch
from transformers import BertForSequenceClassification, BertForTokenClassification

from hf_distill.measure import size_on_disk
from hf_distill.onnx_export import ONNX_FILE, OnnxModel
from hf_distill.quantization import (
    BACKENDS,
    DEFAULT_BACKEND,
    QUANTIZATION_FILE,
    TORCH_WEIGHTS_FILE,
    load_quantized,
    quantize,
    save_quantized,
)

from .conftest import VOCAB_SIZE, tiny_bert_config

# Int8 logits of the tiny random models (|logits| ~0.07) differ from float32 by about 1e-3 (measured max: ORT 7e-4,
# torch 1.4e-3, torchao 6e-4); the bound leaves a margin while staying well below the logits themselves.
INT8_TOLERANCE = 0.01


def _batch(batch_size: int = 8, length: int = 10, seed: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB_SIZE, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 4:] = 0
    attention_mask[1, 7:] = 0
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


def _reference(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        return copied(**batch)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _assert_unchanged(model: torch.nn.Module, snapshot: dict[str, torch.Tensor], training: bool) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    assert all(type(state[name]) is torch.Tensor and torch.equal(state[name], snapshot[name]) for name in snapshot)
    assert all(module.training is training for module in model.modules())
    assert all(type(module) is not torch.ao.nn.quantized.dynamic.Linear for module in model.modules())


@pytest.fixture(scope="module")
def onnx_int8():
    """A one-layer classifier (export time grows with layers; hidden size 64 so that weights dominate its size) in
    training mode, its snapshot and its int8 model."""
    torch.manual_seed(0)
    config = tiny_bert_config(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_labels=3)
    model = BertForSequenceClassification(config).train()
    snapshot = _snapshot(model)
    return model, snapshot, quantize(model)


def test_default_backend_is_onnxruntime():
    """The default is the backend measured fastest; changing it silently would make `quantize(model)` slower."""
    assert DEFAULT_BACKEND == "onnxruntime" and DEFAULT_BACKEND in BACKENDS


def test_onnxruntime_close_unchanged_and_round_trip(onnx_int8, tmp_path):
    """The default backend must track float32, leave the user's model as given, and reload to identical outputs from
    a directory that is smaller than the float32 weights."""
    model, snapshot, quantized = onnx_int8
    assert isinstance(quantized, OnnxModel) and quantized.is_int8
    _assert_unchanged(model, snapshot, training=True)
    batch = _batch()
    expected = _reference(model, batch).logits
    logits = quantized(**batch).logits
    assert (logits - expected).abs().max() < INT8_TOLERANCE
    assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.75
    directory = save_quantized(quantized, tmp_path / "int8")
    reloaded = load_quantized(directory, num_threads=1)
    assert isinstance(reloaded, OnnxModel)
    torch.testing.assert_close(reloaded(**batch).logits, logits, atol=0, rtol=0)
    assert (directory / ONNX_FILE).stat().st_size < 0.6 * size_on_disk(model)


def test_onnxruntime_temporary_export_lives_with_the_object():
    """The temporary export behind `quantize(model, "onnxruntime")` must survive while the model is used (else
    save_pretrained fails) and be deleted with it (else every call leaks a directory)."""
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(num_hidden_layers=1, num_labels=5))
    quantized = quantize(model, "onnxruntime")
    batch = _batch()
    expected = _reference(model, batch).logits
    logits = quantized(**batch).logits
    assert logits.shape == expected.shape == (8, 10, 5)
    # Per-token logits (~0.2 in size) have int8 outliers up to ~0.04 (measured); bound the mean and the worst case.
    error = (logits - expected).abs()[batch["attention_mask"].bool()]
    assert error.mean() < INT8_TOLERANCE and error.max() < 5 * INT8_TOLERANCE
    path = quantized.path
    assert (path / ONNX_FILE).is_file()
    del quantized
    gc.collect()
    assert not path.exists()


@pytest.mark.parametrize("fixture", ["tiny_classifier", "tiny_tagger", "tiny_qa"])
def test_torch_backend_heads_and_round_trip(fixture, request, tmp_path):
    """torch's int8 copy must track float32 for each head, leave the user's model untouched, and reload with
    weights_only to the very same int8 layers and outputs."""
    model = request.getfixturevalue(fixture).train()
    snapshot = _snapshot(model)
    quantized = quantize(model, "torch")
    _assert_unchanged(model, snapshot, training=True)
    assert isinstance(quantized, type(model)) and not quantized.training
    batch = _batch()
    expected = _reference(model, batch)
    output = quantized(**batch)
    names = ["start_logits", "end_logits"] if fixture == "tiny_qa" else ["logits"]
    for name in names:
        assert (output[name] - expected[name]).abs().max() < INT8_TOLERANCE
    directory = save_quantized(quantized, tmp_path / "int8")
    reloaded = load_quantized(directory)
    assert type(reloaded.bert.encoder.layer[0].output.dense) is torch.ao.nn.quantized.dynamic.Linear
    reloaded_output = reloaded(**batch)
    for name in names:
        torch.testing.assert_close(reloaded_output[name], output[name], atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "torchao"])
def test_saved_int8_is_smaller(backend, tmp_path):
    """The saved weights must really be int8: a save that dequantizes (or stores float32 copies) would be as large as
    the float32 model. A wider model (hidden 128) keeps per-tensor file overhead from dominating the sizes."""
    torch.manual_seed(0)
    config = tiny_bert_config(num_hidden_layers=1, hidden_size=128, intermediate_size=256, num_labels=3)
    model = BertForSequenceClassification(config)
    if backend == "torchao":
        pytest.importorskip("torchao", reason='the torchao backend needs pip install "hf-distill[torchao]"')
    directory = save_quantized(quantize(model, backend), tmp_path / backend)
    assert size_on_disk(directory) < 0.5 * size_on_disk(model)
    if backend == "torch":
        state = torch.load(directory / TORCH_WEIGHTS_FILE, weights_only=True)
        weight, _ = state["bert.encoder.layer.0.output.dense._packed_params._packed_params"]
        assert weight.dtype == torch.qint8


def test_torch_backend_save_pretrained_cannot_save_it(tiny_classifier, tmp_path):
    """Documents why save_quantized exists: transformers' save_pretrained fails on torch's packed int8 parameters. If
    this starts passing, save_quantized could use save_pretrained instead."""
    quantized = quantize(tiny_classifier, "torch")
    with pytest.raises(AttributeError):
        quantized.save_pretrained(tmp_path / "plain")


def test_torch_backend_takes_plain_modules():
    """Only the torch backend works without a transformers config, so it must accept a plain nn.Module."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    quantized = quantize(module, "torch")
    inputs = torch.randn(4, 8)
    assert (quantized(inputs) - module(inputs)).abs().max() < INT8_TOLERANCE


def test_torchao_backend_round_trip(tiny_classifier, tmp_path):
    """torchao's int8 model must track float32, leave the user's model untouched and survive save and reload (calling
    quantize_ directly gives a model save_pretrained cannot save)."""
    pytest.importorskip("torchao", reason='the torchao backend needs pip install "hf-distill[torchao]"')
    model = tiny_classifier.train()
    snapshot = _snapshot(model)
    quantized = quantize(model, "torchao")
    _assert_unchanged(model, snapshot, training=True)
    batch = _batch()
    expected = _reference(model, batch).logits
    with torch.no_grad():
        logits = quantized(**batch).logits
    assert (logits - expected).abs().max() < INT8_TOLERANCE
    directory = save_quantized(quantized, tmp_path / "ao")
    with torch.no_grad():
        torch.testing.assert_close(load_quantized(directory)(**batch).logits, logits, atol=0, rtol=0)


def test_bad_inputs_raise_before_work(tiny_classifier, tmp_path, monkeypatch):
    """Each bad argument must raise the documented error before any export or copy, and create no directory."""
    with pytest.raises(ValueError, match=r"one of \('onnxruntime', 'torch', 'torchao'\), got 'tensorrt'"):
        quantize(tiny_classifier, "tensorrt")
    already = quantize(tiny_classifier, "torch")
    with pytest.raises(ValueError, match="already quantized"):
        quantize(already, "torch")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize(torch.nn.Embedding(10, 4), "torch")
    for backend in ("onnxruntime", "torchao"):
        with pytest.raises(TypeError, match="PreTrainedModel"):
            quantize(torch.nn.Sequential(torch.nn.Linear(2, 2)), backend)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torchao", None)
        with pytest.raises(ImportError, match=r"hf-distill\[torchao\]"):
            quantize(tiny_classifier, "torchao")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)
        with pytest.raises(ImportError, match=r"hf-distill\[onnx\]"):
            quantize(tiny_classifier)
    with monkeypatch.context() as patch:
        # The real setter refuses "none" on this build; replace the property to simulate a build without int8 kernels.
        patch.setattr(type(torch.backends.quantized), "engine", "none")
        with pytest.raises(RuntimeError, match="quantized engine is 'none'"):
            quantize(tiny_classifier, "torch")
    with pytest.raises(ValueError, match="not one; quantize it first"):
        save_quantized(tiny_classifier, tmp_path / "float")
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no previous export"):
        save_quantized(already, user_dir)
    assert (user_dir / "config.json").read_text() == "{}"
    with pytest.raises(ValueError, match=f"no {QUANTIZATION_FILE}"):
        load_quantized(user_dir)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["user"]


def test_pruned_models_quantize_reload_and_refuse_torchao(tiny_classifier, tmp_path):
    """A head-pruned student is the usual input to int8; the torch backend's reload must rebuild the pruned shapes
    (rebuilding the unpruned ones only worked by accident, with stale head counts), and torchao, which reloads through
    from_pretrained, must refuse it up front instead of failing after the run's training."""
    from hf_distill import prune_heads

    pruned = prune_heads(tiny_classifier, {0: [1], 2: [0]})
    quantized = quantize(pruned, "torch")
    save_quantized(quantized, tmp_path / "int8")
    reloaded = load_quantized(tmp_path / "int8")
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, quantized(**batch).logits)
    attention = reloaded.bert.encoder.layer[0].attention.self
    assert (attention.num_attention_heads, attention.all_head_size) == (1, 16)
    with pytest.raises(ValueError, match="cannot rebuild the pruned attention heads"):
        quantize(pruned, "torchao")


def test_an_fp32_export_over_an_int8_save_is_not_loaded_as_int8(onnx_int8, tmp_path):
    """`export_onnx` may replace a previous export in the same directory; if it wrote a float32 graph over an int8
    save, `load_quantized` would return float32 while the caller believes it is int8: a silent wrong result."""
    from hf_distill import export_onnx

    model, _, quantized = onnx_int8
    save_quantized(quantized, tmp_path / "int8")
    export_onnx(model, None, tmp_path / "int8")
    with pytest.raises(ValueError, match="holds a float32 graph"):
        load_quantized(tmp_path / "int8")

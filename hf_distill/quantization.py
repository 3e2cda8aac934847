"""Int8 models for serving on the CPU, through one of three backends.

`DEFAULT_BACKEND` is `"onnxruntime"`, chosen by measurement (`benchmarks/compression.py`, results in
`benchmarks/results/compression.json`: a 3-layer MiniLM student on SST-2, all backends timed interleaved in one run at
batch 1 and 32, sequence length 128, on an AMD EPYC CPU with AVX2 and without VNNI, 2 threads):

- `"onnxruntime"` (export, then ONNX Runtime's `quantize_dynamic`: int8 weights, activations quantized per batch):
  the smallest model by far, since it also quantizes the embedding table (a quarter of the fp32 size, against about
  three quarters for the other two), fast at batch 1 (ONNX Runtime's low per-call overhead), as fast as the others
  at batch 32, and within a few dev examples of fp32 accuracy.
- `"torch"` (`torch.ao.quantization.quantize_dynamic` on `nn.Linear`): about as fast as fp32 at batch 32 on that CPU;
  it needs no package beyond torch, which makes it the no-extra-dependency option. torch deprecates this API in
  favour of torchao, but it works in torch 2.13.
- `"torchao"` (`Int8DynamicActivationInt8WeightConfig`, through transformers' `TorchAoConfig`): several times
  *slower* than fp32, in eager mode and under `torch.compile` alike.

Without VNNI (or AMX) instructions none of them makes batch-32 inference much faster than fp32: int8 buys size there,
and speed at small batches.

Int8 kernels depend on the instruction set: measure on the serving CPU (`hf_distill.measure.measure_latency`) before
choosing.

A quantized model is saved with `save_quantized` and loaded with `load_quantized`. Every saved directory holds the
model's `config.json` and `quantization.json` (the backend, the files written, the `hf_distill_version`); beside
them:

- `"onnxruntime"`: the export of `hf_distill.onnx_export.export_onnx` (`model.onnx`, `onnx_config.json`, tokenizer);
- `"torch"`: `model_int8.bin`, the quantized state dict (int8 weights) saved with `torch.save` and loaded with
  `torch.load(weights_only=True)`. `save_pretrained` fails on such a model (the packed int8 parameters hold a
  `torch.dtype`, which safetensors cannot store);
- `"torchao"`: `save_pretrained`'s own files (`model.safetensors` holding the int8 tensors, `config.json` with the
  `quantization_config`).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import logging

from .onnx_export import OnnxModel, clear_previous, export_onnx, prepare_directory, require_onnx

logger = logging.get_logger(__name__)

BACKENDS = ("onnxruntime", "torch", "torchao")
DEFAULT_BACKEND = "onnxruntime"
QUANTIZATION_FILE = "quantization.json"
# `.bin`, so that `hf_distill.measure.size_on_disk(directory)` counts it; `from_pretrained` never looks for this name.
TORCH_WEIGHTS_FILE = "model_int8.bin"
_TORCH_ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")


def check_backend(backend: str) -> None:
    """Check that `backend` is one of `BACKENDS` and that the packages it needs import.

    Raises:
        ValueError: If `backend` is unknown.
        ImportError: If a package it needs is missing; the message names the extra that installs it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "onnxruntime":
        require_onnx()
    elif backend == "torchao":
        try:
            importlib.import_module("torchao")
        except ImportError as error:
            raise ImportError(
                'The "torchao" backend needs torchao; install it with pip install "hf-distill[torchao]"'
            ) from error


def is_quantized(model: Any) -> bool:
    """Whether `model` is int8 by one of the backends: an int8 `OnnxModel`, a model with torch's quantized modules,
    or one with a `quantization_config` or torchao tensor-subclass weights.

    Args:
        model (`nn.Module` or `OnnxModel`): The model.

    Returns:
        `bool`: `True` if the model is quantized.
    """
    if isinstance(model, OnnxModel):
        return model.is_int8
    if getattr(getattr(model, "config", None), "quantization_config", None) is not None:
        return True
    if getattr(model, "hf_quantizer", None) is not None:
        return True
    for module in model.modules():
        # torch's quantized modules live under torch.ao.nn.quantized (dynamic, static and reference variants).
        if type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            return True
    # torchao swaps weights for tensor subclasses (Int8Tensor, AffineQuantizedTensor, ...).
    return any(type(parameter.data) is not torch.Tensor for parameter in model.parameters())


def _validate(model: Any, backend: str) -> None:
    """Every check `quantize` makes before doing any work; the backend's packages are looked for last, so that a
    model the backend cannot take is refused as such whether or not they are installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(model, nn.Module) and not isinstance(model, OnnxModel):
        raise TypeError(
            f"quantize takes a torch nn.Module (a transformers PreTrainedModel), got {type(model).__name__}"
        )
    if isinstance(model, OnnxModel):
        raise TypeError(
            f"quantize takes the PyTorch model, got an OnnxModel ({model.path}); quantize the model it was exported "
            "from, or export it with export_onnx(..., int8=True)"
        )
    if is_quantized(model):
        raise ValueError(
            f"the {type(model).__name__} passed to quantize is already quantized; pass the float model it came from"
        )
    if backend in ("onnxruntime", "torchao") and not isinstance(model, PreTrainedModel):
        raise TypeError(
            f'backend="{backend}" needs a transformers PreTrainedModel (it exports or reloads through its config), '
            f'got {type(model).__name__}; pass a transformers model or use backend="torch"'
        )
    if backend == "torchao" and getattr(getattr(model, "config", None), "pruned_heads", None):
        raise ValueError(
            'backend="torchao" quantizes while reloading the model with from_pretrained, which cannot rebuild the '
            'pruned attention heads of this model (config.pruned_heads); use backend="onnxruntime" or "torch"'
        )
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, and int8 quantization here only replaces nn.Linear; "
            "there is nothing to quantize"
        )
    if backend == "torch" and torch.backends.quantized.engine not in _TORCH_ENGINES:
        raise RuntimeError(
            f"torch's quantized engine is {torch.backends.quantized.engine!r}, which has no int8 Linear kernel; set "
            f"torch.backends.quantized.engine to one of {torch.backends.quantized.supported_engines} that is in "
            f'{_TORCH_ENGINES}, or use backend="onnxruntime"'
        )
    check_backend(backend)


def _torch_quantize(model: nn.Module) -> nn.Module:
    """`quantize_dynamic` on the `nn.Linear` layers of an eval-mode float32 CPU copy."""
    copied = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated in favour of torchao; torchao's int8 was far slower here.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation.*")
        return torch.ao.quantization.quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8, inplace=True)


def _torchao_quantize(model: PreTrainedModel) -> PreTrainedModel:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from transformers import TorchAoConfig

    # Calling torchao's `quantize_` directly gives a model that `save_pretrained` cannot save (it raises "Attempted to
    # access the data pointer on an invalid python storage"); quantizing while loading gives one it can.
    with tempfile.TemporaryDirectory() as tmp:
        copy.deepcopy(model).to(device="cpu", dtype=torch.float32).save_pretrained(tmp)
        quantized = type(model).from_pretrained(
            tmp, quantization_config=TorchAoConfig(Int8DynamicActivationInt8WeightConfig())
        )
    return quantized.eval()


def quantize(model: nn.Module, backend: str = DEFAULT_BACKEND, *, tokenizer: Any | None = None) -> Any:
    """Make an int8 copy of `model` for serving on the CPU; `model` itself is left as it was.

    Args:
        model (`PreTrainedModel`):
            The float model. The `"torch"` backend also takes any `nn.Module` (but only a `PreTrainedModel` can be
            saved with `save_quantized`).
        backend (`str`, *optional*, defaults to `"onnxruntime"`):
            One of `BACKENDS`; see the module docstring for why ONNX Runtime is the default.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            For `"onnxruntime"`: chooses the graph's inputs and is saved with the export (see `export_onnx`).
            Ignored by the other backends.

    Returns:
        `OnnxModel` for `"onnxruntime"`; for `"torch"` and `"torchao"`, the quantized copy of the model (a
        `PreTrainedModel` when one was passed) in eval mode on the CPU.

    Raises:
        ValueError: If `backend` is unknown, the model is already quantized or has no `nn.Linear`.
        ImportError: If the backend's packages are not installed.
        TypeError: If the model is not an `nn.Module`, or not a `PreTrainedModel` for `"onnxruntime"` or `"torchao"`.
        RuntimeError: For `"torch"`, if `torch.backends.quantized.engine` has no int8 kernels.
    """
    _validate(model, backend)
    if backend == "torch":
        return _torch_quantize(model)
    if backend == "torchao":
        return _torchao_quantize(model)
    tmp = tempfile.TemporaryDirectory(prefix="hf_distill_int8_")
    try:
        export_onnx(model, tokenizer, tmp.name, int8=True)
        quantized = OnnxModel.from_pretrained(tmp.name)
    except BaseException:
        tmp.cleanup()
        raise
    # The session holds the graph in memory; the directory stays for `save_pretrained` until the object is freed.
    quantized._tmpdir = tmp
    return quantized


def _backend_of(model: Any) -> str:
    if isinstance(model, OnnxModel):
        if not model.is_int8:
            raise ValueError(
                f"the OnnxModel at {model.path} holds a float32 graph; quantize the PyTorch model with "
                'quantize(model, "onnxruntime") or export with export_onnx(..., int8=True)'
            )
        return "onnxruntime"
    if isinstance(model, PreTrainedModel):
        quantization_config = getattr(model.config, "quantization_config", None)
        method = getattr(quantization_config, "quant_method", None)
        if method is not None and str(getattr(method, "value", method)) == "torchao":
            return "torchao"
        if any(type(module).__module__.startswith("torch.ao.nn.quantized.dynamic") for module in model.modules()):
            return "torch"
    raise ValueError(
        f"save_quantized takes a model returned by hf_distill.quantization.quantize, got a {type(model).__name__} "
        "that is not one; quantize it first"
    )


def save_quantized(model: Any, path: str | os.PathLike) -> Path:
    """Save a model returned by `quantize` to the directory `path`.

    A directory holding a previous quantized save (a `quantization.json`) is replaced: the files it listed are deleted
    first and other files are kept. Any other non-empty directory is refused, so no file of yours is overwritten.

    Args:
        model (`OnnxModel` or `PreTrainedModel`): A model returned by `quantize`.
        path (`str` or `os.PathLike`): The directory to write; created if needed.

    Returns:
        `Path`: The directory written.

    Raises:
        ValueError: If the model did not come from `quantize`, or `path` is a file or a non-empty directory that holds
            no previous quantized save.
    """
    backend = _backend_of(model)
    directory, previous_files = prepare_directory(path, QUANTIZATION_FILE)
    clear_previous(directory, previous_files)
    before = set(os.listdir(directory))
    record: dict[str, Any] = {"backend": backend}
    if backend == "onnxruntime":
        model.save_pretrained(directory)
    elif backend == "torchao":
        model.save_pretrained(directory)
        record["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    else:
        model.config.save_pretrained(directory)
        torch.save(model.state_dict(), directory / TORCH_WEIGHTS_FILE)
        record["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    from hf_distill import __version__

    record["files"] = sorted(set(os.listdir(directory)) - before)
    record["hf_distill_version"] = __version__
    (directory / QUANTIZATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return directory


def _model_class(name: str) -> type[PreTrainedModel]:
    module_name, _, class_name = name.rpartition(".")
    # Only classes of transformers and hf_distill are imported: a saved file should not choose arbitrary code to run.
    if module_name.split(".")[0] in ("transformers", "hf_distill"):
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if isinstance(cls, type) and issubclass(cls, PreTrainedModel):
            return cls
    raise ValueError(f"{QUANTIZATION_FILE} names the model class {name!r}, which is not a transformers model class")


def load_quantized(path: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a model saved by `save_quantized`, on the backend named in its `quantization.json`.

    Args:
        path (`str` or `os.PathLike`): The directory.
        **kwargs: Passed to `OnnxModel.from_pretrained` for the `"onnxruntime"` backend (`num_threads`,
            `providers`); not accepted by the other backends.

    Returns:
        `OnnxModel` for `"onnxruntime"`, else the quantized `PreTrainedModel` in eval mode on the CPU.

    Raises:
        ValueError: If `path` holds no `quantization.json` or it names an unknown backend, or keyword arguments are
            given for a backend other than `"onnxruntime"`.
        ImportError: If the backend's packages are not installed.
    """
    directory = Path(path)
    marker = directory / QUANTIZATION_FILE
    if not marker.is_file():
        raise ValueError(
            f"{directory} is not a quantized export (no {QUANTIZATION_FILE}); pass a directory written by "
            "hf_distill.quantization.save_quantized"
        )
    record = json.loads(marker.read_text())
    backend = record.get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"{marker} names the backend {backend!r}; expected one of {BACKENDS}")
    check_backend(backend)
    if kwargs and backend != "onnxruntime":
        raise ValueError(f"load_quantized takes no options for backend {backend!r}, got {sorted(kwargs)}")
    if backend == "onnxruntime":
        model = OnnxModel.from_pretrained(directory, **kwargs)
        if not model.is_int8:
            raise ValueError(
                f"{directory} is marked as an int8 save ({QUANTIZATION_FILE}) but holds a float32 graph (an fp32 "
                "export_onnx wrote over it); save the int8 model again with save_quantized, or load the graph with "
                "OnnxModel.from_pretrained"
            )
        return model
    cls = _model_class(record.get("model_class", ""))
    if backend == "torchao":
        # The saved config carries the quantization_config, so from_pretrained rebuilds the int8 tensors.
        return cls.from_pretrained(directory).eval()
    config: PretrainedConfig = cls.config_class.from_pretrained(directory)
    # Built with random weights (pruned like the saved one, `hf_distill.prune_heads`), made int8 like the saved one,
    # then every tensor is replaced by the saved ones.
    pruned = getattr(config, "pruned_heads", None) or {}
    config.pruned_heads = {}
    model = cls(config)
    if pruned:
        from .head_pruning import prune_heads

        prune_heads(model, {int(layer): list(heads) for layer, heads in pruned.items()})
    model = _torch_quantize(model)
    state = torch.load(directory / TORCH_WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()

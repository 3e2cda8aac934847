"""Export a model to ONNX, optionally int8, and run the export with ONNX Runtime as if it were a transformers model.

An export is a directory, like one written by `save_pretrained`:

- `model.onnx`: the graph with its weights in one file (no external data; ONNX's own limit makes that possible up to
  2 GB);
- `config.json`: the model's config, so that `AutoConfig.from_pretrained(directory)` works;
- the tokenizer's files, when a tokenizer was given;
- `onnx_config.json`: what the graph takes and returns (`input_names`, `output_names`, `output_class`), the
  `opset_version`, whether it is `int8`, the `hf_distill_version`, and the `files` the export wrote.

The graph comes from the `torch.export`-based exporter (`torch.onnx.export(..., dynamo=True)`), with the batch and
sequence axes dynamic. The legacy TorchScript exporter is not used: it is deprecated, and tracing freezes the
data-dependent branches of transformers' attention-mask code to whatever the example inputs took.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput, logging

logger = logging.get_logger(__name__)

ONNX_FILE = "model.onnx"
ONNX_CONFIG_FILE = "onnx_config.json"
INSTALL_HINT = 'pip install "hf-distill[onnx]"'

# The inputs the export knows how to feed: the ones BERT-family tokenizers produce.
SUPPORTED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Output fields that are not served: the loss needs labels, and hidden states and attentions are per-layer tuples.
_SKIPPED_OUTPUTS = frozenset({"loss", "hidden_states", "attentions", "cross_attentions", "past_key_values"})
# The dynamo exporter translates from opset 18 on.
_MIN_OPSET = 18


def require_onnx() -> None:
    """Check that the packages of the `onnx` extra import.

    Raises:
        ImportError: If `onnx`, `onnxscript` or `onnxruntime` is missing, naming the extra that installs them.
    """
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export and inference need {', '.join(missing)}; install them with {INSTALL_HINT}")


def _version() -> str:
    from hf_distill import __version__

    return __version__


def prepare_directory(path: str | os.PathLike, marker: str) -> tuple[Path, list[str]]:
    """Check that `path` may receive an export whose marker file is `marker`, without touching the disk.

    An absent or empty directory is fine. A directory holding `marker` is a previous export: the files that export
    listed under `"files"` are returned, to be deleted before the new one is written; any other file there is kept.
    Any other non-empty directory, or a path that is a file, is refused so that no user file is overwritten.

    Args:
        path (`str` or `os.PathLike`): The directory.
        marker (`str`): The name of the JSON file that marks an export and lists its files.

    Returns:
        `tuple[Path, list[str]]`: The directory, and the names of the previous export's files.

    Raises:
        ValueError: If `path` is a file, or a non-empty directory that holds no previous export.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file, not a directory; pass a directory path to write the export into")
    if not directory.is_dir() or not any(directory.iterdir()):
        return directory, []
    marker_path = directory / marker
    if not marker_path.is_file():
        raise ValueError(
            f"{directory} is a non-empty directory that holds no previous export (no {marker}); refusing to write "
            "into it so that no file of yours is overwritten. Pass a new or empty directory."
        )
    previous = json.loads(marker_path.read_text())
    files = [name for name in previous.get("files", []) if (directory / name).is_file()]
    return directory, [*files, marker]


def clear_previous(directory: Path, files: Sequence[str]) -> None:
    """Delete the files of a previous export (as listed by `prepare_directory`) and create the directory."""
    for name in files:
        (directory / name).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)


def _forward_parameters(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _input_names(model: PreTrainedModel, tokenizer: Any | None) -> list[str]:
    """The graph's inputs: the tokenizer's `model_input_names` that the model's forward accepts."""
    if type(model).__name__.endswith("ForMultipleChoice"):
        # Its inputs are (batch, choices, sequence), not the (batch, sequence) every exported input is given.
        raise ValueError(
            f"export_onnx exports inputs of shape (batch, sequence); {type(model).__name__} takes (batch, choices, "
            "sequence) and is not supported. Export a sequence-classification model instead"
        )
    accepted = _forward_parameters(model)
    if tokenizer is not None:
        names = [name for name in tokenizer.model_input_names if name in accepted]
    else:
        names = [name for name in ("input_ids", "attention_mask") if name in accepted]
        if "token_type_ids" in accepted and getattr(model.config, "type_vocab_size", 1) > 1:
            names.append("token_type_ids")
    unsupported = [name for name in names if name not in SUPPORTED_INPUTS]
    if "input_ids" not in names or unsupported:
        raise ValueError(
            f"export_onnx feeds the inputs {SUPPORTED_INPUTS} and needs input_ids among them, but the tokenizer's "
            f"model_input_names accepted by {type(model).__name__}.forward are {names}; pass a tokenizer whose "
            "model_input_names are among the supported inputs, or tokenizer=None"
        )
    return names


class _Graph(nn.Module):
    """What is exported: the model called by input name, returning its served outputs as a tuple, in order."""

    def __init__(self, model: PreTrainedModel, output_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.output_names = tuple(output_names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        outputs = self.model(**{name: value for name, value in inputs.items() if value is not None}, return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def _example_inputs(names: Sequence[str], config: PretrainedConfig) -> dict[str, torch.Tensor]:
    # Batch 2 and length 8: sizes 0 and 1 would be specialised by torch.export; a padded second row keeps the
    # attention mask from being all ones.
    vocab_size = int(getattr(config, "vocab_size", 2) or 2)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (2, 8), generator=generator)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 5:] = 0
    values = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}
    return {name: values[name] for name in names}


def _quantize_onnx(source: Path, destination: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Weights int8 per tensor (embedding tables included), activations quantised per batch at run time; see the
    # quantization module's docstring for what it bought on CPU.
    quantize_dynamic(source, destination, weight_type=QuantType.QInt8)


def export_onnx(
    model: PreTrainedModel,
    tokenizer: Any | None,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    opset_version: int | None = None,
) -> Path:
    """Export `model` to ONNX in the directory `path`, like `save_pretrained` would save it.

    The graph takes the tokenizer's `model_input_names` that the model's forward accepts (BERT: `input_ids`,
    `attention_mask`, `token_type_ids`; RoBERTa tokenizers have no `token_type_ids`). Without a tokenizer it takes
    `input_ids`, `attention_mask`, and `token_type_ids` when the forward accepts it and `config.type_vocab_size > 1`.
    Every input is `int64` of shape `(batch, sequence)`, both axes dynamic. The outputs are the tensor fields of the
    model's output other than the loss, hidden states and attentions: `logits` for classification and tagging,
    `start_logits` and `end_logits` for question answering.

    The export runs on an eval-mode deep copy of the model on the CPU in float32; the model passed in is left as it
    was (device, dtype, training flag and weights).

    Writing into a directory that holds a previous export (an `onnx_config.json`) replaces it: the files that export
    listed are deleted first, and other files in the directory are kept. Any other non-empty directory is refused.

    Args:
        model (`PreTrainedModel`): The model to export.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Its `model_input_names` choose the inputs, and it is saved beside the graph. May be `None`.
        path (`str` or `os.PathLike`): The directory to write; created if needed.
        int8 (`bool`, *optional*, defaults to `False`):
            Write the dynamically quantised graph (ONNX Runtime's `quantize_dynamic`, int8 weights) as `model.onnx`.
            The float32 graph is made in a temporary directory and not kept.
        opset_version (`int`, *optional*):
            The ONNX opset, at least 18; defaults to the exporter's own.

    Returns:
        `Path`: The directory written.

    Raises:
        ImportError: If `onnx`, `onnxscript` or `onnxruntime` is not installed.
        TypeError: If `model` is not a `PreTrainedModel`.
        ValueError: If `opset_version` is below 18, the inputs include none the export supports, or `path` is a file
            or a non-empty directory that holds no previous export.
    """
    require_onnx()
    if not isinstance(model, PreTrainedModel) or not isinstance(getattr(model, "config", None), PretrainedConfig):
        raise TypeError(
            f"export_onnx takes a transformers PreTrainedModel with a config, got {type(model).__name__}; load or "
            "build the model with a transformers model class"
        )
    if opset_version is not None and (not isinstance(opset_version, int) or opset_version < _MIN_OPSET):
        raise ValueError(
            f"opset_version must be an int >= {_MIN_OPSET} (the exporter's minimum), got {opset_version!r}; pass "
            "None for the exporter's default"
        )
    input_names = _input_names(model, tokenizer)
    directory, previous_files = prepare_directory(path, ONNX_CONFIG_FILE)

    # The user's model is never put in eval mode or moved: a float32 CPU copy is exported instead.
    export_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    example = _example_inputs(input_names, export_model.config)
    with torch.no_grad():
        outputs = export_model(**example, return_dict=True)
    output_names = [
        name for name, value in outputs.items() if name not in _SKIPPED_OUTPUTS and isinstance(value, torch.Tensor)
    ]
    graph = _Graph(export_model, output_names).eval()
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence")
    dynamic_shapes = {name: {0: batch, 1: sequence} for name in input_names}

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / ONNX_FILE
        torch.onnx.export(
            graph,
            (),
            fp32_path,
            kwargs=example,
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=opset_version,
            # One file: ONNX's protobuf limit allows it up to 2 GB, far above a BERT-family student.
            external_data=False,
            verbose=False,
        )
        import onnx

        proto = onnx.load(fp32_path)
        # The exporter annotates every node with its PyTorch stack trace and module path: debugging aid worth about
        # 150 kB per layer, and local source paths the user may not want to ship. The graph itself is unchanged.
        for node in [*proto.graph.node, *(node for function in proto.functions for node in function.node)]:
            del node.metadata_props[:]
        onnx.save(proto, fp32_path)
        opset = next(entry.version for entry in proto.opset_import if not entry.domain)
        clear_previous(directory, previous_files)
        if int8:
            _quantize_onnx(fp32_path, directory / ONNX_FILE)
        else:
            shutil.copyfile(fp32_path, directory / ONNX_FILE)

    before = set(os.listdir(directory))
    model.config.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    written = sorted({ONNX_FILE, "config.json"} | (set(os.listdir(directory)) - before))
    record = {
        "input_names": input_names,
        "output_names": output_names,
        "output_class": f"{type(outputs).__module__}.{type(outputs).__qualname__}",
        "opset_version": int(opset),
        "int8": bool(int8),
        "hf_distill_version": _version(),
        "files": [name for name in written if name != ONNX_CONFIG_FILE],
    }
    (directory / ONNX_CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(f"Exported {type(model).__name__} to {directory / ONNX_FILE} (int8={int8}, opset {opset})")
    return directory


def _output_class(name: str) -> type[ModelOutput]:
    """The recorded output class when it is one of transformers' own, else the generic `ModelOutput`."""
    module_name, _, class_name = name.rpartition(".")
    if module_name.startswith("transformers."):
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            cls = None
        if isinstance(cls, type) and issubclass(cls, ModelOutput):
            return cls
    return ModelOutput


class OnnxModel:
    """An ONNX Runtime session over an export of `export_onnx`, called like a transformers model for inference.

    `model(**batch)` takes the inputs by name as torch tensors or numpy arrays and returns the model's usual output
    class (`SequenceClassifierOutput`, `QuestionAnsweringModelOutput`, ...) holding float32 CPU torch tensors. It
    serves inference only: keys the graph does not take (`labels`, `return_dict`, ...) are ignored and no loss is
    computed. As in the PyTorch model, a missing `attention_mask` means all ones and missing `token_type_ids` mean all
    zeros; `input_ids` are required.

    Use `OnnxModel.from_pretrained(directory)` to build one.

    Attributes:
        config (`PretrainedConfig`): The exported model's config.
        input_names (`list[str]`): The graph's inputs, in order.
        output_names (`list[str]`): The graph's outputs, in order.
        is_int8 (`bool`): Whether the graph is the int8 one.
        path (`Path`): The export directory the model was loaded from.
    """

    def __init__(self, session: Any, config: PretrainedConfig, record: Mapping[str, Any], path: Path):
        self.session = session
        self.config = config
        self.path = path
        self.input_names: list[str] = list(record["input_names"])
        self.output_names: list[str] = list(record["output_names"])
        self.is_int8 = bool(record["int8"])
        self.opset_version = int(record["opset_version"])
        self._record = dict(record)
        self._output_cls = _output_class(record.get("output_class", ""))
        # Set by `hf_distill.quantization.quantize`: a temporary export directory that lives as long as this object.
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> OnnxModel:
        """Load an export written by `export_onnx` (or `OnnxModel.save_pretrained`).

        The graph's bytes are read into the session, which therefore does not depend on the file afterwards.

        Args:
            path (`str` or `os.PathLike`): The export directory.
            num_threads (`int`, *optional*):
                ONNX Runtime's intra-op threads (`SessionOptions.intra_op_num_threads`); defaults to its own choice.
            providers (`Sequence[str]`, *optional*, defaults to `["CPUExecutionProvider"]`):
                ONNX Runtime execution providers, in order of preference.

        Returns:
            `OnnxModel`: The loaded model.

        Raises:
            ImportError: If `onnxruntime` is not installed.
            ValueError: If `path` holds no export, or `num_threads` is below 1.
        """
        require_onnx()
        import onnxruntime

        directory = Path(path)
        if not (directory / ONNX_CONFIG_FILE).is_file() or not (directory / ONNX_FILE).is_file():
            raise ValueError(
                f"{directory} holds no ONNX export ({ONNX_FILE} and {ONNX_CONFIG_FILE}); write one with "
                "hf_distill.onnx_export.export_onnx"
            )
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        record = json.loads((directory / ONNX_CONFIG_FILE).read_text())
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        session = onnxruntime.InferenceSession(
            (directory / ONNX_FILE).read_bytes(),
            sess_options=options,
            providers=list(providers) if providers is not None else ["CPUExecutionProvider"],
        )
        config = AutoConfig.from_pretrained(directory)
        return cls(session, config, record, directory)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Copy the export (graph, config, tokenizer files, `onnx_config.json`) to another directory.

        The rules of `export_onnx` apply: a previous export there is replaced, any other non-empty directory refused.

        Args:
            path (`str` or `os.PathLike`): The directory to write.

        Returns:
            `Path`: The directory written.

        Raises:
            ValueError: If `path` is a file or a non-empty directory that holds no previous export.
        """
        destination = Path(path)
        if destination.resolve() == self.path.resolve():
            return destination
        destination, previous_files = prepare_directory(destination, ONNX_CONFIG_FILE)
        clear_previous(destination, previous_files)
        for name in [*self._record["files"], ONNX_CONFIG_FILE]:
            shutil.copyfile(self.path / name, destination / name)
        return destination

    def eval(self) -> OnnxModel:
        """Do nothing and return the model: an ONNX graph is always in inference mode."""
        return self

    @property
    def training(self) -> bool:
        return False

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _feed(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if inputs.get("input_ids") is None:
            raise ValueError(
                f"OnnxModel needs input_ids (its graph takes {self.input_names}), got only {sorted(inputs)}; pass the "
                "tokenizer's output, e.g. model(**tokenizer(texts, return_tensors='pt'))"
            )
        arrays: dict[str, np.ndarray] = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            arrays[name] = np.asarray(value).astype(np.int64, copy=False)
        shape = arrays["input_ids"].shape
        if len(shape) != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence), got shape {shape}")
        for name, array in arrays.items():
            if array.shape != shape:
                raise ValueError(
                    f"{name} has shape {array.shape} but input_ids has shape {shape}; pad every input alike"
                )
        if "attention_mask" in self.input_names and "attention_mask" not in arrays:
            arrays["attention_mask"] = np.ones(shape, dtype=np.int64)
        if "token_type_ids" in self.input_names and "token_type_ids" not in arrays:
            arrays["token_type_ids"] = np.zeros(shape, dtype=np.int64)
        return arrays

    def forward(self, **inputs: Any) -> ModelOutput:
        """Run the graph.

        Args:
            **inputs: The inputs by name (`input_ids`, and optionally `attention_mask`, `token_type_ids`), as torch
                tensors, numpy arrays or nested lists of shape `(batch, sequence)`. Other keys are ignored.

        Returns:
            `ModelOutput`: The model's output class with the graph's outputs as CPU torch tensors.

        Raises:
            ValueError: If `input_ids` is missing, or the inputs are not 2-D or differ in shape.
        """
        arrays = self._feed(inputs)
        values = self.session.run(self.output_names, arrays)
        return self._output_cls(**{name: torch.from_numpy(value) for name, value in zip(self.output_names, values)})

    __call__ = forward

    def __repr__(self) -> str:
        return (
            f"OnnxModel(path={str(self.path)!r}, inputs={self.input_names}, outputs={self.output_names}, "
            f"int8={self.is_int8})"
        )

"""How big and how fast models are: parameters, size on disk, interleaved latency, and the machine and versions a
figure was measured on."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)


def count_parameters(model: nn.Module) -> int:
    """Count the unique parameters of `model`: a weight shared by several modules counts once.

    Tied weights (a masked-LM decoder tied to the word embeddings) are one `nn.Parameter` reached under two names;
    `model.parameters()` yields it once. Distinct `Parameter` objects that view the same memory are also counted once.
    Buffers (position ids, running statistics) are not parameters and are not counted.

    Args:
        model (`nn.Module`): The model.

    Returns:
        `int`: The number of parameter elements.
    """
    seen: set[tuple[Any, ...]] = set()
    total = 0
    for parameter in model.parameters():
        # Meta tensors have no memory (data_ptr 0); only their identity tells them apart.
        pointer = parameter.data_ptr()
        key = (parameter.device, pointer, parameter.shape) if pointer else (id(parameter),)
        if key not in seen:
            seen.add(key)
            total += parameter.numel()
    return total


def _weight_files(directory: Path) -> list[Path]:
    """The files a model is loaded from: safetensors if there are any, else PyTorch `.bin` (the int8 weights of
    `save_quantized(backend="torch")` among them), else an ONNX graph with its external data."""
    safetensors = sorted(directory.glob("*.safetensors"))
    if safetensors:
        return safetensors
    # `Trainer` writes its arguments as `training_args.bin`, which holds no weights.
    binaries = sorted(path for path in directory.glob("*.bin") if path.name != "training_args.bin")
    if binaries:
        return binaries
    return sorted(directory.glob("*.onnx")) + sorted(directory.glob("*.onnx.data"))


def size_on_disk(model_or_dir: Any) -> int:
    """Measure the bytes a model's weights take on disk.

    For a directory, the weight files at its top level are summed: the `*.safetensors` files, or when there are none
    the `*.bin` files (`training_args.bin` excluded), as `from_pretrained` prefers safetensors, or else the ONNX graph
    (`*.onnx` and its external `*.onnx.data`). Checkpoint sub-folders are not counted. A model is saved to a temporary
    directory, which is then measured: with `save_pretrained` (safetensors, tied weights stored once; the size is that
    of the model's current dtype), or `hf_distill.save_quantized` for an int8 model of `quantize(backend="torch")`,
    whose packed weights `save_pretrained` cannot write. An `OnnxModel` saves its graph.

    Args:
        model_or_dir (`PreTrainedModel`, `OnnxModel`, `str` or `os.PathLike`): A model, or a directory it was saved to.

    Returns:
        `int`: The size in bytes.

    Raises:
        ValueError: If the directory does not exist or holds no weight file.
        TypeError: If `model_or_dir` is neither a model with `save_pretrained` nor a path.
    """
    if not isinstance(model_or_dir, (str, os.PathLike)):
        if not hasattr(model_or_dir, "save_pretrained"):
            raise TypeError(
                "size_on_disk takes a transformers PreTrainedModel, an OnnxModel or a directory, got "
                f"{type(model_or_dir).__name__}"
            )
        # Imported here: `quantization` pulls in the ONNX exporter, which measuring a plain model does not need.
        from .quantization import is_quantized, save_quantized

        with tempfile.TemporaryDirectory() as tmp:
            if is_quantized(model_or_dir):
                save_quantized(model_or_dir, tmp)
            else:
                model_or_dir.save_pretrained(tmp)
            return size_on_disk(tmp)
    directory = Path(model_or_dir)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory; pass a model or a folder written by save_pretrained")
    files = _weight_files(directory)
    if not files:
        raise ValueError(f"{directory} holds no *.safetensors, *.bin or *.onnx weight file")
    return sum(path.stat().st_size for path in files)


def _device_of(model: Callable[..., Any]) -> torch.device:
    """The device of a module's first parameter; the CPU for a parameterless module or a callable such as
    `OnnxModel`, which takes CPU tensors."""
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


def measure_latency(
    models: Mapping[str, Callable[..., Any]],
    *,
    vocab_size: int,
    batch_sizes: Sequence[int] = (1, 32),
    seq_len: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Time the forward pass of several models on the same random inputs, interleaved, in one run.

    For each batch size, the models are first run `warmup` times each, then `repeats` rounds follow in which every
    model runs once, in turn. The order rotates from round to round (A B, B A, ...) so that no model always runs in the
    other's wake. Machine noise (frequency scaling, other processes) therefore hits every model alike, which makes the
    speedup ratio the reliable figure on a shared or noisy machine; the absolute times are not, and say little beyond
    the machine and the moment they were taken on.

    Inputs are `input_ids` drawn uniformly from `[0, vocab_size)` and an all-ones `attention_mask` of shape
    `(batch_size, seq_len)`, so no padding shortens the work. Models run in eval mode under `torch.inference_mode()`
    on the device their parameters are on; afterwards every module's training flag and torch's thread count are
    restored to what they were, and no weight is changed.

    On a machine whose cores are busy with other work, more threads than free cores makes every operation wait for the
    slowest thread, and a small model can run a hundred times slower than on one thread; `num_threads=1` measures
    the model rather than the contention.

    Args:
        models (`Mapping[str, Callable]`):
            The models by display name. The first is the reference (e.g. the teacher) that speedups are relative to.
            Each must accept `input_ids` and `attention_mask` keyword arguments: a PyTorch module, or a callable such
            as `hf_distill.OnnxModel` (ONNX Runtime, on the CPU; it uses its own threads, set when it is loaded).
        vocab_size (`int`):
            The token ids are drawn below this; use the smallest vocabulary of the models.
        batch_sizes (`Sequence[int]`, *optional*, defaults to `(1, 32)`):
            The batch sizes to time.
        seq_len (`int`, *optional*, defaults to `128`):
            The sequence length of every input; at most the models' `max_position_embeddings`.
        repeats (`int`, *optional*, defaults to `10`):
            Timed rounds per batch size; the median over them is reported.
        warmup (`int`, *optional*, defaults to `2`):
            Untimed runs per model and batch size before the timed rounds (first calls allocate and select kernels).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the generator that draws the token ids.
        num_threads (`int`, *optional*):
            torch's intra-op thread count during the measurement; defaults to the current one.

    Returns:
        `dict[str, Any]`: `"reference"` (the first name), `"batch_sizes"`, `"seq_len"`, `"repeats"`, `"warmup"`,
        `"num_threads"` (torch's intra-op threads during the measurement), `"devices"` (by model name) and
        `"results"`: for each model name, for each batch size (an `int` key, a string once written as JSON):

        - `"median_s"`: the median forward time in seconds;
        - `"throughput"`: examples per second, `batch_size / median_s`;
        - `"speedup"`: how many times faster than the reference, the median over rounds of the reference's time
          divided by this model's time in the same round (1.0 for the reference); pairing the two times of a round
          cancels the noise they share, better than a ratio of two medians would;
        - `"times_s"`: the time of every round, in seconds.

    Raises:
        ValueError: If `models` is empty, `seq_len` exceeds a model's `max_position_embeddings`, or a batch size,
            `seq_len`, `repeats`, `warmup`, `vocab_size` or `num_threads` is out of range.
    """
    if not models:
        raise ValueError("measure_latency needs at least one model")
    if (
        min(vocab_size, seq_len, repeats, *batch_sizes) < 1
        or warmup < 0
        or (num_threads is not None and num_threads < 1)
    ):
        raise ValueError(
            f"measure_latency needs vocab_size, seq_len, repeats, batch sizes and num_threads >= 1 and warmup >= 0, "
            f"got vocab_size={vocab_size}, seq_len={seq_len}, repeats={repeats}, warmup={warmup}, "
            f"batch_sizes={tuple(batch_sizes)}, num_threads={num_threads}"
        )
    for name, model in models.items():
        max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(max_positions, int) and seq_len > max_positions:
            raise ValueError(
                f"seq_len={seq_len} exceeds the max_position_embeddings={max_positions} of model {name!r}; pass a "
                "smaller seq_len"
            )

    batch_sizes = list(dict.fromkeys(batch_sizes))
    names = list(models)
    reference = names[0]
    devices = {name: _device_of(model) for name, model in models.items()}
    modules = {name: model for name, model in models.items() if isinstance(model, nn.Module)}
    flags = {name: [(module, module.training) for module in model.modules()] for name, model in modules.items()}
    generator = torch.Generator().manual_seed(seed)
    times: dict[str, dict[int, list[float]]] = {name: {} for name in names}

    def forward(name: str, inputs: dict[str, torch.Tensor]) -> float:
        device = devices[name]
        batch = {key: value.to(device) for key, value in inputs.items()}
        start = time.perf_counter()
        models[name](**batch)
        if device.type == "cuda":
            # GPU kernels run asynchronously; without this sync the timer would stop at the launch, not the result.
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    previous_threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        threads_used = torch.get_num_threads()
        for model in modules.values():
            model.eval()
        with torch.inference_mode():
            for batch_size in batch_sizes:
                inputs = {
                    "input_ids": torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator),
                    "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
                }
                for _ in range(warmup):
                    for name in names:
                        forward(name, inputs)
                rounds: list[dict[str, float]] = []
                for r in range(repeats):
                    order = names[r % len(names) :] + names[: r % len(names)]
                    rounds.append({name: forward(name, inputs) for name in order})
                for name in names:
                    times[name][batch_size] = [round_times[name] for round_times in rounds]
    finally:
        torch.set_num_threads(previous_threads)
        for module_flags in flags.values():
            for module, training in module_flags:
                module.training = training

    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name in names:
        results[name] = {}
        for batch_size, model_times in times[name].items():
            median = statistics.median(model_times)
            # Exactly 1.0 for the reference itself.
            speedup = statistics.median(ref / own for ref, own in zip(times[reference][batch_size], model_times))
            results[name][batch_size] = {
                "median_s": median,
                "throughput": batch_size / median,
                "speedup": speedup,
                "times_s": model_times,
            }
        logger.info(
            "Latency of %r at seq_len %d: %s",
            name,
            seq_len,
            ", ".join(
                f"batch {size}: {entry['median_s'] * 1e3:.2f} ms ({entry['speedup']:.2f}x)"
                for size, entry in results[name].items()
            ),
        )
    return {
        "reference": reference,
        "batch_sizes": batch_sizes,
        "seq_len": seq_len,
        "repeats": repeats,
        "warmup": warmup,
        "num_threads": threads_used,
        "devices": {name: str(device) for name, device in devices.items()},
        "results": results,
    }


def collect_versions() -> dict[str, str]:
    """The versions of Python, torch, transformers and hf_distill in use."""
    # Imported here: `hf_distill/__init__.py` defines `__version__` after importing its submodules.
    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_distill": __version__,
    }


def _cpu_name() -> str:
    """The CPU model, e.g. "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"; the architecture where it is unknown."""
    # `platform.processor()` is empty on most Linux systems; the model name is in /proc/cpuinfo there.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine the numbers were measured on: platform, processor, CPU count and torch's thread count."""
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
    }

"""The compression report: several models (a teacher, its students, their int8 and ONNX forms) side by side, with
parameters, size on disk, CPU latency measured in one interleaved run (ratios against the first model) and a GLUE
metric. `python -m hf_distill compare` (`hf-distill compare`) is its command line."""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedModel
from transformers.utils import logging

from .compression import check_int8_backend
from .glue import get_task, load_glue, make_compute_metrics, score_model, tokenize_glue
from .head_pruning import load_pruned
from .measure import collect_versions, count_parameters, machine_info, measure_latency, size_on_disk
from .onnx_export import OnnxModel, export_onnx
from .quantization import DEFAULT_BACKEND, QUANTIZATION_FILE, is_quantized, load_quantized, quantize, save_quantized

logger = logging.get_logger(__name__)

# `name` or `namespace/name`, as the Hub spells repository ids; anything else must be a local path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def load_any(path: str | os.PathLike, *, num_threads: int | None = None) -> Any:
    """Load a model directory of any form hf_distill writes, or a Hub id.

    - an ONNX export (`export_onnx`, `model.onnx` inside): an `OnnxModel` on `num_threads` ONNX Runtime threads;
    - an int8 model (`save_quantized`): `load_quantized`;
    - anything else, pruned or not: `load_pruned`, which is `from_pretrained` with the pruned heads rebuilt.

    Args:
        path (`str` or `os.PathLike`): A directory or a Hub id.
        num_threads (`int`, *optional*): ONNX Runtime's intra-op threads for an ONNX export.

    Returns:
        The model.
    """
    directory = Path(path)
    if (directory / "model.onnx").is_file():
        return OnnxModel.from_pretrained(directory, num_threads=num_threads)
    if (directory / QUANTIZATION_FILE).is_file():
        return load_quantized(directory)
    return load_pruned(path)


def _form(model: Any) -> str:
    if isinstance(model, OnnxModel):
        return "onnx int8" if model.is_int8 else "onnx fp32"
    if is_quantized(model):
        return "int8 (torchao)" if getattr(model.config, "quantization_config", None) is not None else "int8 (torch)"
    return "pytorch"


def stored_parameters(model: Any) -> int:
    """The weights a model holds, whatever their storage: `count_parameters` for a float model, plus the packed
    weights and biases of torch's int8 `Linear` layers (not `nn.Parameter`s), and the elements of an ONNX graph's
    initializers of rank 1 or more (its weights and biases; the scalar scales of an int8 graph are left out). The
    ONNX count is close, not exact: the exporter folds a few small tensors into constant nodes."""
    if isinstance(model, OnnxModel):
        import onnx

        graph = onnx.load(Path(model.path) / "model.onnx").graph
        return sum(math.prod(tensor.dims) for tensor in graph.initializer if len(tensor.dims) >= 1)
    total = count_parameters(model)
    for module in model.modules():
        if type(module).__module__.startswith("torch.ao.nn.quantized.dynamic"):
            weight, bias = module._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


def check_compare_arguments(
    models: Sequence[str],
    *,
    task: str | None,
    glue_dir: str | None,
    int8: bool,
    int8_backend: str,
    onnx: bool,
    batch_sizes: Sequence[int],
    seq_len: int,
    repeats: int,
    max_eval_samples: int | None = None,
    num_threads: int | None = None,
) -> None:
    """Check `compare`'s arguments before any model is loaded; each error names the value and the fix.

    Raises:
        ValueError: Fewer than two models, a local-looking path that does not exist, an unknown task, a missing GLUE
            directory, a batch size, `seq_len` or `repeats` below 1.
        ImportError: A backend or ONNX package missing (see `check_int8_backend`).
    """
    if len(models) < 2:
        raise ValueError(
            f"compare takes a teacher and at least one student, got {len(models)} model(s): {list(models)}"
        )
    for name in models:
        if not Path(name).exists() and not _HUB_ID.fullmatch(name):
            raise ValueError(f"model {name!r} is neither an existing directory nor a Hub id; check the path")
    if task is not None:
        get_task(task)
    if glue_dir is not None and not Path(glue_dir).is_dir():
        raise ValueError(f"--glue_dir {glue_dir!r} is not a directory; pass the folder holding the GLUE tasks")
    if glue_dir is not None and task is None:
        raise ValueError("--glue_dir is given but no --task; pass --task (e.g. sst2) to score the models")
    if int8:
        check_int8_backend(int8_backend)
    if onnx:
        check_int8_backend("onnxruntime")
    if max_eval_samples is not None and max_eval_samples < 1:
        raise ValueError(f"--max_eval_samples must be >= 1, got {max_eval_samples}; leave it out to score every row")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"--threads must be >= 1, got {num_threads}; leave it out for torch's current count")
    if min(seq_len, repeats, *batch_sizes) < 1:
        raise ValueError(
            f"batch sizes, --seq_len and --repeats must be >= 1, got batch sizes {list(batch_sizes)}, seq_len "
            f"{seq_len}, repeats {repeats}"
        )


def compare(
    models: Sequence[str],
    *,
    task: str | None = None,
    glue_dir: str | None = None,
    max_eval_samples: int | None = None,
    int8: bool = False,
    int8_backend: str = DEFAULT_BACKEND,
    onnx: bool = False,
    batch_sizes: Sequence[int] = (1, 32),
    seq_len: int = 128,
    repeats: int = 10,
    num_threads: int | None = None,
    eval_batch_size: int = 64,
) -> dict[str, Any]:
    """Compare models on size, speed and (with `task`) quality: one row per model, the first is the reference.

    Each PyTorch model given also gets an int8 row (`int8`, with `int8_backend`) and an ONNX Runtime fp32 row
    (`onnx`), made here. Latency is measured for all rows in one interleaved run (`measure_latency`), so the speedups
    against the first model are ratios taken under the same machine load. Sizes are the bytes of the saved weights:
    safetensors for PyTorch models, `model.onnx` for ONNX, the int8 file for int8 models.

    Args:
        models (`Sequence[str]`): Directories or Hub ids: the teacher first, then the students. A directory may hold
            a PyTorch model (pruned or not), an int8 model (`save_quantized`) or an ONNX export (`export_onnx`).
        task (`str`, *optional*): A GLUE task to score every model on (its validation split or splits).
        glue_dir (`str`, *optional*): Local GLUE files (the original layout); the Hub otherwise.
        max_eval_samples (`int`, *optional*): Score on the first rows of each validation split only.
        int8 (`bool`), int8_backend (`str`): Add an int8 row per PyTorch model, with this backend.
        onnx (`bool`): Add an ONNX Runtime fp32 row per PyTorch model.
        batch_sizes (`Sequence[int]`), seq_len (`int`), repeats (`int`): The latency measurement.
        num_threads (`int`, *optional*): torch's and ONNX Runtime's threads; defaults to torch's current count.
        eval_batch_size (`int`, *optional*, defaults to 64): Rows per forward pass when scoring.

    Returns:
        `dict[str, Any]`: `rows` (name, source, form, parameters, size_bytes, latency_ms and speedup by batch size,
        metrics), `reference`, `task`, `main_metric`, `latency` (the full `measure_latency` result), `machine` and
        `versions`.
    """
    check_compare_arguments(
        models,
        task=task,
        glue_dir=glue_dir,
        int8=int8,
        int8_backend=int8_backend,
        onnx=onnx,
        batch_sizes=batch_sizes,
        seq_len=seq_len,
        repeats=repeats,
        max_eval_samples=max_eval_samples,
        num_threads=num_threads,
    )
    threads = num_threads or torch.get_num_threads()
    names: list[str] = []
    for source in models:
        name = Path(source).resolve().name if Path(source).exists() else str(source)
        names.append(name if name not in names else f"{name} ({len(names)})")
    loaded = {}
    for name, source in zip(names, models):
        try:
            loaded[name] = load_any(source, num_threads=threads)
        except OSError as error:  # a misspelt local directory reads as a Hub id, and fails to download
            raise ValueError(
                f"model {source!r} is not a local directory, and loading it as a Hub id failed: {error}"
            ) from error
    tokenizer = None
    for source in models:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            break
        except (OSError, ValueError):
            continue

    with tempfile.TemporaryDirectory() as scratch:
        rows: dict[str, dict[str, Any]] = {}
        runnable: dict[str, Any] = {}
        for name, source in zip(names, models):
            model = loaded[name]
            is_torch = isinstance(model, PreTrainedModel) and not is_quantized(model)
            size = size_on_disk(source) if Path(source).is_dir() else size_on_disk(model)
            parameters = stored_parameters(model)
            rows[name] = {
                "name": name,
                "source": str(source),
                "form": _form(model),
                "parameters": parameters,
                "size_bytes": size,
            }
            runnable[name] = model
            if not is_torch:
                continue
            if int8:
                row_name = f"{name} int8 ({int8_backend})"
                quantized = quantize(model, int8_backend, tokenizer=tokenizer)
                path = Path(scratch) / f"{len(runnable)}"
                save_quantized(quantized, path)
                rows[row_name] = {
                    "name": row_name,
                    "source": str(source),
                    "form": f"int8 ({int8_backend})",
                    "parameters": parameters,
                    "size_bytes": size_on_disk(path),
                }
                runnable[row_name] = quantized
            if onnx:
                row_name = f"{name} onnx"
                path = export_onnx(model, tokenizer, Path(scratch) / f"{len(runnable)}")
                exported = OnnxModel.from_pretrained(path, num_threads=threads)
                rows[row_name] = {
                    "name": row_name,
                    "source": str(source),
                    "form": "onnx fp32",
                    "parameters": parameters,
                    "size_bytes": size_on_disk(path),
                }
                runnable[row_name] = exported

        vocab_size = min(
            model.config.vocab_size for model in runnable.values() if getattr(model, "config", None) is not None
        )
        latency = measure_latency(
            runnable,
            vocab_size=vocab_size,
            batch_sizes=batch_sizes,
            seq_len=seq_len,
            repeats=repeats,
            num_threads=threads,
        )
        for name, row in rows.items():
            timing = latency["results"][name]
            row["latency_ms"] = {size: entry["median_s"] * 1e3 for size, entry in timing.items()}
            row["speedup"] = {size: entry["speedup"] for size, entry in timing.items()}

        main_metric = None
        if task is not None:
            glue_task = get_task(task)
            if tokenizer is None:
                raise ValueError(f"none of {list(models)} holds a tokenizer, so {task} cannot be tokenised")
            raw = load_glue(glue_task, glue_dir=glue_dir, require_train=False)
            # The validation splits alone: nothing here trains.
            raw = DatasetDict({split: raw[split] for split in glue_task.validation_splits})
            data = tokenize_glue(raw, glue_task, tokenizer, max_seq_length=seq_len, max_eval_samples=max_eval_samples)
            eval_sets = {split: data[split] for split in glue_task.validation_splits}
            compute_metrics = make_compute_metrics(glue_task)
            collator = DataCollatorWithPadding(tokenizer)
            for name, model in runnable.items():
                metrics = score_model(
                    model,
                    eval_sets,
                    data_collator=collator,
                    compute_metrics=compute_metrics,
                    batch_size=eval_batch_size,
                )
                rows[name]["metrics"] = {key.removeprefix("eval_"): value for key, value in metrics.items()}
            main_metric = glue_task.main_metric
            if len(glue_task.validation_splits) > 1:
                main_metric = f"{glue_task.validation_splits[0]}_{main_metric}"
    return {
        "reference": names[0],
        "task": task,
        "main_metric": main_metric,
        "rows": list(rows.values()),
        "latency": latency,
        "machine": machine_info(),
        "versions": collect_versions(),
    }


def format_comparison(result: Mapping[str, Any]) -> str:
    """Render `compare`'s result as a plain-text table, one row per model."""
    sizes = result["latency"]["batch_sizes"]
    metric = result.get("main_metric")
    header = [
        "model",
        "form",
        "parameters",
        "size (MB)",
        *(f"b{size} ms" for size in sizes),
        *(f"b{size} speedup" for size in sizes),
        *([metric] if metric else []),
    ]
    table = [header]
    for row in result["rows"]:
        value = row.get("metrics", {}).get(metric) if metric else None
        table.append(
            [
                row["name"],
                row["form"],
                f"{row['parameters']:,}" if row["parameters"] is not None else "n/a",
                f"{row['size_bytes'] / 1e6:.2f}",
                *(f"{row['latency_ms'][size]:.2f}" for size in sizes),
                *(f"{row['speedup'][size]:.2f}x" for size in sizes),
                *([f"{value:.4f}" if isinstance(value, float) else "n/a"] if metric else []),
            ]
        )
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = [
        "  ".join(f"{cell:<{widths[i]}}" if i < 2 else f"{cell:>{widths[i]}}" for i, cell in enumerate(line)).rstrip()
        for line in table
    ]
    note = (
        f"Latency: median of {result['latency']['repeats']} interleaved rounds at sequence length "
        f"{result['latency']['seq_len']}, {result['latency']['num_threads']} threads; speedup against "
        f"{result['reference']} in the same round."
    )
    return "\n".join([*lines, note])

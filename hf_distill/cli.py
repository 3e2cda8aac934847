"""The `hf-distill` command line (also `python -m hf_distill`): `compare`, the compression report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .quantization import BACKENDS, DEFAULT_BACKEND


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-distill", description="hf_distill command line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare",
        help="Compare a teacher and its students: parameters, size, CPU latency, and a GLUE metric.",
        description="Compare a teacher and its students: one row per model with parameters, size on disk, CPU "
        "latency at each batch size (all models interleaved in one run; speedups against the first) and, with "
        "--task, the task's metric on its validation split. Prints a table and writes JSON.",
    )
    compare.add_argument(
        "models", nargs="+", metavar="MODEL", help="The teacher, then the students (dirs or Hub ids)."
    )
    compare.add_argument("--task", default=None, help="GLUE task to score on, e.g. sst2.")
    compare.add_argument("--glue_dir", default=None, help="Local GLUE files (original layout); the Hub otherwise.")
    compare.add_argument("--max_eval_samples", type=int, default=None, help="Score on the first N rows of dev.")
    compare.add_argument("--int8", action="store_true", help="Add an int8 row for each PyTorch model.")
    compare.add_argument("--int8_backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="The int8 backend.")
    compare.add_argument("--onnx", action="store_true", help="Add an ONNX Runtime (fp32) row for each PyTorch model.")
    compare.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32], help="Latency batch sizes.")
    compare.add_argument("--seq_len", type=int, default=128, help="Latency (and scoring) sequence length.")
    compare.add_argument("--repeats", type=int, default=10, help="Interleaved latency rounds.")
    compare.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime).")
    compare.add_argument("--output", default="compare.json", help="Where to write the JSON result.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.set_verbosity_warning()
    from .compare import compare, format_comparison

    output = Path(args.output)
    if output.is_dir():
        parser.error(f"--output {args.output!r} is a directory; pass a file name, e.g. compare.json")
    try:
        result = compare(
            args.models,
            task=args.task,
            glue_dir=args.glue_dir,
            max_eval_samples=args.max_eval_samples,
            int8=args.int8,
            int8_backend=args.int8_backend,
            onnx=args.onnx,
            batch_sizes=args.batch_sizes,
            seq_len=args.seq_len,
            repeats=args.repeats,
            num_threads=args.threads,
        )
    except (ValueError, ImportError, OSError) as error:
        # Bad input (a misspelt path is read as a Hub id and fails to load: OSError): the reason without a
        # traceback, exit status 2.
        parser.error(str(error))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    # The command's own output: the table, on standard output.
    sys.stdout.write(format_comparison(result) + f"\nWritten to {output}\n")
    return 0

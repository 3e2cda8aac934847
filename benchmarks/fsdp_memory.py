"""Memory per process of a teacher replicated in every process against one sharded across them (2 CPU processes).

    .venv/bin/python -m benchmarks.fsdp_memory [--repeats 2] [--layers 24 --hidden 1024]

Teacher: a BERT-large-sized `BertForSequenceClassification` (24 layers, hidden 1024, 335M parameters, 1.3 GB in
fp32; random weights: memory does not depend on their values). Two processes (`torch.distributed.run`, gloo), each:
resident memory measured before the teacher exists; the teacher built; for "sharded", `hf_distill.sharding.
shard_teacher(..., copy_teacher=False)` (each process keeps half, every layer gathered for its forward and freed
after); the peak counter reset (`/proc/self/clear_refs`); 3 teacher forward passes on a batch of 8 x 128 tokens
under `torch.inference_mode()`, as the trainer runs them. The teacher's cost is the peak resident memory during those
passes above the memory before the teacher: weights, gathered layers and activations. Per run, the larger of the two
processes; medians over `--repeats` alternated rounds. The processes run with `MALLOC_MMAP_THRESHOLD_=131072`:
without it glibc keeps the freed whole-teacher weights resident after sharding (the sharded run then measured more
than the replicated one), which is what a user's process does too unless it sets the same. Writes
benchmarks/results/fsdp_memory.json and refreshes the README (`summary.fsdp_teacher_memory_ratio`: sharded /
replicated, per process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, write_result
from benchmarks.render import update_readme

MODES = ("replicated", "sharded")


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_rank(mode: str, layers: int, hidden: int, output: str) -> None:
    """One process of one configuration (launched by `torch.distributed.run`)."""
    import gc

    import torch
    import torch.distributed as dist
    from transformers import BertConfig, BertForSequenceClassification

    from hf_distill import end_processes_together
    from hf_distill.sharding import local_parameter_count, process_mesh, shard_teacher

    with end_processes_together():
        dist.init_process_group("gloo")
        torch.manual_seed(0)
        config = BertConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
            intermediate_size=4 * hidden, num_labels=2,
        )  # fmt: skip
        ids = torch.randint(1000, 30000, (8, 128), generator=torch.Generator().manual_seed(1))
        gc.collect()
        before = _rss_mb("VmRSS")
        teacher = BertForSequenceClassification(config).eval()
        if mode == "sharded":
            teacher = shard_teacher(teacher, process_mesh("cpu"), copy_teacher=False)
            gc.collect()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM, the peak resident set size, to the current size
        with torch.inference_mode():
            for _ in range(3):
                teacher(input_ids=ids)
        record = {
            "rank": dist.get_rank(),
            "rss_before_mb": before,
            "teacher_peak_mb": _rss_mb("VmHWM") - before,
            "local_parameters": local_parameter_count(teacher),
        }
        Path(output, f"rank{dist.get_rank()}.json").write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--rank_of", nargs=2, help=argparse.SUPPRESS)  # internal: MODE OUTPUT_DIR, one process
    args = parser.parse_args()
    if args.rank_of is not None:
        run_rank(args.rank_of[0], args.layers, args.hidden, args.rank_of[1])
        return

    # glibc raises its mmap threshold as large blocks are freed, after which freed weights stay resident; a fixed
    # threshold returns them to the system, so the figure is what the teacher holds, not what malloc kept.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_index in range(args.repeats):
        for mode in MODES:  # alternated
            with tempfile.TemporaryDirectory() as output:
                command = [
                    sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                    "benchmarks.fsdp_memory", "--layers", str(args.layers), "--hidden", str(args.hidden),
                    "--rank_of", mode, output,
                ]  # fmt: skip
                subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
                ranks = [json.loads(Path(output, f"rank{rank}.json").read_text()) for rank in (0, 1)]
            runs[mode].append({"ranks": ranks, "teacher_peak_mb": max(r["teacher_peak_mb"] for r in ranks)})
            print(f"round {round_index + 1}: {mode}: {runs[mode][-1]['teacher_peak_mb']:.0f} MB", flush=True)
    medians = {mode: statistics.median(run["teacher_peak_mb"] for run in runs[mode]) for mode in MODES}
    parameters = runs["replicated"][0]["ranks"][0]["local_parameters"]
    summary = {
        "fsdp_teacher_memory_ratio": round(medians["sharded"] / medians["replicated"], 3),
        "replicated_teacher_peak_mb": round(medians["replicated"]),
        "sharded_teacher_peak_mb": round(medians["sharded"]),
        "teacher_parameters": parameters,
        "teacher_fp32_mb": round(parameters * 4 / 2**20),
        "processes": 2,
    }
    write_result(
        "fsdp_memory",
        config={
            "layers": args.layers,
            "hidden": args.hidden,
            "batch": [8, 128],
            "forwards": 3,
            "repeats": args.repeats,
        },
        results={"runs": runs, "median_teacher_peak_mb": medians},
        summary=summary,
    )
    update_readme()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

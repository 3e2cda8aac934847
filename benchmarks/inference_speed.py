"""Inference: CPU latency and throughput of the real MiniLM teacher against its 3-layer student.

    .venv/bin/python -m benchmarks.inference_speed [--repeats 20] [--seq_len 128]

Teacher and student run interleaved in one process (medians over rounds, speedup = median of per-round ratios), at
batch 1 and 32. Writes benchmarks/results/inference_speed.json and refreshes the README's benchmark section.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForSequenceClassification

from benchmarks.common import minilm_path, write_result
from benchmarks.render import update_readme
from hf_distill import make_student
from hf_distill.measure import count_parameters, measure_latency, size_on_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2).eval()
    student = make_student(teacher, layers=[0, 2, 4]).eval()
    latency = measure_latency(
        {"teacher": teacher, "student": student},
        vocab_size=teacher.config.vocab_size,
        batch_sizes=args.batch_sizes,
        seq_len=args.seq_len,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    models = {
        name: {"parameters": count_parameters(model), "size_on_disk_bytes": size_on_disk(model)}
        for name, model in (("teacher", teacher), ("student", student))
    }
    speedups = {b: latency["results"]["student"][b]["speedup"] for b in args.batch_sizes}
    summary = {f"inference_speedup_b{b}": speedups[b] for b in args.batch_sizes}
    summary["size_ratio"] = models["student"]["size_on_disk_bytes"] / models["teacher"]["size_on_disk_bytes"]
    summary["target_speedup_b32"] = 1.8
    summary["target_met"] = bool(speedups.get(32, 0) >= 1.8)
    write_result(
        "inference_speed",
        config=vars(args) | {"student_layers": [0, 2, 4]},
        results={"latency": latency, "models": models},
        summary=summary,
    )
    update_readme()


if __name__ == "__main__":
    main()

"""Training cost: a distillation step against a plain fine-tuning step plus the teacher forward it needs.

    .venv/bin/python -m benchmarks.train_speed [--repeats 10] [--seq_lens 64 128]

On the real MiniLM teacher and its 3-layer student (teacher layers 0, 2, 4), batch 32, in one process:
(i) a plain `Trainer` step of the student (forward, backward, optimizer step), (ii) a teacher forward alone under
`torch.inference_mode()`, (iii) a `DistillationTrainer` step with the default triple loss, (iv) the same step from
cached teacher outputs (`cache_teacher_outputs`, logits and hidden states; no teacher in memory). The four run
interleaved, in rotating order, and the medians are compared: (iii) / ((i) + (ii)) should be about 1, and
(iv) / (i) at most 1.02. The cached batch is collated beforehand, as the others are. Peak memory (resident set
size) of (i) and (iii) is measured in separate child processes, one mode each. Writes
benchmarks/results/train_speed.json and refreshes the README's benchmark section.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from benchmarks.common import ROOT, minilm_path, write_result
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs, make_student

BATCH_SIZE = 32
MODES = ("plain_step", "teacher_forward", "distill_step", "cached_step")


def make_steps(seq_len: int, output_dir: str, modes: tuple[str, ...] = MODES) -> dict[str, Callable[[], None]]:
    """The timed operations on one shared random batch; only the models the given modes need are built."""
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2).eval()
    student = make_student(teacher, layers=[0, 2, 4])
    common = dict(output_dir=output_dir, report_to="none", use_cpu=True, learning_rate=1e-4)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, teacher.config.vocab_size, (BATCH_SIZE, seq_len), generator=generator),
        "attention_mask": torch.ones(BATCH_SIZE, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (BATCH_SIZE,), generator=generator),
    }
    teacher_inputs = {k: v for k, v in batch.items() if k != "labels"}

    def train_step(trainer: Trainer, inputs: dict | None = None) -> Callable[[], None]:
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which these steps bypass
        inputs = batch if inputs is None else inputs

        def step() -> None:
            trainer.training_step(trainer.model, dict(inputs))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        return step

    def teacher_forward() -> None:
        with torch.inference_mode():
            teacher(**teacher_inputs)

    steps: dict[str, Callable[[], None]] = {}
    if "plain_step" in modes:
        steps["plain_step"] = train_step(Trainer(model=copy.deepcopy(student), args=TrainingArguments(**common)))
    if "teacher_forward" in modes:
        steps["teacher_forward"] = teacher_forward
    if "cached_step" in modes:
        features = [
            {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "label": int(label)}
            for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], batch["labels"])
        ]
        cached = cache_teacher_outputs(teacher, Dataset.from_list(features), hidden_states=True)
        cached_trainer = DistillationTrainer(
            model=copy.deepcopy(student), args=DistillationTrainingArguments(**common), train_dataset=cached
        )
        collated = cached_trainer.data_collator([cached_trainer.train_dataset[i] for i in range(BATCH_SIZE)])
        collated = dict(collated)
        steps["cached_step"] = train_step(cached_trainer, collated)
    if "distill_step" in modes:
        steps["distill_step"] = train_step(
            DistillationTrainer(model=student, teacher_model=teacher, args=DistillationTrainingArguments(**common))
        )
    return steps


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order so no mode always follows the same one
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return times


def peak_memory(mode: str, seq_len: int, steps: int = 3) -> dict[str, float]:
    """Run one mode in a child process and return its resident memory before the steps and at peak, in MiB."""
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_speed", "--memory_child", mode, "--seq_lens", str(seq_len)]
        + ["--repeats", str(steps)],
        cwd=ROOT,  # run as a module from the repository root, like the parent
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def memory_child(mode: str, seq_len: int, steps: int) -> None:
    """Build only what `mode` needs, then sample the resident set size every millisecond while its steps run."""
    with tempfile.TemporaryDirectory() as tmp:
        step = make_steps(seq_len, tmp, modes=(mode,))[mode]
        baseline = _rss_mib()
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_mib())
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        for _ in range(steps):
            step()
        done.set()
        sampler.join()
    print(json.dumps({"rss_before_mib": baseline, "peak_rss_mib": peak, "peak_increase_mib": peak - baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--memory_child", choices=["plain_step", "distill_step"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.seq_lens[0], args.repeats)
        return

    results = {}
    for seq_len in args.seq_lens:
        with tempfile.TemporaryDirectory() as tmp:
            times = time_interleaved(make_steps(seq_len, tmp), args.repeats, args.warmup)
        medians = {name: statistics.median(values) for name, values in times.items()}
        per_round = [
            d / (p + t) for p, t, d in zip(times["plain_step"], times["teacher_forward"], times["distill_step"])
        ]
        results[str(seq_len)] = {
            "median_s": medians,
            "times_s": times,
            "overhead_ratio": medians["distill_step"] / (medians["plain_step"] + medians["teacher_forward"]),
            "overhead_ratio_per_round_median": statistics.median(per_round),
            "cached_overhead_ratio": medians["cached_step"] / medians["plain_step"],
            "memory": {mode: peak_memory(mode, seq_len) for mode in ("plain_step", "distill_step")},
        }
    worst = max(r["overhead_ratio"] for r in results.values())
    summary = {
        "online_overhead_ratio": worst,
        "online_overhead_ratio_by_seq_len": {k: r["overhead_ratio"] for k, r in results.items()},
        "target_online_overhead_ratio": 1.05,
        "target_met": bool(worst <= 1.05),
        "cached_overhead_ratio": max(r["cached_overhead_ratio"] for r in results.values()),
        "cached_overhead_ratio_by_seq_len": {k: r["cached_overhead_ratio"] for k, r in results.items()},
        "target_cached_overhead_ratio": 1.02,
        "peak_rss_mib_plain_vs_distill": {
            k: [r["memory"]["plain_step"]["peak_rss_mib"], r["memory"]["distill_step"]["peak_rss_mib"]]
            for k, r in results.items()
        },
    }
    config = vars(args) | {"batch_size": BATCH_SIZE, "student_layers": [0, 2, 4], "loss": "default triple loss"}
    config.pop("memory_child")
    write_result("train_speed", config=config, results=results, summary=summary)
    update_readme()


if __name__ == "__main__":
    main()

"""Peak memory of a masked-LM distillation step against a plain masked-LM step of the same student.

    .venv/bin/python -m benchmarks.mlm_memory [--batch_size 32] [--seq_len 128] [--repeats 2]

At a 30k vocabulary the logits are the memory that matters: 32 x 128 x 30,522 fp32 values are 500 MB per model.
Distillation adds the teacher's logits and the fp32 softened distributions of `L_kd`. `hf_distill.losses._select`
keeps only the items that count before the fp32 cast and the softmax; with `kd_positions="labelled"` (the default)
those are the ~15% masked positions, with `"all"` every token.

Models: the packaged all-MiniLM-L6-v2 (6 layers, hidden 384, vocabulary 30,522) as a `BertForMaskedLM` (its head is
random: memory does not depend on the values) and `make_student` of it (layers 0, 2, 4). Data: real SST-2 train
sentences grouped into blocks of `--seq_len` tokens, masked by `hf_distill.MaskedLMCollator` (15%, 80/10/10).

Each configuration runs in a fresh process: models and data are loaded, the peak-RSS counter is reset
(`/proc/self/clear_refs`), 3 optimizer steps run, and the peak above the resident memory just before training is
the step's cost (AdamW's state included, the same in every configuration). Configurations alternate over
`--repeats` rounds; medians are reported. Writes benchmarks/results/mlm_memory.json and refreshes the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import DEFAULT_GLUE_DIR, ROOT, minilm_path, write_result
from benchmarks.render import update_readme

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "plain masked-LM step (Trainer, student only)": {"trainer": "plain"},
    "distillation, L_kd on the masked positions (default)": {"trainer": "distil", "kd_positions": "labelled"},
    "distillation, L_kd on every token": {"trainer": "distil", "kd_positions": "all"},
}
STEPS = 3


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_one(setting: dict[str, Any], batch_size: int, seq_len: int, glue_dir: str) -> dict[str, float]:
    """One configuration in this process: the peak resident memory of `STEPS` steps above the memory before them."""
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM, Trainer, TrainingArguments

    from hf_distill import (
        DistillationTrainer,
        DistillationTrainingArguments,
        MaskedLMCollator,
        load_text_corpus,
        make_student,
        tokenize_corpus,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    teacher = BertForMaskedLM.from_pretrained(minilm_path())
    student = make_student(teacher, layers=[0, 2, 4])
    corpus = load_text_corpus(glue_dir=glue_dir, glue_tasks=["sst2"])
    blocks = tokenize_corpus(corpus, tokenizer, max_seq_length=seq_len, max_train_samples=batch_size * STEPS)
    collator = MaskedLMCollator(tokenizer, seed=0)
    with tempfile.TemporaryDirectory() as output_dir:
        common = dict(
            output_dir=output_dir, per_device_train_batch_size=batch_size, max_steps=STEPS, save_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, logging_steps=STEPS, dataloader_drop_last=True,
        )  # fmt: skip
        if setting["trainer"] == "plain":
            trainer = Trainer(
                model=student, args=TrainingArguments(**common), train_dataset=blocks["train"], data_collator=collator
            )
        else:
            trainer = DistillationTrainer(
                model=student,
                teacher_model=teacher,
                args=DistillationTrainingArguments(**common, kd_positions=setting["kd_positions"]),
                train_dataset=blocks["train"],
                data_collator=collator,
            )
        before = _rss_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM, the peak resident set size, to the current size
        trainer.train()
        peak = _rss_mb("VmHWM")
    return {"rss_before_mb": before, "peak_mb": peak, "step_peak_mb": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print its JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(CONFIGURATIONS[args.one], args.batch_size, args.seq_len, args.glue_dir)))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    for round_index in range(args.repeats):
        for name in CONFIGURATIONS:  # alternated, so drift on the machine hits every configuration alike
            command = [
                sys.executable, "-m", "benchmarks.mlm_memory", "--one", name, "--batch_size", str(args.batch_size),
                "--seq_len", str(args.seq_len), "--glue_dir", args.glue_dir,
            ]  # fmt: skip
            completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1}: {name}: {runs[name][-1]['step_peak_mb']:.0f} MB", flush=True)
    medians = {name: statistics.median(run["step_peak_mb"] for run in rows) for name, rows in runs.items()}
    plain, masked, every = (medians[name] for name in CONFIGURATIONS)
    logits_mb = args.batch_size * args.seq_len * 30522 * 4 / 2**20
    summary = {
        "plain_mlm_step_peak_mb": round(plain),
        "kd_masked_step_peak_mb": round(masked),
        "kd_all_step_peak_mb": round(every),
        "kd_masked_vs_plain_ratio": round(masked / plain, 2),
        "kd_all_vs_plain_ratio": round(every / plain, 2),
        "one_logits_tensor_mb": round(logits_mb),
    }
    write_result(
        "mlm_memory",
        config={"batch_size": args.batch_size, "seq_len": args.seq_len, "repeats": args.repeats, "steps": STEPS},
        results={"configurations": list(CONFIGURATIONS), "runs": runs, "median_step_peak_mb": medians},
        summary=summary,
    )
    update_readme()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

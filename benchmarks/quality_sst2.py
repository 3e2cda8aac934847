"""Quality on real SST-2 at full scale: does distillation keep a strong teacher's accuracy, and does it beat
training without a teacher?

    .venv/bin/python -m benchmarks.quality_sst2 [--seeds 0 1 2] [--threads 1] [--train_samples N]

Teacher: the packaged all-MiniLM-L6-v2 fine-tuned on all 67,349 SST-2 train rows for 3 epochs, evaluated on the dev
set every half epoch; the best evaluation is the teacher (`teacher_with_dev_selection`, saved and reused through
benchmarks/.cache). Its outputs on the training set are cached once (`cache_teacher_outputs`). Every student sees
the same rows for the same steps (batches grouped by length: SST-2's phrases are short, and random batches pad three
times the real tokens) and is evaluated on the full SST-2 dev set (872 rows):

  (b) make_student(teacher) (layers 0, 2, 4) distilled with the default triple loss, from the cached outputs;
  (c) the same initialisation trained on the labels alone (plain Trainer, no teacher);
  (d) the same architecture with a randomly re-initialised encoder, distilled;
  (e) other layer choices, distilled (`--variants e135 e025 e012`): [1, 3, 5], [0, 2, 5], [0, 1, 2].

Each student runs once per seed; medians and spreads are reported, and the KD gain per seed (b and c share a seed's
initialisation draw and data order). Each finished run is saved on its own, so an interrupted benchmark resumes where
it stopped, and a second process can train other seeds beside the first (`--no_report --threads 1`). The teacher
saves a checkpoint at each evaluation and resumes from it. Writes benchmarks/results/quality_sst2.json and refreshes
the README; `--train_samples` runs a subset (investigations, under another `--name`).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from benchmarks.common import DEFAULT_GLUE_DIR, ROOT, minilm_path, seed_statistics, sst2_subset, write_result
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs, make_student
from hf_distill.arguments import LOSS_WEIGHT_NAMES, distillation_settings
from hf_distill.glue import (
    make_compute_metrics,
)
from hf_distill.losses import LOSS_TERMS
from hf_distill.teacher_cache import LOGITS_COLUMN

logger = logging.get_logger("benchmarks.quality_sst2")

VARIANTS = {
    "b": ("(b) layers 0,2,4, distilled (triple loss)", [0, 2, 4], "distill", False),
    "c": ("(c) layers 0,2,4, labels only, no teacher", [0, 2, 4], "task_only", False),
    "d": ("(d) random-init encoder, distilled", [0, 2, 4], "distill", True),
    "e135": ("(e) layers 1,3,5, distilled", [1, 3, 5], "distill", False),
    "e025": ("(e) layers 0,2,5, distilled", [0, 2, 5], "distill", False),
    "e012": ("(e) layers 0,1,2, distilled", [0, 1, 2], "distill", False),
}


def soft_target_stats(cached: Dataset, temperature: float) -> dict[str, float]:
    """What the teacher's targets on the training rows say beyond the labels: its accuracy on those rows, and its
    mean top probability at T=1 and at the distillation temperature (near 1: targets close to the one-hot labels)."""
    columns = cached.select_columns([LOGITS_COLUMN, "label"]).with_format("numpy")[:]
    logits, labels = torch.from_numpy(columns[LOGITS_COLUMN][:, 0]).float(), torch.from_numpy(columns["label"])
    return {
        "train_accuracy": (logits.argmax(-1) == labels).float().mean().item(),
        "mean_top_probability_t1": logits.softmax(-1).amax(-1).mean().item(),
        "temperature": temperature,
        "mean_top_probability": (logits / temperature).softmax(-1).amax(-1).mean().item(),
    }


def build_student(teacher, layers: list[int], random_encoder: bool):
    student = make_student(teacher, layers=layers)
    if random_encoder:
        # Keep the teacher's embeddings and head; re-draw every encoder layer with the model's own initialiser.
        for layer in student.base_model.encoder.layer:
            layer.apply(student._init_weights)
    return student


def teacher_with_dev_selection(
    *,
    task,
    tokenizer,
    data,
    collator,
    compute_metrics,
    directory: Path,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    warmup: float,
    sampling: str,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune MiniLM on all of `data["train"]`, evaluating on dev twice per epoch, and keep the best evaluation.

    The run saves a checkpoint at each evaluation and resumes from the last one after an interruption; the chosen
    teacher is saved to `directory / "best"` with `teacher.json` (its dev curve) written last, and reused after that.
    """
    best_dir, record_path = directory / "best", directory / "teacher.json"
    if record_path.is_file():
        return AutoModelForSequenceClassification.from_pretrained(best_dir), json.loads(record_path.read_text())
    steps_per_epoch = math.ceil(len(data["train"]) / batch_size)
    every = math.ceil(steps_per_epoch / 2)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), **task.model_config_kwargs)
    args = TrainingArguments(
        output_dir=str(directory / "checkpoints"),
        seed=0,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=128,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        warmup_steps=warmup,
        weight_decay=0.01,
        train_sampling_strategy=sampling,
        eval_strategy="steps",
        eval_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=100,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))
    trainer.save_model(str(best_dir))
    curve = [
        {"epoch": entry["epoch"], "step": entry["step"], "accuracy": entry["eval_accuracy"]}
        for entry in trainer.state.log_history
        if "eval_accuracy" in entry
    ]
    best = max(curve, key=lambda point: point["accuracy"])
    record = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "warmup": warmup,
        "sampling": sampling,
        "train_rows": len(data["train"]),
        "dev_curve": curve,
        "best": best,
    }
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return trainer.model, record


def claim(path: Path) -> bool:
    """Claim a run for this process (`<run>.claim` holds its pid), so that two processes never train the same run.
    A claim whose process is gone (an interrupted benchmark) is taken over."""
    claim_path = path.with_suffix(".claim")
    try:
        handle = os.open(claim_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(claim_path.read_text())
            if pid <= 0:
                raise ValueError(pid)
            os.kill(pid, 0)
            return False  # its process is alive
        except PermissionError:
            return False  # alive, another user's
        except (ProcessLookupError, ValueError):
            claim_path.unlink(missing_ok=True)
            return claim(path)
    os.write(handle, str(os.getpid()).encode())
    os.close(handle)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--train_samples", type=int, default=None, help="A shuffled subset (default: all 67,349).")
    parser.add_argument("--teacher_epochs", type=float, default=3.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06, help="Warm-up, as a fraction of the steps.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument(
        "--sampling",
        default="group_by_length",
        choices=["group_by_length", "random"],
        help="`train_sampling_strategy`: batches of similar lengths pad 3x fewer tokens on SST-2.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["b", "c", "d"], choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (two 1-thread runs side by side).")
    parser.add_argument("--cache_dir", default=str(ROOT / "benchmarks" / ".cache"))
    parser.add_argument("--temperature", type=float, default=None, help="Override the default (2.0).")
    for term in LOSS_TERMS.values():
        parser.add_argument(
            f"--{term.flag}", type=float, default=None, help=f"Override the default ({term.default_weight:g})."
        )
    parser.add_argument("--name", default="quality_sst2", help="Result file name (investigation runs use others).")
    parser.add_argument(
        "--no_report", action="store_true", help="Train the missing runs only (a second process beside another)."
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loss_overrides = {
        key: getattr(args, key) for key in ("temperature", *LOSS_WEIGHT_NAMES) if getattr(args, key) is not None
    }

    task, tokenizer, _, data = sst2_subset(args.glue_dir, args.train_samples, args.max_seq_length)
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    rows = len(data["train"])
    cache = Path(args.cache_dir)
    scale = "full" if args.train_samples is None else f"{rows}rows"
    teacher_dir = cache / f"teacher_sst2_{scale}_{args.teacher_epochs:g}ep_lr{args.teacher_learning_rate:g}"
    teacher, teacher_record = teacher_with_dev_selection(
        task=task,
        tokenizer=tokenizer,
        data=data,
        collator=collator,
        compute_metrics=compute_metrics,
        directory=teacher_dir,
        epochs=args.teacher_epochs,
        learning_rate=args.teacher_learning_rate,
        batch_size=args.batch_size,
        warmup=args.warmup,
        sampling=args.sampling,
    )
    teacher.eval()
    teacher_accuracy = teacher_record["best"]["accuracy"]
    distil_args = {**loss_overrides}
    temperature, weights = distillation_settings(SimpleNamespace(**distil_args))  # defaults for what is not set

    @functools.cache
    def cached_train() -> Dataset:
        # The distilled students read the teacher's outputs from a cache, computed once on disk when the first of
        # them starts (a second process training the teacher-free runs first does not compute it beside the first).
        return cache_teacher_outputs(
            teacher,
            data["train"],
            data_collator=collator,
            batch_size=128,
            hidden_states="cos" in weights,
            cache_file_name=str(teacher_dir / "outputs" / "train.arrow"),
        )

    common = dict(
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup,
        weight_decay=0.01,
        train_sampling_strategy=args.sampling,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=100,
    )

    # One file per run, keyed by everything that changes it: a resumed or extended benchmark never mixes settings,
    # and two processes (`--no_report`, other seeds) can train side by side.
    runs_dir = teacher_dir / "student_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    base_suffix = f"_lr{args.learning_rate:g}_ep{args.epochs:g}_w{args.warmup:g}_{args.sampling}"
    suffix = base_suffix + "".join(f"_{key}{value:g}" for key, value in sorted(loss_overrides.items()))

    def run_path(key: str, seed: int) -> Path:
        # The teacher-free baseline does not depend on the distillation settings.
        return runs_dir / f"{key}_seed{seed}{base_suffix if VARIANTS[key][2] == 'task_only' else suffix}.json"

    for seed in args.seeds:
        for key in args.variants:
            path = run_path(key, seed)
            if path.is_file() or not claim(path):
                continue
            description, layers, mode, random_encoder = VARIANTS[key]
            with tempfile.TemporaryDirectory() as work:
                set_seed(seed)
                student = build_student(teacher, layers, random_encoder)
                kwargs = dict(data_collator=collator, compute_metrics=compute_metrics)
                if mode == "task_only":
                    trainer = Trainer(
                        model=student,
                        args=TrainingArguments(output_dir=work, seed=seed, **common),
                        train_dataset=data["train"],
                        **kwargs,
                    )
                else:
                    trainer = DistillationTrainer(
                        model=student,
                        teacher_model=None,
                        args=DistillationTrainingArguments(output_dir=work, seed=seed, **common, **distil_args),
                        train_dataset=cached_train(),
                        **kwargs,
                    )
                train_metrics = trainer.train().metrics
                accuracy = trainer.evaluate(eval_dataset=data["validation"])["eval_accuracy"]
            run = {"accuracy": accuracy, "train_runtime_s": train_metrics["train_runtime"]}
            logger.info("%s: %.4f (teacher %.4f)", path.stem, accuracy, teacher_accuracy)
            path.write_text(json.dumps(run) + "\n")
            path.with_suffix(".claim").unlink()
            del trainer, student
    if args.no_report:
        return

    variants = {}
    for key in args.variants:
        runs = [json.loads(run_path(key, seed).read_text()) for seed in args.seeds]
        variants[key] = {"description": VARIANTS[key][0], "layers": VARIANTS[key][1], **seed_statistics(runs)}
    summary = {"teacher_accuracy": teacher_accuracy}
    if "b" in variants:
        summary["retention"] = variants["b"]["median"] / teacher_accuracy
        summary["target_retention"] = 0.985
    if "b" in variants and "c" in variants:
        summary["kd_gain_points"] = 100 * (variants["b"]["median"] - variants["c"]["median"])
        summary["target_kd_gain_points"] = 1.0
        # Seed-controlled: the same seed shares the initialisation draw and data order for (b) and (c).
        gains = [100 * (b - c) for b, c in zip(variants["b"]["accuracies"], variants["c"]["accuracies"])]
        summary["kd_gain_points_per_seed"] = gains
    if "d" in variants:
        summary["random_init_accuracy"] = variants["d"]["median"]
    soft_targets = soft_target_stats(cached_train(), temperature) if "b" in variants else None
    write_result(
        args.name,
        config=vars(args) | {"dev_rows": len(data["validation"]), "train_rows": rows},
        results={"teacher": teacher_record, "variants": variants, "soft_targets": soft_targets},
        summary=summary,
    )
    if args.name == "quality_sst2":
        update_readme()


if __name__ == "__main__":
    main()

"""Quality on real SST-2: does distillation keep the teacher's accuracy, and does it beat training without a teacher?

    .venv/bin/python -m benchmarks.quality_sst2 [--train_samples 4000] [--seeds 0 1 2]

Teacher: the packaged all-MiniLM-L6-v2, fine-tuned on a shuffled subset of real SST-2 train (the full 67k rows do not
fit this 2-core CPU budget; the subset size is recorded). Every student sees the same rows for the same steps and is
evaluated on the full SST-2 dev set (872 rows):

  (b) make_student(teacher) (layers 0, 2, 4) distilled with the default triple loss;
  (c) the same initialisation trained on the labels alone (plain Trainer, no teacher);
  (d) the same architecture with a randomly re-initialised encoder, distilled;
  (e) other layer choices, distilled: [1, 3, 5], [0, 2, 5], [0, 1, 2].

Each student runs once per seed; medians and spreads are reported. Progress is saved after every run, so an
interrupted benchmark resumes where it stopped. Writes benchmarks/results/quality_sst2.json and refreshes the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from benchmarks.common import DEFAULT_GLUE_DIR, RESULTS_DIR, ROOT, minilm_path, sst2_subset, write_result
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, make_student
from hf_distill.arguments import LOSS_WEIGHT_NAMES
from hf_distill.glue import (
    make_compute_metrics,
)
from hf_distill.losses import LOSS_TERMS
from hf_distill.teachers import evaluate_teacher, finetune_teacher

VARIANTS = {
    "b": ("(b) layers 0,2,4, distilled (triple loss)", [0, 2, 4], "distill", False),
    "c": ("(c) layers 0,2,4, labels only, no teacher", [0, 2, 4], "task_only", False),
    "d": ("(d) random-init encoder, distilled", [0, 2, 4], "distill", True),
    "e135": ("(e) layers 1,3,5, distilled", [1, 3, 5], "distill", False),
    "e025": ("(e) layers 0,2,5, distilled", [0, 2, 5], "distill", False),
    "e012": ("(e) layers 0,1,2, distilled", [0, 1, 2], "distill", False),
}


def build_student(teacher, layers: list[int], random_encoder: bool):
    student = make_student(teacher, layers=layers)
    if random_encoder:
        # Keep the teacher's embeddings and head; re-draw every encoder layer with the model's own initialiser.
        for layer in student.base_model.encoder.layer:
            layer.apply(student._init_weights)
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--teacher_epochs", type=float, default=1.0)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=2e-4)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache_dir", default=str(ROOT / "benchmarks" / ".cache"))
    parser.add_argument("--temperature", type=float, default=None, help="Override the default (2.0).")
    for term in LOSS_TERMS.values():
        parser.add_argument(
            f"--{term.flag}", type=float, default=None, help=f"Override the default ({term.default_weight:g})."
        )
    parser.add_argument("--name", default="quality_sst2", help="Result file name (investigation runs use others).")
    args = parser.parse_args()
    loss_overrides = {
        key: getattr(args, key) for key in ("temperature", *LOSS_WEIGHT_NAMES) if getattr(args, key) is not None
    }

    task, tokenizer, _, data = sst2_subset(args.glue_dir, args.train_samples, args.max_seq_length)
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    work = tempfile.mkdtemp()
    common = dict(
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=25,
    )

    teacher_dir = Path(args.cache_dir) / f"teacher_sst2_{args.train_samples}_{args.teacher_epochs:g}ep"
    set_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path(), **task.model_config_kwargs)
    teacher, _ = finetune_teacher(
        teacher,
        task=task,
        base=minilm_path(),
        args=TrainingArguments(output_dir=work, seed=0, **common),
        epochs=args.teacher_epochs,
        learning_rate=args.teacher_learning_rate,
        output_dir=teacher_dir,
        train_dataset=data["train"],
        data_collator=collator,
        processing_class=tokenizer,
    )
    teacher.eval()
    teacher_metrics = evaluate_teacher(
        teacher,
        args=TrainingArguments(output_dir=work, **common),
        eval_sets={"validation": data["validation"]},
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    teacher_accuracy = teacher_metrics["eval_accuracy"]

    progress_path = RESULTS_DIR / "quality_sst2.partial.json"
    # Runs are keyed by everything that changes them, so a resumed or extended benchmark never mixes settings.
    base_suffix = f"/n{args.train_samples}/lr{args.learning_rate:g}/ep{args.epochs:g}"
    suffix = base_suffix + "".join(f"/{key}{value:g}" for key, value in sorted(loss_overrides.items()))
    runs: dict[str, float] = json.loads(progress_path.read_text()) if progress_path.is_file() else {}
    for seed in args.seeds:
        for key in args.variants:
            description, layers, mode, random_encoder = VARIANTS[key]
            # The teacher-free baseline does not depend on the distillation settings.
            run_id = f"{key}/seed{seed}" + (base_suffix if mode == "task_only" else suffix)
            if run_id in runs:
                continue
            set_seed(seed)
            student = build_student(teacher, layers, random_encoder)
            kwargs = dict(train_dataset=data["train"], data_collator=collator, compute_metrics=compute_metrics)
            if mode == "task_only":
                trainer = Trainer(
                    model=student, args=TrainingArguments(output_dir=work, seed=seed, **common), **kwargs
                )
            else:
                trainer = DistillationTrainer(
                    model=student,
                    teacher_model=teacher,
                    args=DistillationTrainingArguments(output_dir=work, seed=seed, **common, **loss_overrides),
                    **kwargs,
                )
            trainer.train()
            runs[run_id] = trainer.evaluate(eval_dataset=data["validation"])["eval_accuracy"]
            print(f"{run_id}: {runs[run_id]:.4f} (teacher {teacher_accuracy:.4f})", flush=True)
            progress_path.write_text(json.dumps(runs, indent=1))
            del trainer, student

    variants = {}
    for key in args.variants:
        key_suffix = base_suffix if VARIANTS[key][2] == "task_only" else suffix
        accuracies = [runs[f"{key}/seed{seed}{key_suffix}"] for seed in args.seeds]
        variants[key] = {
            "description": VARIANTS[key][0],
            "layers": VARIANTS[key][1],
            "accuracies": accuracies,
            "median": statistics.median(accuracies),
            "min": min(accuracies),
            "max": max(accuracies),
        }
    summary = {"teacher_accuracy": teacher_accuracy}
    if "b" in variants:
        summary["retention"] = variants["b"]["median"] / teacher_accuracy
        summary["target_retention"] = 0.985
    if "b" in variants and "c" in variants:
        summary["kd_gain_points"] = 100 * (variants["b"]["median"] - variants["c"]["median"])
        summary["target_kd_gain_points"] = 1.0
    if "d" in variants:
        summary["random_init_accuracy"] = variants["d"]["median"]
    write_result(
        args.name,
        config=vars(args) | {"dev_rows": len(data["validation"]), "train_rows": len(data["train"])},
        results={"teacher_metrics": teacher_metrics, "variants": variants},
        summary=summary,
    )
    if args.name == "quality_sst2":
        update_readme()


if __name__ == "__main__":
    main()

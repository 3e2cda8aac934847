"""Tiny students on real SST-2: BiLSTM and TextCNN trained on labels only, distilled, and distilled on a transfer set.

    .venv/bin/python -m benchmarks.tiny_students [--train_samples 4000] [--seeds 0 1 2] [--n_iter 20]

Teacher: the packaged all-MiniLM-L6-v2 fine-tuned on a shuffled subset of real SST-2 train (seed 0, as in the
teacher-modes benchmark). Students: `make_tiny_student(teacher, "bilstm" | "textcnn", embedding_dim=128)`, the
teacher's vocabulary and input embeddings projected from 384 to 128 dimensions (PCA). For each student type and
seed, three runs on the same labelled rows, evaluated on the full SST-2 dev set (872 rows) at the end of training
(no selection on dev):

- labels only: `transformers.Trainer` on the gold labels;
- distilled: `DistillationTrainer` on the teacher's cached outputs for the labelled rows (alpha_cos=0);
- distilled + augmented: the same on the transfer set (`hf_distill.augment`: masking, same-tag replacement when a
  tagger is installed, n-gram sampling, `--n_iter` variants per row), the task loss on the labelled rows only.

Latency: teacher and both students, interleaved rounds at batch 1 and 32. Progress is saved after every run (an
interrupted benchmark resumes). Writes benchmarks/results/tiny_students.json and refreshes the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from benchmarks.common import DEFAULT_GLUE_DIR, RESULTS_DIR, ROOT, minilm_path, sst2_subset, write_result
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs, make_tiny_student
from hf_distill.augment import AugmentationRules, spacy_pos_tagger
from hf_distill.glue import make_compute_metrics, tokenize_transfer_set
from hf_distill.measure import count_parameters, measure_latency
from hf_distill.teachers import evaluate_teacher

VARIANTS = {"labels": "labels only", "distilled": "distilled", "augmented": "distilled + augmented"}
STUDENTS = ("bilstm", "textcnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    parser.add_argument("--n_iter", type=int, default=10)
    parser.add_argument(
        "--embedding_dim",
        type=int,
        default=128,
        help="the students' embeddings: the teacher's projected down (PCA); the teacher's own size is 384",
    )
    parser.add_argument("--p_pos", type=float, default=0.1, help="0 when no tagger is installed")
    parser.add_argument("--epochs", type=float, default=5.0, help="epochs over the labelled rows")
    parser.add_argument("--augmented_epochs", type=float, default=1.0, help="epochs over the transfer set")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--augmented_batch_size", type=int, default=64)
    parser.add_argument("--teacher_learning_rate", type=float, default=2e-4)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--latency_repeats", type=int, default=20)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for everything, latency included: one thread measures the models rather than contention",
    )
    parser.add_argument("--cache_dir", default=str(ROOT / "benchmarks" / ".cache" / "tiny_students"))
    parser.add_argument("--name", default="tiny_students", help="the result file (a variation: tiny_students_<what>)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--reuse_runs_from",
        default=None,
        help="a finished result (e.g. tiny_students) whose runs of the variants this one does not change (labels "
        "only, distilled: not --augmented_*) and latency are taken over when their settings equal this run's",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task, tokenizer, raw, data = sst2_subset(args.glue_dir, args.train_samples, args.max_seq_length)
    train = data["train"]
    dev = data["validation"]
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    common = dict(
        per_device_eval_batch_size=64,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=50,
    )
    progress_path = RESULTS_DIR / f"{args.name}.partial.json"
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {}

    def save_progress() -> None:
        progress_path.write_text(json.dumps(progress, indent=2) + "\n")

    # The teacher: fine-tuned once, kept in the cache directory.
    teacher_dir = cache / "teacher_seed0"
    if not (teacher_dir / "done").exists():
        set_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), **task.model_config_kwargs)
        teacher_args = TrainingArguments(
            output_dir=str(teacher_dir),
            learning_rate=args.teacher_learning_rate,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1.0,
            seed=0,
            **common,
        )
        Trainer(model=model, args=teacher_args, train_dataset=train, data_collator=collator).train()
        model.save_pretrained(teacher_dir)
        (teacher_dir / "done").write_text("ok\n")
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    if "teacher_accuracy" not in progress:
        with tempfile.TemporaryDirectory() as work:
            metrics = evaluate_teacher(
                teacher,
                args=TrainingArguments(output_dir=work, **common),
                eval_sets={"validation": dev},
                data_collator=collator,
                compute_metrics=compute_metrics,
            )
        progress["teacher_accuracy"] = next(v for k, v in metrics.items() if k.endswith("accuracy"))
        save_progress()

    # The transfer set: the labelled rows, then their variants (label -100), labelled by the teacher once.
    p_pos = args.p_pos
    if p_pos > 0:
        try:
            spacy_pos_tagger()
        except ValueError:
            p_pos = 0.0  # recorded in the result's config
    rules = AugmentationRules(n_iter=args.n_iter, p_pos=p_pos, seed=0)
    start = time.perf_counter()
    transfer, record = tokenize_transfer_set(
        raw["train"].select(range(len(train))), task, tokenizer, rules, max_seq_length=args.max_seq_length
    )
    augment_s = time.perf_counter() - start
    # Sorted by length, the teacher's batches hold little padding (training shuffles them anyway).
    lengths = [len(ids) for ids in transfer["input_ids"]]
    transfer_train = transfer.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    start = time.perf_counter()
    cached_train = cache_teacher_outputs(
        teacher, train, data_collator=collator, cache_file_name=str(cache / "train_outputs.arrow")
    )
    cached_transfer = cache_teacher_outputs(
        teacher, transfer_train, data_collator=collator, cache_file_name=str(cache / "transfer_outputs.arrow")
    )
    progress.setdefault("transfer_set", {"rows": record["rows"], "labelled_rows": record["labelled_rows"]})
    progress.setdefault("timing", {"augment_s": augment_s, "teacher_labelling_s": time.perf_counter() - start})
    save_progress()

    def run(student_type: str, variant: str, seed: int) -> dict:
        set_seed(seed)
        student = make_tiny_student(teacher, student_type, embedding_dim=args.embedding_dim)
        augmented = variant == "augmented"
        settings = dict(
            output_dir="",
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.augmented_batch_size if augmented else args.batch_size,
            num_train_epochs=args.augmented_epochs if augmented else args.epochs,
            seed=seed,
            **common,
        )
        with tempfile.TemporaryDirectory() as work:
            settings["output_dir"] = work
            if variant == "labels":
                trainer = Trainer(
                    model=student, args=TrainingArguments(**settings), train_dataset=train, data_collator=collator
                )
            else:
                trainer = DistillationTrainer(
                    model=student,
                    teacher_model=None,
                    args=DistillationTrainingArguments(alpha_cos=0.0, **settings),
                    train_dataset=cached_transfer if augmented else cached_train,
                    data_collator=collator,
                )
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
            trainer.compute_metrics = compute_metrics
            metrics = trainer.evaluate(dev, metric_key_prefix="validation")
        return {
            "accuracy": metrics["validation_accuracy"],
            "train_seconds": seconds,
            "steps": trainer.state.global_step,
        }

    if args.reuse_runs_from:
        reuse(progress, args)
        save_progress()
    for seed in args.seeds:
        for student_type in args.students:
            for variant in args.variants:
                key = f"{student_type}/{variant}/seed{seed}"
                if key in progress:
                    continue
                progress[key] = run(student_type, variant, seed)
                print(key, progress[key], flush=True)
                save_progress()
    missing = [f"{t}/{v}/seed{s}" for s in args.seeds for t in args.students for v in VARIANTS]
    missing = [key for key in missing if key not in progress]
    if missing:
        print(f"progress saved in {progress_path}; still to run or reuse: {missing}", flush=True)
        return

    if "latency" not in progress:
        models = {
            "teacher": teacher,
            **{name: make_tiny_student(teacher, name, embedding_dim=args.embedding_dim).eval() for name in STUDENTS},
        }
        latency = measure_latency(
            models, vocab_size=teacher.config.vocab_size, repeats=args.latency_repeats, num_threads=args.threads
        )
        progress["latency"] = json.loads(json.dumps(latency))  # int keys as strings, as written
        progress["parameters"] = {name: count_parameters(model) for name, model in models.items()}
        save_progress()

    table = {}
    for student_type in args.students:
        table[student_type] = {}
        for variant in VARIANTS:
            scores = [progress[f"{student_type}/{variant}/seed{seed}"]["accuracy"] for seed in args.seeds]
            table[student_type][variant] = {
                "label": VARIANTS[variant],
                "median": statistics.median(scores),
                "min": min(scores),
                "max": max(scores),
                "scores": scores,
            }
    latency_results = progress["latency"]["results"]
    summary = {
        "teacher_accuracy": progress["teacher_accuracy"],
        **{
            f"{name}_kd_gain_points": 100 * (table[name]["augmented"]["median"] - table[name]["labels"]["median"])
            for name in args.students
        },
        **{
            f"{name}_speedup_b{batch}": latency_results[name][str(batch)]["speedup"]
            for name in args.students
            for batch in (1, 32)
        },
        "median_accuracy": {name: {v: table[name][v]["median"] for v in VARIANTS} for name in args.students},
        "parameters": progress["parameters"],
    }
    config = vars(args) | {
        "reused_from": progress.get("reused_from"),
        "augmentation": asdict(rules),
        "dev_rows": len(dev),
        **progress["transfer_set"],
    }
    runs = {key: value for key, value in progress.items() if key.count("/") == 2}
    write_result(
        args.name,
        config=config,
        results={"table": table, "runs": runs, "latency": progress["latency"], "timing": progress["timing"]},
        summary=summary,
    )
    progress_path.unlink()
    update_readme()


# The settings that decide the labels-only and distilled runs and the latency: equal ones give equal runs.
_SHARED_SETTINGS = (
    "train_samples",
    "seeds",
    "epochs",
    "learning_rate",
    "batch_size",
    "teacher_learning_rate",
    "max_seq_length",
    "embedding_dim",
    "threads",
    "latency_repeats",
)


def reuse(progress: dict, args: argparse.Namespace) -> None:
    """Take over the runs of another result that this run's changed settings do not touch, after checking that the
    settings they depend on are equal (an unequal one stops the benchmark)."""
    source = json.loads((RESULTS_DIR / f"{args.reuse_runs_from}.json").read_text())
    theirs = source["config"]
    different = {name: (theirs.get(name), getattr(args, name)) for name in _SHARED_SETTINGS}
    different = {name: pair for name, pair in different.items() if pair[0] != pair[1]}
    if different:
        raise SystemExit(f"cannot reuse the runs of {args.reuse_runs_from}: settings differ {different}")
    for key, value in source["results"]["runs"].items():
        if not key.split("/")[1] == "augmented":
            progress.setdefault(key, value)
    progress.setdefault("latency", source["results"]["latency"])
    progress.setdefault("parameters", source["summary"]["parameters"])
    progress["reused_from"] = args.reuse_runs_from


if __name__ == "__main__":
    main()

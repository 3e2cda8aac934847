"""Teacher modes on real SST-2: dev accuracy of each mode, and online against cached wall time.

    .venv/bin/python -m benchmarks.teacher_modes [--train_samples 4000] [--wall_rows 1000]

Teachers: the packaged all-MiniLM-L6-v2 fine-tuned on a shuffled subset of real SST-2 train with two seeds (A: seed
0, B: seed 1; B keeps two intermediate checkpoints for the route). Every student is make_student(teacher A or B,
layers 0, 2, 4) trained for the same steps on the same rows with the default triple loss, and is evaluated on the
full SST-2 dev set (872 rows):

- online: teacher A, run at every step (the default);
- cached: teacher A's outputs cached once (`cache_teacher_outputs`), no teacher in memory;
- ensemble: teachers A and B, equal weights, L_cos on A;
- route: B's checkpoints, early to final (Route Constrained Optimisation), switched evenly;
- cotrain / cotrain (no isolation): an un-tuned MiniLM teacher trained together with its student.

Wall time: a 3-epoch distillation on `--wall_rows` rows, online against cached with the one-off caching included.
Progress is saved after every run (an interrupted benchmark resumes). Writes benchmarks/results/teacher_modes.json
and refreshes the README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
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
from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs, make_student
from hf_distill.glue import make_compute_metrics
from hf_distill.teachers import evaluate_teacher

MODES = {
    "online": "online (teacher A)",
    "cached": "cached outputs (teacher A)",
    "ensemble": "ensemble (A + B)",
    "route": "route (B's checkpoints)",
    "cotrain": "co-training (isolated)",
    "cotrain_open": "co-training (no isolation)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--wall_rows", type=int, default=1000)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--teacher_learning_rate", type=float, default=2e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--cache_dir", default=str(ROOT / "benchmarks" / ".cache" / "teacher_modes"))
    args = parser.parse_args()

    task, tokenizer, _, data = sst2_subset(args.glue_dir, args.train_samples, args.max_seq_length)
    train = data["train"].select_columns(["input_ids", "token_type_ids", "attention_mask", "label"])
    dev = {"validation": data["validation"]}
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    cache = Path(args.cache_dir)
    common = dict(
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=1.0,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=25,
        seed=0,
    )
    progress_path = RESULTS_DIR / "teacher_modes.partial.json"
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {}

    def save_progress() -> None:
        progress_path.write_text(json.dumps(progress, indent=2) + "\n")

    def teacher(seed: int, *, checkpoints: bool = False) -> Path:
        """Fine-tune MiniLM on the subset with `seed` (once; reused from the cache directory)."""
        path = cache / f"teacher_seed{seed}"
        if (path / "done").exists():
            return path
        set_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), **task.model_config_kwargs)
        steps = -(-len(train) // args.batch_size)
        extra = dict(save_strategy="steps", save_steps=steps // 3, save_only_model=True) if checkpoints else {}
        trainer_args = TrainingArguments(
            output_dir=str(path), learning_rate=args.teacher_learning_rate, **{**common, "seed": seed, **extra}
        )
        Trainer(model=model, args=trainer_args, train_dataset=train, data_collator=collator).train()
        model.save_pretrained(path)
        (path / "done").write_text("ok\n")
        return path

    def load(path: Path | str):
        return AutoModelForSequenceClassification.from_pretrained(path).eval()

    def accuracy(model) -> float:
        """Dev accuracy of a teacher (`evaluate_teacher` prefixes the metric with the split's name)."""
        with tempfile.TemporaryDirectory() as work:
            metrics = evaluate_teacher(
                model,
                args=TrainingArguments(output_dir=work, **common),
                eval_sets=dev,
                data_collator=collator,
                compute_metrics=compute_metrics,
            )
        return next(value for key, value in metrics.items() if key.endswith("accuracy"))

    def distil(mode: str, work: str) -> dict:
        distill_args = dict(output_dir=work, learning_rate=args.learning_rate, **common)
        first = load(teacher(0))
        if mode in ("online", "cached"):
            teacher_model, dataset = first, train
            if mode == "cached":
                dataset = cache_teacher_outputs(first, train, data_collator=collator, hidden_states=True)
                teacher_model = None
        elif mode == "ensemble":
            teacher_model, dataset = [first, load(teacher(1, checkpoints=True))], train
            distill_args["cos_teacher"] = 0
        elif mode == "route":
            final = teacher(1, checkpoints=True)
            steps = sorted(int(p.name.split("-")[1]) for p in final.glob("checkpoint-*"))
            teacher_model = [str(final / f"checkpoint-{s}") for s in steps[:2]] + [str(final)]
            first = load(final)
            distill_args["teacher_route"] = True
            dataset = train
        else:
            set_seed(0)
            first = AutoModelForSequenceClassification.from_pretrained(minilm_path(), **task.model_config_kwargs)
            teacher_model, dataset = first, train
            distill_args.update(cotrain_teacher=True, cotrain_isolation=mode == "cotrain")
            distill_args["cotrain_teacher_learning_rate"] = args.teacher_learning_rate
        student = make_student(first, layers=[0, 2, 4])
        trainer = DistillationTrainer(
            model=student,
            teacher_model=teacher_model,
            args=DistillationTrainingArguments(**distill_args),
            train_dataset=dataset,
            data_collator=collator,
            compute_metrics=compute_metrics,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        metrics = trainer.evaluate(dev["validation"], metric_key_prefix="validation")
        result = {"label": MODES[mode], "accuracy": metrics["validation_accuracy"], "train_seconds": seconds}
        if mode.startswith("cotrain"):
            result["cotrained_teacher_accuracy"] = accuracy(trainer.teacher_model)
        return result

    for mode in args.modes:
        if mode in progress:
            continue
        with tempfile.TemporaryDirectory() as work:
            progress[mode] = distil(mode, work)
        save_progress()
    if "teacher_accuracy" not in progress:
        progress["teacher_accuracy"] = {name: accuracy(load(teacher(seed))) for name, seed in (("A", 0), ("B", 1))}
        save_progress()

    if "wall" not in progress:
        rows = train.select(range(args.wall_rows))
        wall = {}
        for mode in ("online", "cached"):
            with tempfile.TemporaryDirectory() as work:
                first = load(teacher(0))
                start = time.perf_counter()
                dataset, teacher_model = rows, first
                if mode == "cached":
                    dataset = cache_teacher_outputs(first, rows, data_collator=collator, hidden_states=True)
                    del first
                    teacher_model = None
                caching = time.perf_counter() - start
                trainer = DistillationTrainer(
                    model=make_student(load(teacher(0)), layers=[0, 2, 4]),
                    teacher_model=teacher_model,
                    args=DistillationTrainingArguments(
                        output_dir=work, learning_rate=args.learning_rate, **{**common, "num_train_epochs": 3.0}
                    ),
                    train_dataset=dataset,
                    data_collator=collator,
                )
                trainer.train()
                wall[mode] = {
                    "total_s": time.perf_counter() - start,
                    "caching_s": caching if mode == "cached" else 0.0,
                }
        progress["wall"] = wall
        save_progress()

    results = {mode: progress[mode] for mode in MODES if mode in progress}
    summary = {
        "teacher_accuracy": progress["teacher_accuracy"],
        "accuracy_by_mode": {mode: r["accuracy"] for mode, r in results.items()},
        "online_3_epoch_s": progress["wall"]["online"]["total_s"],
        "cached_3_epoch_s_including_caching": progress["wall"]["cached"]["total_s"],
        "caching_s": progress["wall"]["cached"]["caching_s"],
        "cached_speedup_end_to_end": progress["wall"]["online"]["total_s"] / progress["wall"]["cached"]["total_s"],
    }
    config = vars(args) | {"student_layers": [0, 2, 4], "epochs": 1.0, "dev_rows": len(dev["validation"])}
    write_result("teacher_modes", config=config, results=results | {"wall": progress["wall"]}, summary=summary)
    progress_path.unlink()
    update_readme()


if __name__ == "__main__":
    main()

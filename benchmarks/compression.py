"""Compression beyond depth on real SST-2: what int8, head pruning and ONNX buy on top of distillation.

    .venv/bin/python -m benchmarks.compression [--student_rows 32000] [--threads 2]

Needs the torchao backend besides `.[dev]`: `pip install -e ".[dev,torchao]"`.

Teacher: the dev-selected MiniLM fine-tuned on all of SST-2 (benchmarks/quality_sst2.py, reused from
benchmarks/.cache). Student: `make_student(teacher, layers=[0, 2, 5])` distilled for one epoch with the default triple
loss on the first `--student_rows` rows of the teacher's cached training outputs (saved, and reused after that).

Rows, each evaluated on the full SST-2 dev set (872 rows) and timed in one interleaved run against the fp32 teacher
at batch 1 and 32, sequence length 128:

  teacher fp32; teacher int8 (the default backend);
  student fp32; student int8 with each backend (onnxruntime, torch, torchao); student ONNX fp32;
  student with 30% and 50% of its heads pruned (Michel et al. 2019), before and after recovery distillation from the
  unpruned student; the 50% pruned, recovered student in int8.

Each model's dev accuracy is saved on its own as it is measured, so an interrupted run resumes. Writes
benchmarks/results/compression.json and refreshes the README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed
from transformers.utils import logging

from benchmarks.common import DEFAULT_GLUE_DIR, ROOT, sst2_subset, write_result
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs, make_student
from hf_distill.compare import load_any
from hf_distill.compression import compress_student
from hf_distill.glue import make_compute_metrics, score_model
from hf_distill.measure import count_parameters, measure_latency, size_on_disk
from hf_distill.onnx_export import OnnxModel, export_onnx
from hf_distill.quantization import BACKENDS, DEFAULT_BACKEND, quantize, save_quantized

logger = logging.get_logger("benchmarks.compression")

TEACHER_DIR = ROOT / "benchmarks" / ".cache" / "teacher_sst2_full_3ep_lr0.0001"
STUDENT_LAYERS = [0, 2, 5]
EVAL_BATCH_SIZE = 128


def common_args(work: str, seed: int, epochs: float, learning_rate: float) -> dict[str, Any]:
    return dict(
        output_dir=work,
        seed=seed,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        warmup_steps=0.06,
        weight_decay=0.01,
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=100,
    )


def distilled_student(teacher, data, collator, compute_metrics, *, rows: int, directory: Path) -> tuple[Any, dict]:
    """The student distilled from the cached teacher outputs; saved to `directory` with `student.json` written last,
    and reused after that."""
    record_path = directory / "student.json"
    if record_path.is_file():
        model = AutoModelForSequenceClassification.from_pretrained(directory)
        return model, json.loads(record_path.read_text())
    cached = cache_teacher_outputs(
        teacher,
        data["train"].select(range(min(rows, len(data["train"])))),
        data_collator=collator,
        batch_size=128,
        hidden_states=True,
        cache_file_name=str(directory.parent / "outputs" / f"train{rows}.arrow"),
    )
    set_seed(0)
    student = make_student(teacher, layers=STUDENT_LAYERS)
    with tempfile.TemporaryDirectory() as work:
        trainer = DistillationTrainer(
            model=student,
            teacher_model=None,
            args=DistillationTrainingArguments(**common_args(work, 0, 1.0, 1e-4)),
            train_dataset=cached,
            data_collator=collator,
            compute_metrics=compute_metrics,
        )
        runtime = trainer.train().metrics["train_runtime"]
        accuracy = trainer.evaluate(eval_dataset=data["validation"])["eval_accuracy"]
    student.save_pretrained(directory)
    record = {
        "layers": STUDENT_LAYERS,
        "train_rows": rows,
        "epochs": 1.0,
        "accuracy": accuracy,
        "train_runtime_s": runtime,
    }
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return student, record


def scored(name: str, model, scores_path: Path, score) -> dict[str, float]:
    """The dev metrics of `name`, read from `scores_path` when an earlier run measured them, else measured and
    saved there at once (an interrupted benchmark resumes)."""
    scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
    if name not in scores:
        scores[name] = score(model)
        scores_path.write_text(json.dumps(scores, indent=1) + "\n")
        logger.info("%s: %s", name, scores[name])
    return scores[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--student_rows", type=int, default=32000)
    parser.add_argument("--recovery_rows", type=int, default=8000, help="Rows of each recovery distillation.")
    parser.add_argument("--recovery_epochs", type=float, default=1.0)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--repeats", type=int, default=5, help="Interleaved latency rounds.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stage", choices=["student", "all"], default="all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task, tokenizer, _, data = sst2_subset(args.glue_dir, None, 128)
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    teacher = AutoModelForSequenceClassification.from_pretrained(TEACHER_DIR / "best").eval()
    work_dir = TEACHER_DIR / "compression"
    student, student_record = distilled_student(
        teacher,
        data,
        collator,
        compute_metrics,
        rows=args.student_rows,
        directory=work_dir / f"student_{args.student_rows}rows",
    )
    if args.stage == "student":
        return
    eval_sets = {"validation": data["validation"]}

    def score(model) -> dict[str, float]:
        # The batch size of every other score here (the teacher's, the student's, compress_student's): dynamic int8
        # quantizes each batch's activations with one scale per tensor, so the batching moves int8 scores a little.
        metrics = score_model(
            model, eval_sets, data_collator=collator, compute_metrics=compute_metrics, batch_size=EVAL_BATCH_SIZE
        )
        return {key.removeprefix("eval_"): value for key, value in metrics.items()}

    # Pruned students (with and without recovery) and the default backend's int8 forms, through the library.
    variants_dir = (
        work_dir / f"variants_student{args.student_rows}_{args.recovery_rows}rows_{args.recovery_epochs:g}ep"
    )
    done = variants_dir / "variants.json"
    recovery_args = DistillationTrainingArguments(**common_args(str(variants_dir), 0, args.recovery_epochs, 1e-4))
    if done.is_file():
        described = json.loads(done.read_text())
        variants = {entry["name"]: (load_any(entry["path"], num_threads=args.threads), entry) for entry in described}
    else:
        made = compress_student(
            student,
            output_dir=variants_dir,
            args=recovery_args,
            train_dataset=data["train"].select(range(args.recovery_rows)),
            eval_sets=eval_sets,
            data_collator=collator,
            compute_metrics=compute_metrics,
            int8_backend=DEFAULT_BACKEND,
            prune_fractions=args.fractions,
            recovery_epochs=args.recovery_epochs,
            tokenizer=tokenizer,
        )
        described = [variant.row() for variant in made]
        done.write_text(json.dumps(described, indent=1) + "\n")
        variants = {variant.name: (variant.model, row) for variant, row in zip(made, described)}

    scores_path = work_dir / f"scores_student{args.student_rows}.json"
    models: dict[str, Any] = {"teacher fp32": teacher}
    rows: dict[str, dict[str, Any]] = {
        "teacher fp32": {
            "parameters": count_parameters(teacher),
            "size_bytes": size_on_disk(TEACHER_DIR / "best"),
            "accuracy": teacher_accuracy(work_dir),
        },
    }
    with tempfile.TemporaryDirectory() as scratch:

        def add(name: str, model, parameters: int, saved: Path | None = None) -> None:
            if saved is None:
                saved = Path(scratch) / str(len(models))
                save_quantized(model, saved)
            models[name] = model
            metrics = scored(name, model, scores_path, score)
            rows[name] = {"parameters": parameters, "size_bytes": size_on_disk(saved), "accuracy": metrics["accuracy"]}

        add(
            f"teacher int8 ({DEFAULT_BACKEND})",
            quantize(teacher, DEFAULT_BACKEND, tokenizer=tokenizer),
            count_parameters(teacher),
        )
        models["student fp32"] = student
        rows["student fp32"] = {
            "parameters": count_parameters(student),
            "size_bytes": size_on_disk(student),
            "accuracy": student_record["accuracy"],
        }
        for backend in (backend for backend in BACKENDS if backend != DEFAULT_BACKEND):  # the default: a variant
            add(
                f"student int8 ({backend})", quantize(student, backend, tokenizer=tokenizer), count_parameters(student)
            )
        onnx_dir = export_onnx(student, tokenizer, Path(scratch) / "onnx")
        add(
            "student onnx fp32",
            OnnxModel.from_pretrained(onnx_dir, num_threads=args.threads),
            count_parameters(student),
            onnx_dir,
        )
        for name, (model, row) in variants.items():
            models[name] = model
            rows[name] = {
                "parameters": row["parameters"],
                "size_bytes": row["size_bytes"],
                "accuracy": row["metrics"].get("eval_accuracy", row["metrics"].get("accuracy")),
                "method": row["method"],
            }

        latency = measure_latency(
            models,
            vocab_size=teacher.config.vocab_size,
            batch_sizes=(1, 32),
            seq_len=128,
            repeats=args.repeats,
            warmup=1,
            num_threads=args.threads,
        )
    for name, row in rows.items():
        row["latency_ms"] = {size: entry["median_s"] * 1e3 for size, entry in latency["results"][name].items()}
        row["speedup"] = {size: entry["speedup"] for size, entry in latency["results"][name].items()}

    default_int8 = rows[f"student int8 ({DEFAULT_BACKEND})"]
    int8_students = {name: row for name, row in rows.items() if name.startswith("student") and "int8" in name}
    fastest = max(int8_students, key=lambda name: int8_students[name]["speedup"][32])
    summary = {
        "teacher_accuracy": rows["teacher fp32"]["accuracy"],
        "student_accuracy": rows["student fp32"]["accuracy"],
        "int8_backend": DEFAULT_BACKEND,
        "int8_student_speedup_b32": default_int8["speedup"][32],
        "int8_accuracy_drop_points": 100 * (rows["student fp32"]["accuracy"] - default_int8["accuracy"]),
        "target_speedup_b32": 5.0,
        "target_accuracy_drop_points": 1.0,
        "fastest_int8_student": fastest,
        "fastest_int8_student_speedup_b32": int8_students[fastest]["speedup"][32],
        "fastest_int8_student_drop_points": 100
        * (rows["student fp32"]["accuracy"] - int8_students[fastest]["accuracy"]),
        "student_speedup_b32": rows["student fp32"]["speedup"][32],
    }
    write_result(
        "compression",
        config=vars(args) | {"student": student_record, "dev_rows": len(data["validation"])},
        results={"rows": rows, "latency": {k: v for k, v in latency.items() if k != "results"}},
        summary=summary,
    )
    update_readme()


def teacher_accuracy(work_dir: Path) -> float:
    """The dev-selected teacher's accuracy, from its record."""
    return json.loads((TEACHER_DIR / "teacher.json").read_text())["best"]["accuracy"]


if __name__ == "__main__":
    main()

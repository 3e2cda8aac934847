"""Intermediate-layer losses on real SST-2: each layer term beside the triple-loss default, and hints for a narrower
student through learned projections.

    .venv/bin/python -m benchmarks.layer_losses [--train_samples 4000] [--seeds 0 1 2] [--threads 2]

Teacher: the packaged all-MiniLM-L6-v2 fine-tuned on all of SST-2 train and chosen on dev by `benchmarks.quality_sst2`
(run that first; its teacher is reused from benchmarks/.cache). Every student trains on the same shuffled subset of
SST-2 train for the same steps from a live teacher (the layer terms read its intermediate layers, which cached
outputs do not hold), and is scored on the full SST-2 dev set:

  triple       make_student (layers 0, 2, 4), the default triple loss (L_kd, L_task, L_cos);
  hint         triple + L_hint (MSE, uniform map 1:2 2:4 3:6);
  attn         triple + L_attn (TinyBERT's MSE between attention scores, same map);
  rel          triple + L_rel (MiniLMv2 relations of the last layers);
  narrow       3 layers of hidden size 192 (12 heads, intermediate 768) initialised from the leading slices of the
               teacher's tensors (layers 0, 2, 4), L_kd + L_task (L_cos needs equal widths);
  narrow_hint  the same + L_hint through learned projections (192 -> 384).

Each run is saved on its own and the benchmark resumes where it stopped; a second process can train other runs beside
the first (`--no_report`). Writes benchmarks/results/layer_losses.json and refreshes the README.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, set_seed
from transformers.utils import logging

from benchmarks.common import DEFAULT_GLUE_DIR, ROOT, seed_statistics, sst2_subset, write_result
from benchmarks.quality_sst2 import claim
from benchmarks.render import update_readme
from hf_distill import DistillationTrainer, DistillationTrainingArguments, make_student
from hf_distill.glue import make_compute_metrics

logger = logging.get_logger("benchmarks.layer_losses")

TEACHER_DIR = ROOT / "benchmarks" / ".cache" / "teacher_sst2_full_3ep_lr0.0001"
LAYERS = [0, 2, 4]
NARROW = dict(hidden_size=192, num_attention_heads=12, intermediate_size=768)
# name: (description, loss settings beyond the defaults, narrow student)
# The layer terms' weights make each start at about the weighted size of L_cos (0.8 on the first batch of this
# student): unweighted, they start at 0.33 (hint), 10.2 (attn) and 3.1 (rel).
VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "triple": ("3 layers (0, 2, 4), triple loss", {}, False),
    "hint": ("+ L_hint (MSE, 1:2 2:4 3:6)", {"alpha_hint": 2.0}, False),
    "attn": ("+ L_attn (MSE of attention scores, same map)", {"alpha_attn": 0.1}, False),
    "rel": ("+ L_rel (MiniLMv2, last layers)", {"alpha_rel": 0.3}, False),
    "narrow": ("hidden 192, L_kd + L_task", {"alpha_cos": 0.0}, True),
    "narrow_hint": ("hidden 192, + L_hint through projections", {"alpha_cos": 0.0, "alpha_hint": 2.0}, True),
}


def narrow_student(teacher: torch.nn.Module) -> torch.nn.Module:
    """A 3-layer student of hidden size 192 whose every tensor starts as the leading slice of the teacher's tensor of
    the same role (layers 0, 2, 4): what fits of the teacher, since `make_student` only copies whole layers."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(LAYERS)
    for key, value in NARROW.items():
        setattr(config, key, value)
    student = type(teacher)(config)
    source = teacher.state_dict()
    state = {}
    for name, tensor in student.state_dict().items():
        parts = name.split(".")
        if "layer" in parts:
            index = parts.index("layer") + 1
            parts[index] = str(LAYERS[int(parts[index])])
        original = source[".".join(parts)]
        state[name] = original[tuple(slice(0, size) for size in tensor.shape)].clone()
    student.load_state_dict(state)
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default=str(DEFAULT_GLUE_DIR))
    parser.add_argument("--train_samples", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no_report", action="store_true", help="Train the missing runs only.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    record_path = TEACHER_DIR / "teacher.json"
    if not record_path.is_file():
        raise SystemExit("the SST-2 teacher is not trained yet; run `python -m benchmarks.quality_sst2` first")
    teacher_record = json.loads(record_path.read_text())
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(TEACHER_DIR / "best").eval()
    task, tokenizer, _, data = sst2_subset(args.glue_dir, args.train_samples, args.max_seq_length)
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    runs_dir = TEACHER_DIR / "layer_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"_{len(data['train'])}rows_ep{args.epochs:g}_lr{args.learning_rate:g}_w{args.warmup:g}"

    def run_path(key: str, seed: int) -> Path:
        return runs_dir / f"{key}_seed{seed}{suffix}.json"

    for seed in args.seeds:
        for key in args.variants:
            path = run_path(key, seed)
            if path.is_file() or not claim(path):
                continue
            _, settings, narrow = VARIANTS[key]
            with tempfile.TemporaryDirectory() as work:
                set_seed(seed)
                student = narrow_student(teacher) if narrow else make_student(teacher, layers=LAYERS)
                trainer = DistillationTrainer(
                    model=student,
                    teacher_model=teacher,
                    args=DistillationTrainingArguments(
                        output_dir=work,
                        seed=seed,
                        per_device_train_batch_size=args.batch_size,
                        per_device_eval_batch_size=128,
                        num_train_epochs=args.epochs,
                        learning_rate=args.learning_rate,
                        warmup_steps=args.warmup,
                        weight_decay=0.01,
                        train_sampling_strategy="group_by_length",
                        save_strategy="no",
                        report_to="none",
                        use_cpu=True,
                        disable_tqdm=True,
                        logging_steps=50,
                        **settings,
                    ),  # fmt: skip
                    train_dataset=data["train"],
                    data_collator=collator,
                    compute_metrics=compute_metrics,
                )
                metrics = trainer.train().metrics
                accuracy = trainer.evaluate(eval_dataset=data["validation"])["eval_accuracy"]
                logged = [entry for entry in trainer.state.log_history if "loss" in entry]
                terms = {k: v for k, v in logged[0].items() if k.startswith("loss_")} if logged else {}
            run = {"accuracy": accuracy, "train_runtime_s": metrics["train_runtime"], "first_logged_terms": terms}
            logger.warning("%s: %.4f", path.stem, accuracy)
            path.write_text(json.dumps(run) + "\n")
            path.with_suffix(".claim").unlink()
    if args.no_report:
        return

    variants = {}
    for key in args.variants:
        runs = [json.loads(run_path(key, seed).read_text()) for seed in args.seeds]
        variants[key] = {
            "description": VARIANTS[key][0],
            "settings": VARIANTS[key][1],
            **seed_statistics(runs),
            "first_logged_terms": runs[0]["first_logged_terms"],
        }
    summary: dict[str, Any] = {"teacher_accuracy": teacher_record["best"]["accuracy"]}
    for key, variant in variants.items():
        summary[f"{key}_accuracy"] = variant["median"]
    base = variants.get("triple")
    for key in ("hint", "attn", "rel"):
        if base and key in variants:
            summary[f"{key}_gain_points"] = 100 * (variants[key]["median"] - base["median"])
    if "narrow" in variants and "narrow_hint" in variants:
        summary["narrow_hint_gain_points"] = 100 * (variants["narrow_hint"]["median"] - variants["narrow"]["median"])
    write_result(
        "layer_losses",
        config=vars(args) | {"train_rows": len(data["train"]), "dev_rows": len(data["validation"]), "narrow": NARROW},
        results={"teacher": teacher_record, "variants": variants},
        summary=summary,
    )
    update_readme()


if __name__ == "__main__":
    main()

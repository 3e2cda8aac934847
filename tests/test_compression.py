"""Compression after distillation (`hf_distill.compression`): the flag checks, `compress_student`'s variants, their
rows in the report, the table and the card, and `score_model` against `Trainer.evaluate`."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_distill import DistillationTrainingArguments
from hf_distill.card import model_card
from hf_distill.compression import check_compression_flags, compress_student
from hf_distill.glue import score_model
from hf_distill.head_pruning import load_pruned
from hf_distill.quantization import load_quantized
from hf_distill.results import DistillationReport, format_table

from .conftest import pad_collate, random_token_dataset


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def glue_like_rows(num_rows: int, seed: int = 0) -> Dataset:
    """Random rows with a `label` column, as tokenised GLUE rows have."""
    return random_token_dataset(num_rows, seed=seed).rename_column("labels", "label")


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """`pad_collate` for rows whose label column is `label` (as `DataCollatorWithPadding` renames it)."""
    return pad_collate(
        [{"input_ids": f["input_ids"], **({"labels": f["label"]} if "label" in f else {})} for f in features]
    )


def test_score_model_matches_trainer_evaluate(tiny_classifier, tmp_path):
    """`score_model` scores the int8 and ONNX variants, which `Trainer` cannot run; if it padded, masked or ordered
    rows differently from `Trainer.evaluate`, a variant's "drop against the student" would be an artefact."""
    rows = glue_like_rows(37)
    trainer = Trainer(
        model=tiny_classifier,
        args=TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to="none", use_cpu=True),
        data_collator=collate,
        compute_metrics=accuracy,
    )
    expected = trainer.evaluate(eval_dataset=rows)["eval_accuracy"]
    tiny_classifier.train()
    scored = score_model(
        tiny_classifier, {"validation": rows}, data_collator=collate, compute_metrics=accuracy, batch_size=5
    )
    assert scored == {"eval_accuracy": pytest.approx(expected)}
    assert tiny_classifier.training  # the model's mode is restored


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(prune_fractions=[0.0]), ValueError, "strictly between 0 and 1"),
        (dict(prune_fractions=[float("nan")]), ValueError, "strictly between 0 and 1"),
        (dict(prune_fractions=[0.3, 0.3]), ValueError, "twice"),
        (dict(recovery_epochs=1.0), ValueError, "prunes none"),
        (dict(prune_fractions=[0.3], recovery_epochs=-1.0), ValueError, ">= 0"),
        (dict(prune_fractions=[0.3], recovery_epochs=1.0, world_size=2), ValueError, "one process"),
        (dict(prune_fractions=[0.3], model_type="distilbert"), ValueError, "supported model types"),
        (dict(prune_fractions=[0.3], model_type=None), ValueError, "tiny student"),
        (dict(int8=True, int8_backend="tensorrt"), ValueError, "choose one of"),
        (dict(prune_fractions=[0.6], num_heads=2), ValueError, "at most 0.5 of them"),
        (dict(prune_fractions=[0.3], int8=True, int8_backend="torchao"), ValueError, "cannot rebuild pruned heads"),
    ],
)
def test_compression_flags_are_checked_before_any_work(kwargs, error, message):
    """Each bad combination must fail with the fix in the message, before the recipe fine-tunes or distils; a
    fraction of 0 or NaN would otherwise prune nothing or everything while the report claimed a pruned row."""
    settings = dict(int8=False, int8_backend="torch", prune_fractions=None, recovery_epochs=0.0, model_type="bert")
    settings.update(kwargs)
    with pytest.raises(error, match=message):
        check_compression_flags(**settings)


def test_a_missing_backend_package_names_the_extra(monkeypatch):
    """Asking for ONNX Runtime int8 without the package installed must say which extra installs it, before any work,
    not fail with a bare ModuleNotFoundError after training."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when it is not installed
    with pytest.raises(ImportError, match=r"hf-distill\[onnx\]"):
        check_compression_flags(
            int8=True, int8_backend="onnxruntime", prune_fractions=None, recovery_epochs=0.0, model_type="bert"
        )


def test_compress_student_makes_scores_and_saves_every_variant(tiny_classifier, tmp_path):
    """The pruned, recovered and int8 variants must each be saved where their loader rebuilds them, scored on the
    given rows, and leave the student untouched: a variant scored on other rows, a pruned copy sharing the student's
    weights (pruning it would shrink the student), or a recovery that trained nothing would each pass unnoticed."""
    student = tiny_classifier
    before = copy.deepcopy(student.state_dict())
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8, learning_rate=1e-2,
        report_to="none", use_cpu=True, seed=0,
    )  # fmt: skip
    rows = glue_like_rows(32)
    variants = compress_student(
        student, output_dir=tmp_path, args=args, train_dataset=rows, eval_sets={"validation": glue_like_rows(20, 1)},
        data_collator=collate, compute_metrics=accuracy, int8_backend="torch", prune_fractions=[0.5],
        recovery_epochs=1.0,
    )  # fmt: skip
    assert [v.name for v in variants] == [
        "student int8 (torch)",
        "student, 50% heads pruned",
        "student, 50% heads pruned + recovery",
        "student, 50% heads pruned + recovery, int8 (torch)",
    ]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    pruned, recovered = variants[1], variants[2]
    assert sum(len(h) for h in pruned.method["pruned_heads"].values()) == 4  # half of 4 layers x 2 heads
    assert pruned.parameters < variants[0].parameters == sum(p.numel() for p in student.parameters())
    assert recovered.method["recovery_epochs"] == 1.0
    changed = [
        name
        for name, value in recovered.model.state_dict().items()
        if not torch.equal(value, pruned.model.state_dict()[name])
    ]
    assert changed  # recovery trained the pruned copy
    reloaded = load_pruned(recovered.path)
    ids = torch.randint(1, 99, (3, 7))
    with torch.inference_mode():
        assert torch.allclose(reloaded(input_ids=ids).logits, recovered.model.eval()(input_ids=ids).logits, atol=1e-6)
        int8 = load_quantized(variants[3].path)
        assert torch.allclose(int8(input_ids=ids).logits, variants[3].model(input_ids=ids).logits, atol=1e-6)
    for variant in variants:
        assert set(variant.metrics) == {"eval_accuracy"}
        expected = score_model(
            variant.model, {"validation": glue_like_rows(20, 1)}, data_collator=collate, compute_metrics=accuracy
        )
        assert variant.metrics == expected
        assert variant.row()["size_bytes"] > 0


def _report(**overrides) -> DistillationReport:
    latency_entry = {1: {"median_s": 0.01, "speedup": 1.0}, 32: {"median_s": 0.1, "speedup": 1.0}}
    values = dict(
        task="sst2",
        teacher_metrics={"eval_accuracy": 0.9},
        student_metrics={"eval_accuracy": 0.88},
        teacher_parameters=100,
        student_parameters=50,
        teacher_size_bytes=400,
        student_size_bytes=200,
        temperature=2.0,
        loss_weights={"alpha_kd": 1.0},
        latency={
            "batch_sizes": [1, 32],
            "seq_len": 128,
            "repeats": 3,
            "warmup": 1,
            "num_threads": 1,
            "devices": {},
            "results": {
                "teacher": latency_entry,
                "student": {1: {"median_s": 0.005, "speedup": 2.0}, 32: {"median_s": 0.05, "speedup": 2.0}},
                "student int8 (torch)": {
                    1: {"median_s": 0.004, "speedup": 2.5},
                    32: {"median_s": 0.04, "speedup": 3.0},
                },
            },
        },
        compression=[
            {
                "name": "student int8 (torch)",
                "method": {"int8_backend": "torch"},
                "parameters": 50,
                "size_bytes": 60,
                "metrics": {"eval_accuracy": 0.875},
                "path": None,
            },
            {
                "name": "student, 30% heads pruned",
                "method": {"pruned_heads_fraction": 0.3, "pruned_heads": {"0": [1]}},
                "parameters": 45,
                "size_bytes": 180,
                "metrics": {"eval_accuracy": 0.85},
                "path": None,
            },
        ],
    )
    values.update(overrides)
    return DistillationReport(**values)


def test_report_table_and_card_show_each_variant():
    """Every variant must appear in the printed table and the card with its score, its drop against the student in
    points, its size and its speedup (or n/a when it was not timed), and the card must cite Michel et al. for
    pruning: a variant shown with the student's numbers, or a missing row, would misstate what compression cost."""
    report = _report()
    table = format_table(report)
    assert "student int8 (torch)" in table and "0.8750" in table and "0.50" in table and "3.00x" in table
    pruned_line = next(line for line in table.splitlines() if line.startswith("student, 30% heads pruned"))
    assert "0.8500" in pruned_line and "3.00" in pruned_line and "n/a" in pruned_line
    card = model_card(report, model_name="student", base_model=None)
    assert "## Compressed variants" in card and "`--int8 --int8_backend torch`" in card
    assert "`--prune_heads 0.3`" in card and "michel2019sixteen" in card
    assert report.to_dict()["compression"][0]["metrics"] == {"accuracy": 0.875}
    assert "Compressed" not in format_table(_report(compression=None))


def test_a_variant_without_the_main_metric_is_refused():
    """A variant scored without compute_metrics would be shown as n/a at best; refusing names the fix."""
    rows = [{"name": "x", "method": {}, "parameters": 1, "size_bytes": 1, "metrics": {"eval_loss": 0.1}}]
    with pytest.raises(ValueError, match="has no 'accuracy'"):
        _report(compression=rows)

"""`hf_distill.results`, `.card` and `.measure`: sizes, interleaved latency, the report's numbers, the table, the card.

No test asserts on a measured time: timings vary with the machine, so only the shape of the latency result, the
reference's speedup of exactly 1 and the models' state afterwards are checked. The table and the card are checked on
a report with hand-written latencies.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from huggingface_hub import ModelCard

from hf_distill import DistillationTrainingArguments, make_student
from hf_distill.card import model_card
from hf_distill.glue import GLUE_CITATION
from hf_distill.losses import CITATIONS
from hf_distill.measure import count_parameters, measure_latency, size_on_disk
from hf_distill.results import DistillationReport, format_table, retention

from .conftest import VOCAB_SIZE

TEACHER_ID = "textattack/bert-base-uncased-SST-2"


def _latency(teacher_s: float, student_s: float) -> dict:
    """A `measure_latency` result with chosen times, for tests of what is printed."""
    results = {
        name: {
            size: {
                "median_s": seconds * size,
                "throughput": 1 / seconds,
                "speedup": teacher_s / seconds,
                "times_s": [seconds * size],
            }
            for size in (1, 32)
        }
        for name, seconds in (("teacher", teacher_s), ("student", student_s))
    }
    return {
        "reference": "teacher",
        "batch_sizes": [1, 32],
        "seq_len": 128,
        "repeats": 1,
        "warmup": 0,
        "num_threads": 1,
        "devices": {"teacher": "cpu", "student": "cpu"},
        "results": results,
    }


@pytest.fixture
def report() -> DistillationReport:
    return DistillationReport(
        task="SST-2",
        teacher_metrics={"eval_accuracy": 0.92, "eval_loss": 0.31, "eval_runtime": 4.2, "epoch": 3.0},
        student_metrics={"eval_accuracy": 0.9, "eval_loss": 0.52, "eval_runtime": 2.1, "epoch": 3.0},
        teacher_parameters=109_483_778,
        student_parameters=66_956_546,
        teacher_size_bytes=437_958_648,
        student_size_bytes=267_832_560,
        temperature=3.5,
        loss_weights={"alpha_kd": 0.7, "alpha_task": 0.3, "alpha_cos": 0.0, "alpha_mse": 0.0},
        teacher=TEACHER_ID,
        teacher_layers=[0, 2, 4],
        teacher_num_layers=6,
        latency=_latency(0.010, 0.004),
        training_time_s=321.0,
        hyperparameters={"learning_rate": 5e-5, "seed": 42},
    )


def test_count_parameters_counts_tied_weights_once(tiny_mlm):
    """Counting every name of a tied weight would add the vocabulary-sized decoder a second time to a masked LM."""
    decoder = tiny_mlm.cls.predictions.decoder
    # The premise: the decoder's weight is the word embedding matrix and its bias is the head's `bias`.
    assert decoder.weight is tiny_mlm.bert.embeddings.word_embeddings.weight
    assert decoder.bias is tiny_mlm.cls.predictions.bias
    every_name = sum(p.numel() for _, p in tiny_mlm.named_parameters(remove_duplicate=False))
    assert count_parameters(tiny_mlm) == every_name - decoder.weight.numel() - decoder.bias.numel()


def test_size_on_disk_is_four_bytes_per_fp32_parameter(tiny_mlm, tmp_path):
    """A size that stored tied weights twice, missed weight files or counted `training_args.bin` would misreport."""
    params = count_parameters(tiny_mlm)
    size = size_on_disk(tiny_mlm)
    # fp32 safetensors: 4 bytes per parameter, plus buffers (position ids) and a JSON header of a few kB.
    assert 4 * params <= size <= 4 * params + 32_000

    tiny_mlm.save_pretrained(tmp_path)
    (tmp_path / "training_args.bin").write_bytes(b"\0" * 100_000)
    assert size_on_disk(tmp_path) == size
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .*weight file"):
        size_on_disk(empty)


def test_measure_latency_interleaves_and_leaves_models_as_they_were(tiny_classifier):
    """Timing must not leave a model in eval mode, change a weight or torch's thread count, or drop a batch size."""
    teacher = tiny_classifier.train()
    teacher.bert.pooler.eval()  # a mixed train/eval state that a blanket `train(flag)` would not restore
    student = make_student(teacher, num_layers=1)
    modes = {name: [m.training for m in model.modules()] for name, model in (("t", teacher), ("s", student))}
    weights = {name: p.clone() for name, p in teacher.state_dict().items()}
    threads = torch.get_num_threads()

    result = measure_latency(
        {"teacher": teacher, "student": student},
        vocab_size=VOCAB_SIZE,
        batch_sizes=(1, 2),
        seq_len=8,
        repeats=3,
        warmup=1,
        num_threads=1,
    )

    assert result["reference"] == "teacher"
    assert result["batch_sizes"] == [1, 2] and result["num_threads"] == 1
    assert set(result["results"]) == {"teacher", "student"}
    for by_size in result["results"].values():
        assert set(by_size) == {1, 2}
        for size, entry in by_size.items():
            assert len(entry["times_s"]) == 3
            assert entry["median_s"] > 0 and entry["speedup"] > 0
            assert entry["throughput"] == pytest.approx(size / entry["median_s"])
    assert all(entry["speedup"] == 1.0 for entry in result["results"]["teacher"].values())

    assert [m.training for m in teacher.modules()] == modes["t"]
    assert [m.training for m in student.modules()] == modes["s"]
    assert torch.get_num_threads() == threads
    assert all(torch.equal(weights[name], p) for name, p in teacher.state_dict().items())


def test_measure_latency_rejects_sequences_longer_than_the_position_table(tiny_classifier):
    """A seq_len beyond max_position_embeddings would fail deep inside the model with an opaque shape error."""
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        measure_latency({"teacher": tiny_classifier}, vocab_size=VOCAB_SIZE, batch_sizes=(1,), seq_len=65)


def test_retention_golden_value_and_undefined_cases():
    """A zero or negative teacher score (CoLA's Matthews correlation can be) would give a meaningless percentage."""
    assert retention(0.9, 0.92) == pytest.approx(97.826, abs=1e-3)
    assert retention(0.9, 0.0) is None
    assert retention(0.1, -0.2) is None
    assert retention(float("nan"), 0.9) is None


def test_report_uses_the_task_main_metric_without_eval_prefix(report):
    """Retention on the wrong metric (or a KeyError on Trainer's `eval_` keys) would misstate what the student kept."""
    assert report.task == "sst2" and report.main_metric == "accuracy"
    assert report.retention == pytest.approx(97.826, abs=1e-3)
    assert report.quality_metrics == ["accuracy"]  # loss, runtime and epoch are run bookkeeping
    assert report.speedups == {1: 2.5, 32: 2.5}

    cola = DistillationReport(
        task="cola",
        teacher_metrics={"matthews_correlation": 0.0},
        student_metrics={"matthews_correlation": 0.1},
        teacher_parameters=1,
        student_parameters=1,
        teacher_size_bytes=1,
        student_size_bytes=1,
        temperature=2.0,
        loss_weights={"alpha_kd": 1.0},
    )
    assert cola.retention is None
    with pytest.raises(ValueError, match="'f1'"):
        DistillationReport(
            task="mrpc",
            teacher_metrics={"accuracy": 0.8},
            student_metrics={"accuracy": 0.7},
            teacher_parameters=1,
            student_parameters=1,
            teacher_size_bytes=1,
            student_size_bytes=1,
            temperature=2.0,
            loss_weights={"alpha_kd": 1.0},
        )


def test_results_json_round_trips(report, tmp_path):
    """NaN metrics and integer batch-size keys would make results.json invalid JSON or change it when read back."""
    report.student_metrics["spearmanr"] = float("nan")
    path = tmp_path / "out" / "results.json"
    report.save_json(path)
    loaded = json.loads(path.read_text())
    assert loaded == report.to_dict()
    assert loaded["retention_percent"] == pytest.approx(97.826, abs=1e-3)
    assert loaded["student_metrics"]["spearmanr"] is None
    assert loaded["latency"]["results"]["student"]["32"]["speedup"] == 2.5
    assert loaded["teacher_layers"] == [0, 2, 4] and loaded["temperature"] == 3.5
    assert set(loaded["versions"]) >= {"torch", "transformers", "hf_distill"}
    assert loaded["machine"]["cpu_count"] >= 1


def test_from_models_reads_the_layer_record_and_settings(tiny_classifier, tmp_path):
    """Enum-valued arguments (scheduler, optimizer) would break json.dump, and a lost layer record the model card."""
    student = make_student(tiny_classifier, num_layers=2)
    args = DistillationTrainingArguments(output_dir=str(tmp_path), report_to="none", temperature=4.0, alpha_cos=0.0)
    report = DistillationReport.from_models(
        tiny_classifier,
        student,
        task="rte",
        teacher_metrics={"eval_accuracy": 0.7},
        student_metrics={"eval_accuracy": 0.63},
        args=args,
        teacher_name="my/teacher",
    )
    assert report.teacher_layers == [0, 2] and report.teacher_num_layers == 4
    assert report.teacher == "my/teacher"
    assert report.temperature == 4.0 and report.loss_weights["alpha_cos"] == 0.0
    assert report.student_parameters < report.teacher_parameters
    assert report.hyperparameters["lr_scheduler_type"] == "linear"
    json.dumps(report.to_dict())


def test_format_table_shows_metrics_sizes_and_speed(report):
    """The printed summary must carry the numbers it claims: metric values, retention, size, latency and speedup."""
    table = format_table(report)
    assert "teacher layers 0, 2, 4 of 6" in table
    lines = {line.split("  ")[0]: line.split() for line in table.splitlines()}
    assert lines["accuracy (main)"][-2:] == ["0.9200", "0.9000"]
    assert lines["retention (accuracy)"][-1] == "97.83%"
    assert lines["parameters"][-2:] == ["109,483,778", "66,956,546"]
    assert lines["size on disk (MB)"][-2:] == ["437.96", "267.83"]
    assert lines["latency, batch 1 (ms)"][-2:] == ["10.00", "4.00"]
    assert lines["latency, batch 32 (ms)"][-2:] == ["320.00", "128.00"]
    assert lines["speedup, batch 32"][-2:] == ["1.00x", "2.50x"]
    assert "loss" not in lines and "runtime" not in lines


def test_format_table_says_what_the_numbers_mean(report):
    """A table that hides how the teacher was made and what the scores were measured on reads as a full-scale
    result when it is a 4,000-row demo: the closing line must give the teacher's fine-tuning, the student's rows and
    epochs and the rows scored, and be absent when the report records none of it."""
    assert "What the numbers mean" not in format_table(dataclasses.replace(report, teacher=None))
    described = dataclasses.replace(
        report,
        teacher_finetuning={"train_rows": 4000, "training": {"num_train_epochs": 1.0, "learning_rate": 2e-4}},
        train_rows=4000,
        eval_rows=872,
        hyperparameters={"num_train_epochs": 2.0},
    )
    last = format_table(described).splitlines()[-1]
    assert last == (
        "What the numbers mean: teacher fine-tuned here for 1 epoch on 4,000 train rows; student trained for 2 "
        "epochs on 4,000 rows; both scored on 872 sst2 validation rows."
    )
    assert format_table(report).splitlines()[-1] == "What the numbers mean: teacher used as given."


def test_model_card_front_matter_and_body(report):
    """A card whose YAML the Hub cannot parse, or that drops the base model, the citations or the settings."""
    text = model_card(report, model_name="bert-sst2-distilled", base_model=TEACHER_ID, hub_model_id="me/bert-sst2")
    card = ModelCard(text)
    assert card.data.base_model == TEACHER_ID
    assert {"distillation", "hf-distill", "text-classification"} <= set(card.data.tags)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.datasets == ["nyu-mll/glue"]
    assert card.data.metrics == ["accuracy"]
    (result,) = card.data.eval_results
    assert (result.dataset_config, result.dataset_split, result.metric_value) == ("sst2", "validation", 0.9)

    body = card.text
    assert "| accuracy (main) | 0.9200 | 0.9000 | 97.83% |" in body
    assert "teacher layers 0, 2, 4 of 6" in body
    assert "`0.7 · L_kd + 0.3 · L_task`" in body and "T = 3.5" in body
    assert "| speedup, batch 1 | 1.00x | 2.50x |" in body
    assert 'pipeline("text-classification", model="me/bert-sst2")' in body
    for citation in (CITATIONS["hinton2015"], CITATIONS["sanh2019"], GLUE_CITATION):
        assert citation in body
    assert CITATIONS["tang2019"] not in body  # alpha_mse is 0: the logit-MSE paper is not used

    with_mse = dataclasses.replace(report, loss_weights={**report.loss_weights, "alpha_mse": 0.5})
    text = model_card(with_mse, model_name="bert-sst2-distilled", base_model=TEACHER_ID)
    assert "0.5 · L_mse" in text and CITATIONS["tang2019"] in text


def test_only_a_card_carrying_the_tag_is_kept(tmp_path):
    """`create_model_card` decided whether to keep a README by grepping it for "hf-distill": a user's own README that
    merely mentions the project was kept, and the contract lived in two modules. The card's metadata tag decides."""
    from hf_distill.card import is_distillation_card

    mentions = tmp_path / "mention.md"
    mentions.write_text("# My model\n\nTrained with hf-distill, card written by hand.\n")
    assert not is_distillation_card(mentions)
    tagged = tmp_path / "tagged.md"
    tagged.write_text("---\ntags:\n- distillation\n- hf-distill\n---\n\n# Student\n")
    assert is_distillation_card(tagged)
    assert not is_distillation_card(tmp_path / "missing.md")


def test_the_loss_term_registry_is_the_one_source_of_names():
    """A term's flag, default, log key and card symbol were typed in four places and drifted (the benchmarks missed
    `alpha_mse`); the arguments' fields and defaults and the trainer's log keys must be the registry's."""
    from dataclasses import fields

    from hf_distill.arguments import LOSS_WEIGHT_NAMES
    from hf_distill.losses import LOSS_TERMS

    defaults = {f.name: f.default for f in fields(DistillationTrainingArguments)}
    assert LOSS_WEIGHT_NAMES == tuple(term.flag for term in LOSS_TERMS.values())
    for term in LOSS_TERMS.values():
        assert defaults[term.flag] == term.default_weight
        assert term.log_key == f"loss_{term.name}" and term.symbol == f"L_{term.name}"

"""The benchmarks' own logic, on hand-written results: the GLUE table's macro score, its near-chance rule, the recipe
command lines it runs, and the README sections rendered from result files. No model is trained here."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from datasets import Dataset
from transformers import HfArgumentParser

from benchmarks import glue, quality_sst2, render
from hf_distill import DistillationTrainingArguments

from .test_recipe import load_recipe


def _report(metric: str, teacher: float, student: float) -> dict:
    """The fields of a recipe `results.json` that the GLUE table reads."""
    return {
        "main_metric": metric,
        "teacher_metrics": {metric: teacher, "loss": 0.5},
        "student_metrics": {metric: student, "loss": 0.6},
        "teacher_layers": [0, 2, 4],
        "training_time_s": 12.0,
        "speedup": {"1": 2.1, "32": 1.9},
    }


@pytest.fixture
def rows() -> dict[str, dict]:
    settings = {"teacher_epochs": 3, "teacher_learning_rate": 1e-4, "epochs": 3, "learning_rate": 1e-4, "warmup": 0.06}
    return {
        "sst2": glue.task_row(_report("accuracy", 0.90, 0.88), chance=0.509, settings=settings),
        "cola": glue.task_row(_report("matthews_correlation", 0.40, 0.30), chance=0.0, settings=settings),
        "wnli": glue.task_row(_report("accuracy", 0.56, 0.56), chance=0.563, settings=settings),
    }


def test_glue_macro_leaves_out_near_chance_teachers_and_is_a_ratio_of_means(rows):
    """A near-chance teacher (WNLI) counted in the macro score makes retention look better than it is (a chance
    student "retains" 100%), and a mean of per-task ratios is not DistilBERT's macro retention."""
    assert [task for task, row in rows.items() if row["teacher_near_chance"]] == ["wnli"]
    summary = glue.summarise(rows)
    assert summary["tasks_counted"] == ["sst2", "cola"] and summary["tasks_near_chance"] == ["wnli"]
    assert summary["teacher_macro"] == pytest.approx(0.65)
    assert summary["student_macro"] == pytest.approx(0.59)
    assert summary["glue_macro_retention"] == pytest.approx(0.59 / 0.65)
    assert summary["glue_macro_retention"] != pytest.approx((0.88 / 0.90 + 0.30 / 0.40) / 2)
    with pytest.raises(SystemExit, match="every teacher is near chance"):
        glue.summarise({"wnli": rows["wnli"]})


def test_glue_near_chance_margin_and_zero_teacher():
    """A teacher a hair above the majority class was counted as a real teacher; a teacher scoring exactly 0 (a
    correlation) divided by zero."""
    settings = glue.TASKS["rte"]
    assert glue.task_row(_report("accuracy", 0.57, 0.55), chance=0.527, settings=settings)["teacher_near_chance"]
    assert not glue.task_row(_report("accuracy", 0.60, 0.55), chance=0.527, settings=settings)["teacher_near_chance"]
    zero = glue.task_row(_report("pearson", 0.0, 0.1), chance=0.0, settings=settings)
    assert zero["retention"] is None and zero["teacher_near_chance"]


def test_glue_commands_parse_with_the_recipe(tmp_path, monkeypatch):
    """The table is the recipe run as a user would: every command line it builds must parse with the recipe's own
    parser (a renamed flag would only fail after an hour of other tasks), and SST-2 must refuse to start without the
    quality benchmark's teacher instead of fine-tuning another one silently."""
    recipe = load_recipe()
    parser = HfArgumentParser((recipe.ModelArguments, recipe.DataArguments, DistillationTrainingArguments))
    monkeypatch.setattr(glue, "SST2_TEACHER", tmp_path / "missing")
    with pytest.raises(SystemExit, match="quality_sst2"):
        glue.recipe_command("sst2", glue.TASKS["sst2"], "glue", tmp_path / "out")
    teacher = tmp_path / "teacher"
    (teacher / "best").mkdir(parents=True)
    (teacher / "teacher.json").write_text("{}")
    monkeypatch.setattr(glue, "SST2_TEACHER", teacher)
    for task, settings in glue.TASKS.items():
        command = glue.recipe_command(task, settings, "glue", tmp_path / task)
        model_args, data_args, args = parser.parse_args_into_dataclasses(args=command[2:])
        assert data_args.task_name == task and model_args.cache_teacher_outputs
        assert args.num_train_epochs == settings["epochs"] and args.learning_rate == settings["learning_rate"]
        assert args.train_sampling_strategy == "group_by_length" and args.warmup_steps == settings["warmup"]
        if settings["teacher_epochs"] is None:
            assert model_args.teacher_model_name_or_path == str(teacher / "best")
            assert model_args.teacher_finetune_epochs == 0
        else:
            assert model_args.teacher_finetune_epochs == settings["teacher_epochs"]


def test_glue_retries_a_near_chance_teacher_and_reports_every_attempt(tmp_path, monkeypatch, rows):
    """A near-chance teacher was reported with only the last settings tried (hiding what failed), or the retry's
    command overrode the warm-up only for the student; each retry must parse with its own settings, run into its own
    directory (never over the first attempt's results), and the table must list every attempt in order."""
    recipe = load_recipe()
    parser = HfArgumentParser((recipe.ModelArguments, recipe.DataArguments, DistillationTrainingArguments))
    retry = glue.DEFAULTS | {"teacher_epochs": 6, "teacher_learning_rate": 3e-5, "warmup": 0.1}
    monkeypatch.setitem(glue.TASKS, "rte", glue.DEFAULTS | {"retries": [retry]})
    settings = glue.attempts("rte")
    assert len(settings) >= 2 and "retries" not in settings[0]
    directories = [glue.attempt_dir(tmp_path, "rte", index) for index in range(len(settings))]
    assert len(set(directories)) == len(settings) and directories[0] == tmp_path / "rte"
    for attempt, directory in zip(settings, directories):
        command = glue.recipe_command("rte", attempt, "glue", directory)
        model_args, _, args = parser.parse_args_into_dataclasses(args=command[2:])
        assert model_args.teacher_finetune_epochs == attempt["teacher_epochs"]
        assert args.warmup_steps == attempt["warmup"] and args.output_dir == str(directory)

    first = glue.task_row(_report("accuracy", 0.556, 0.538), chance=0.527, settings=settings[0])
    second = glue.task_row(_report("accuracy", 0.62, 0.60), chance=0.527, settings=settings[1])
    row = glue.row_from_attempts([first, second])
    assert row["teacher"] == 0.62 and not row["teacher_near_chance"] and row["settings"] == settings[1]
    assert [attempt["teacher"] for attempt in row["tried"]] == [0.556, 0.62]
    result = {
        "command": "python -m benchmarks.glue",
        "date": "2026-12-02",
        "summary": glue.summarise({**rows, "rte": row}),
        "results": {"tasks": {**rows, "rte": row}},
    }
    text = "\n".join(render._glue(result))
    tried = next(line for line in text.splitlines() if line.startswith("- rte"))
    assert tried.index("teacher 0.5560") < tried.index("teacher 0.6200")


def test_glue_section_marks_uncounted_tasks(rows):
    """The README table must say which teacher was near (or below) chance and left out, without a retention for it
    (a chance teacher "retained" at 180% read as a result), and give the macro retention."""
    result = {
        "command": "python -m benchmarks.glue",
        "date": "2026-12-02",
        "summary": glue.summarise(rows),
        "results": {"tasks": rows},
    }
    text = "\n".join(render._glue(result))
    wnli = next(line for line in text.splitlines() if line.startswith("| wnli"))
    assert "below chance 0.563: not counted" in wnli and "| – |" in wnli and "%" not in wnli.split("|")[5]
    rows["wnli"] = glue.task_row(_report("accuracy", 0.60, 0.56), chance=0.563, settings=rows["wnli"]["settings"])
    text = "\n".join(render._glue({**result, "results": {"tasks": rows}}))
    wnli = next(line for line in text.splitlines() if line.startswith("| wnli"))
    assert "near chance 0.563: not counted" in wnli and "| – |" in wnli  # no retention for a chance teacher
    assert "retention 90.77%" in text and "over sst2, cola" in text


def test_quality_section_reports_the_dev_selected_teacher_and_per_seed_gains():
    """The quality table must state how the teacher was chosen (its epoch and accuracy) and the seed-controlled KD
    gains, read from the result file rather than typed."""
    variant = {"description": "(b)", "accuracies": [0.86, 0.87, 0.88], "median": 0.87, "min": 0.86, "max": 0.88}
    result = {
        "command": "python -m benchmarks.quality_sst2",
        "date": "2026-12-02",
        "config": {"dev_rows": 872, "epochs": 1.0, "learning_rate": 1e-4},
        "summary": {
            "teacher_accuracy": 0.9,
            "retention": 0.87 / 0.9,
            "kd_gain_points": 1.5,
            "kd_gain_points_per_seed": [1.0, 1.5, 2.0],
            "random_init_accuracy": 0.8,
        },
        "results": {
            "teacher": {
                "train_rows": 67349,
                "epochs": 3.0,
                "learning_rate": 1e-4,
                "batch_size": 32,
                "warmup": 0.06,
                "best": {"epoch": 2.5, "accuracy": 0.9},
            },
            "variants": {"b": variant},
        },
    }
    text = "\n".join(render._quality(result))
    assert "fine-tuned on 67,349 SST-2 train rows for 3 epochs" in text
    assert "(epoch 2.5, accuracy 0.9000)" in text
    assert "+1.00, +1.50, +2.00" in text and "**96.67%**" in text
    assert "on its own training rows" not in text  # results written before the soft-target figures
    result["results"]["soft_targets"] = {
        "train_accuracy": 0.97,
        "mean_top_probability_t1": 0.975,
        "temperature": 2.0,
        "mean_top_probability": 0.905,
    }
    text = "\n".join(render._quality(result))
    assert "accuracy 97.00%, mean top probability 0.975 at T=1 and 0.905 at T=2" in text


def test_soft_target_stats_match_a_hand_computed_value():
    """The figure that explains a small KD gain (how close the teacher's targets are to the labels) must be computed
    on the first teacher's logits at the distillation temperature, not at T=1 or over the wrong axis."""
    logits = [[2.0, -1.0], [0.0, 3.0], [1.0, 0.0]]
    cached = Dataset.from_dict({"teacher_logits": [[row] for row in logits], "label": [0, 0, 0]})
    stats = quality_sst2.soft_target_stats(cached, 2.0)

    def top(row: list[float], temperature: float) -> float:
        weights = [math.exp(value / temperature) for value in row]
        return max(weights) / sum(weights)

    assert stats["train_accuracy"] == pytest.approx(2 / 3)
    assert stats["mean_top_probability_t1"] == pytest.approx(sum(top(row, 1.0) for row in logits) / 3)
    assert stats["mean_top_probability"] == pytest.approx(sum(top(row, 2.0) for row in logits) / 3)


def test_quality_runs_are_claimed_once_and_stale_claims_taken_over(tmp_path):
    """Two benchmark processes side by side trained the same run twice (half an hour of CPU each); a claim left by an
    interrupted process must not block its run forever, nor may an empty claim file."""
    run = tmp_path / "b_seed0.json"
    assert quality_sst2.claim(run)
    assert (tmp_path / "b_seed0.claim").read_text() == str(os.getpid())
    assert not quality_sst2.claim(run)  # held by a live process (this one)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "b_seed0.claim").write_text(finished.stdout.strip())  # a process that has exited
    assert quality_sst2.claim(run)
    (tmp_path / "c_seed0.claim").write_text("")
    assert quality_sst2.claim(tmp_path / "c_seed0.json")


def test_layer_losses_section_and_narrow_student_initialisation(tiny_classifier, monkeypatch):
    """The layer-loss table must show each term beside its own baseline, read from the result file; and the narrow
    student must start from the teacher's leading slices of layers 0, 2, 4 (a student left at random, or sliced from
    the wrong layers, would make the hint comparison one between initialisations, not losses)."""
    import re

    import torch

    from benchmarks import layer_losses

    def variant(description, settings, median):
        return {"description": description, "settings": settings, "median": median, "min": median, "max": median}

    result = {
        "command": "python -m benchmarks.layer_losses",
        "date": "2026-12-02",
        "config": {
            "dev_rows": 872,
            "epochs": 1.0,
            "train_rows": 8000,
            "learning_rate": 1e-4,
            "batch_size": 32,
            "seeds": [0, 1, 2],
            "narrow": layer_losses.NARROW,
        },  # fmt: skip
        "summary": {"teacher_accuracy": 0.9, "hint_gain_points": 0.5, "narrow_hint_gain_points": 2.0},
        "results": {
            "teacher": {"train_rows": 67349},
            "variants": {
                "triple": variant("triple", {}, 0.85),
                "hint": variant("hint", {"alpha_hint": 2.0}, 0.855),
                "narrow": variant("narrow", {"alpha_cos": 0.0}, 0.80),
                "narrow_hint": variant("narrow hint", {"alpha_cos": 0.0, "alpha_hint": 2.0}, 0.82),
            },
        },
    }
    text = "\n".join(render._layer_losses(result))
    assert "| hint: hint | `alpha_hint=2` | 0.8550 (0.8550 – 0.8550) | +0.50 points |" in text
    assert "| narrow_hint: narrow hint | `alpha_cos=0`, `alpha_hint=2` | 0.8200" in text and "+2.00 points" in text

    config = tiny_classifier.config
    config.num_hidden_layers = 6
    torch.manual_seed(0)
    teacher = type(tiny_classifier)(config)
    monkeypatch.setattr(layer_losses, "NARROW", dict(hidden_size=16, num_attention_heads=2, intermediate_size=20))
    student = layer_losses.narrow_student(teacher)
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 3
    source = teacher.state_dict()
    for name, value in student.state_dict().items():
        teacher_name = re.sub(r"layer\.(\d+)\.", lambda m: f"layer.{[0, 2, 4][int(m.group(1))]}.", name)
        expected = source[teacher_name][tuple(slice(0, size) for size in value.shape)]
        assert torch.equal(value, expected), name


def test_compression_section_shows_every_row_and_the_target():
    """The README's compression table is generated from compression.json; a renderer that dropped a row, swapped the
    batch sizes or printed the target without the measured figure would misreport what int8 and pruning bought."""
    timing = {"latency_ms": {"1": 5.0, "32": 400.0}, "speedup": {"1": 2.0, "32": 3.1}}
    result = {
        "command": "python -m benchmarks.compression",
        "date": "2026-12-02T00:00:00Z",
        "git_commit": "abc",
        "versions": {"torch": "2.13.0", "transformers": "5.24.0", "hf_distill": "0.1.0"},
        "machine": {"processor": "AMD EPYC", "cpu_count": 2, "torch_num_threads": 2},
        "config": {
            "dev_rows": 872,
            "recovery_epochs": 1.0,
            "recovery_rows": 8000,
            "student": {"layers": [0, 2, 5], "epochs": 1.0, "train_rows": 32000},
        },
        "summary": {
            "target_speedup_b32": 5.0,
            "target_accuracy_drop_points": 1.0,
            "int8_backend": "onnxruntime",
            "int8_student_speedup_b32": 3.1,
            "int8_accuracy_drop_points": 0.23,
            "fastest_int8_student": "student, 50% heads pruned + recovery, int8 (onnxruntime)",
            "fastest_int8_student_speedup_b32": 4.2,
            "fastest_int8_student_drop_points": 1.5,
        },
        "results": {
            "latency": {"seq_len": 128, "repeats": 5, "num_threads": 2, "batch_sizes": [1, 32]},
            "rows": {
                "teacher fp32": {"parameters": 22_700_000, "size_bytes": 90 * 2**20, "accuracy": 0.8968,
                                 "latency_ms": {"1": 9.0, "32": 1200.0}, "speedup": {"1": 1.0, "32": 1.0}},
                "student int8 (onnxruntime)": {"parameters": 17_000_000, "size_bytes": 17 * 2**20,
                                               "accuracy": 0.8800, **timing},
            },
        },
    }  # fmt: skip
    text = "\n".join(render._compression(result))
    assert "| student int8 (onnxruntime) | 17,000,000 | 17.0 MiB | 0.8800 | 2.00× | 400 ms, 3.10× |" in text
    assert "| teacher fp32 | 22,700,000 | 90.0 MiB | 0.8968 | 1.00× | 1200 ms, 1.00× |" in text
    assert "(onnxruntime): 3.10×, accuracy -0.23 points against the fp32 student" in text
    assert "4.20×, -1.50 points" in text and "AMD EPYC" in text


def test_mlm_memory_section_is_the_median_rows_as_ratios_of_the_plain_step():
    """The README's masked-LM memory table is generated from mlm_memory.json; a renderer that divided by the wrong
    row or showed one round instead of the median would misstate what distillation costs in memory."""
    result = {
        "command": "python -m benchmarks.mlm_memory",
        "date": "2026-12-03T00:00:00Z",
        "git_commit": "abc",
        "versions": {"torch": "2.13.0", "transformers": "5.24.0", "hf_distill": "0.1.0"},
        "machine": {"processor": "AMD EPYC", "cpu_count": 2, "torch_num_threads": 2},
        "config": {"batch_size": 32, "seq_len": 128, "repeats": 2, "steps": 3},
        "summary": {"plain_mlm_step_peak_mb": 2000, "one_logits_tensor_mb": 477},
        "results": {
            "median_step_peak_mb": {"plain step": 2000.0, "distillation, masked": 2500.0, "distillation, all": 5000.0}
        },
    }
    text = "\n".join(render._mlm_memory(result))
    assert "| plain step | 2000 MB | 1.00× |" in text
    assert "| distillation, masked | 2500 MB | 1.25× |" in text and "| distillation, all | 5000 MB | 2.50× |" in text
    assert "batch 32 x 128 tokens" in text and "477 MB" in text and "median of 2" in text


def test_fsdp_memory_section_compares_sharded_to_replicated():
    """The README's sharded-teacher memory table is generated from fsdp_memory.json; a renderer that divided by the
    wrong row would misstate what sharding the teacher saves."""
    result = {
        "command": "python -m benchmarks.fsdp_memory",
        "date": "2026-12-03T00:00:00Z",
        "git_commit": "abc",
        "versions": {"torch": "2.13.0", "transformers": "5.24.0", "hf_distill": "0.1.0"},
        "machine": {"processor": "AMD EPYC", "cpu_count": 2, "torch_num_threads": 2},
        "config": {"layers": 24, "hidden": 1024, "batch": [8, 128], "forwards": 3, "repeats": 2},
        "summary": {"teacher_parameters": 335_000_000, "teacher_fp32_mb": 1278, "processes": 2},
        "results": {"median_teacher_peak_mb": {"replicated": 1400.0, "sharded": 1050.0}},
    }
    text = "\n".join(render._fsdp_memory(result))
    assert "| replicated | 1,400 MB | 1.00× |" in text and "| sharded | 1,050 MB | 0.75× |" in text
    assert "335,000,000 parameters" in text and "2 CPU processes" in text

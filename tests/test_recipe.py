"""The GLUE recipe end to end, offline: every task, the teacher stage, the report, the model card, the Hub push
(mocked) and two processes under `accelerate launch`."""

from __future__ import annotations

import csv
import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from hf_distill.glue import GLUE_TASKS, load_glue

from .conftest import REPO_ROOT, save_tiny_checkpoint

RECIPE = REPO_ROOT / "recipes" / "glue_distill.py"


def load_recipe():
    spec = importlib.util.spec_from_file_location("glue_distill_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, minilm_path) -> Path:
    """A tiny 4-layer BERT base model with the real MiniLM tokenizer, saved like a Hub checkpoint."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_teacher"), BertModel, minilm_path)


def run_recipe(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(RECIPE), *args])
    load_recipe().main()


def common_args(output_dir: Path, teacher: Path) -> list[str]:
    return [
        "--teacher_model_name_or_path",
        str(teacher),
        "--output_dir",
        str(output_dir),
        "--max_train_samples",
        "24",
        "--max_eval_samples",
        "20",
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--max_steps",
        "2",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--latency_repeats",
        "1",
        # The tiny teacher is a base model: it is fine-tuned (3 steps) before distillation.
        "--teacher_finetune_epochs",
        "1",
    ]


def forget_student(output_dir: Path) -> None:
    """Remove a finished run's student and results, keeping `_teacher`: a later run into the same directory is then
    allowed (a finished run is otherwise refused) and reaches the teacher stage."""
    for name in ("results.json", "model.safetensors"):
        (output_dir / name).unlink()


def write_train_file(glue_dir: Path, task_name: str, destination: Path) -> Path:
    """A small training TSV in the Hub's column layout, taken from the task's dev rows (QNLI, QQP and MNLI have no
    local train split)."""
    task = GLUE_TASKS[task_name]
    dev = load_glue(task, glue_dir=glue_dir, require_train=False)[task.validation_splits[0]]
    path = destination / f"{task_name}_train.tsv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow([*task.text_keys, "label"])
        for row in dev.select(range(40)):
            writer.writerow([*(row[key] for key in task.text_keys), row["label"]])
    return path


@pytest.mark.parametrize("task_name", sorted(GLUE_TASKS))
def test_recipe_runs_every_glue_task_offline(task_name, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """A task-specific mistake (a wrong text column, label encoding, metric or the regression head of STS-B) breaks
    that task only; each of the nine must run and report its GLUE metric for teacher and student."""
    output_dir = tmp_path / task_name
    args = ["--task_name", task_name, "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    task = GLUE_TASKS[task_name]
    if task_name in ("qnli", "qqp", "mnli"):
        args += ["--train_file", str(write_train_file(glue_dir, task_name, tmp_path))]
    run_recipe(monkeypatch, *args)

    results = json.loads((output_dir / "results.json").read_text())
    metric = task.main_metric
    student_keys = [key for key in results["student_metrics"] if key.endswith(metric)]
    assert student_keys, results["student_metrics"]
    if task_name == "mnli":
        assert {"validation_matched_" + metric, "validation_mismatched_" + metric} <= set(student_keys)
    assert results["student_parameters"] < results["teacher_parameters"]
    assert results["teacher_layers"] == [0, 2]
    # What the numbers mean: the rows the student trained on and the rows both were scored on.
    assert (results["train_rows"], results["eval_rows"]) == (24, 20)  # --max_train_samples, --max_eval_samples
    student = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert student.config.num_labels == task.num_labels
    assert student.config.num_hidden_layers == 2
    card = ModelCard.load(output_dir / "README.md")
    assert {"distillation", "hf-distill"} <= set(card.data.tags)


def test_teacher_finetune_stage_saves_and_reuses_the_teacher(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """A teacher stage that retrains on every run wastes hours; one that reuses a half-written teacher is worse."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(monkeypatch, *args, "--teacher_finetune_epochs", "1")
    teacher_dir = output_dir / "_teacher"
    assert (teacher_dir / "hf_distill_teacher.json").is_file()
    first = (teacher_dir / "model.safetensors").stat().st_mtime_ns

    forget_student(output_dir)
    run_recipe(monkeypatch, *args, "--teacher_finetune_epochs", "1")
    assert (teacher_dir / "model.safetensors").stat().st_mtime_ns == first


def test_missing_local_train_split_is_a_clear_error(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """QNLI has no local train file; the user must be told what to pass instead of getting a KeyError."""
    args = ["--task_name", "qnli", "--glue_dir", str(glue_dir), *common_args(tmp_path / "qnli", tiny_teacher_dir)]
    with pytest.raises(ValueError, match="train_file"):
        run_recipe(monkeypatch, *args)


class FakeHubApi:
    """Stands in for `huggingface_hub.HfApi`: records the repository and the files an upload would send."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.uploaded: dict[str, bytes] = {}
        self.repo_id: str | None = None

    def create_repo(self, repo_id, **kwargs):
        self.created.append(repo_id)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        self.repo_id = repo_id
        for root, _, files in os.walk(folder_path):
            for name in files:
                relative = os.path.relpath(os.path.join(root, name), folder_path)
                if not any(fnmatch.fnmatch(relative, pattern) for pattern in ignore_patterns):
                    self.uploaded[relative] = Path(root, name).read_bytes()
        return f"https://huggingface.co/{repo_id}"


def test_push_to_hub_uploads_student_tokenizer_and_card(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """A push that uploads Trainer's generic card (no teacher, no retention), the tuned teacher, or no tokenizer
    gives users a model they cannot trust or load."""
    import transformers.trainer

    fake = FakeHubApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: fake)
    output_dir = tmp_path / "sst2"
    args = ["--task_name", "sst2", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(
        monkeypatch,
        *args,
        "--teacher_finetune_epochs",
        "1",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "someone/tiny-student-sst2",
    )
    assert fake.created == ["someone/tiny-student-sst2"] and fake.repo_id == "someone/tiny-student-sst2"
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} <= set(
        fake.uploaded
    )
    assert not any(name.startswith("_teacher") for name in fake.uploaded)
    card = ModelCard(fake.uploaded["README.md"].decode())
    assert card.data.base_model is None  # a local teacher whose config names no Hub id: left out, never a path
    assert {"distillation", "hf-distill"} <= set(card.data.tags)
    text = card.text
    for expected in ("Hinton", "Sanh", "0, 2", "temperature", "retention", "nyu-mll/glue"):
        assert expected.lower() in text.lower(), expected
    config = json.loads(fake.uploaded["config.json"])
    assert config["distillation"]["teacher_layers"] == [0, 2]


def test_two_processes_gather_metrics_over_the_whole_dev_set(glue_dir, tiny_teacher_dir, tmp_path):
    """Under `accelerate launch --num_processes 2 --multi_gpu` (CPU, gloo), metrics computed on one process's shard
    (half the dev set) or a
    card written twice would look plausible; the student's metric must equal a one-process evaluation of it."""
    output_dir = tmp_path / "mrpc2"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--multi_gpu",  # on a machine without GPUs this starts 2 CPU processes (gloo); `--cpu` would start one
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(RECIPE),
        "--task_name",
        "mrpc",
        "--glue_dir",
        str(glue_dir),
        *common_args(output_dir, tiny_teacher_dir),
        "--max_eval_samples",
        "37",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Process rank: 1 of 2" in completed.stderr and "Process rank: 0 of 2" in completed.stderr
    results = json.loads((output_dir / "results.json").read_text())

    # One-process evaluation of the saved student on the same 37 rows.
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from hf_distill.glue import make_compute_metrics, tokenize_glue

    task = GLUE_TASKS["mrpc"]
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data = tokenize_glue(load_glue(task, glue_dir=glue_dir), task, tokenizer, max_seq_length=32, max_eval_samples=37)
    student = AutoModelForSequenceClassification.from_pretrained(output_dir)
    trainer = Trainer(
        model=student,
        args=TrainingArguments(output_dir=str(tmp_path / "eval"), report_to="none", use_cpu=True),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(task),
    )
    single = trainer.evaluate(eval_dataset=data["validation"])
    assert results["student_metrics"]["f1"] == pytest.approx(single["eval_f1"], abs=1e-9)
    assert results["student_metrics"]["accuracy"] == pytest.approx(single["eval_accuracy"], abs=1e-9)
    card_files = list(output_dir.glob("README*.md"))
    assert len(card_files) == 1


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["cola", "sst2", "mrpc", "stsb", "rte", "wnli"])
def test_recipe_on_the_real_teacher_for_tasks_with_local_train_data(
    task_name, glue_dir, minilm_path, tmp_path, monkeypatch
):
    """The real MiniLM (tokenizer with token types, 512 positions, a pooler) exercises paths a tiny random BERT does
    not; each task with local train data must run end to end on it."""
    output_dir = tmp_path / task_name
    args = ["--task_name", task_name, "--glue_dir", str(glue_dir), *common_args(output_dir, Path(minilm_path))]
    run_recipe(monkeypatch, *args, "--teacher_finetune_epochs", "1", "--max_eval_samples", "64")
    results = json.loads((output_dir / "results.json").read_text())
    assert results["teacher_layers"] == [0, 2, 4]
    assert results["student_parameters"] < results["teacher_parameters"]
    assert GLUE_TASKS[task_name].main_metric in results["student_metrics"]


def test_a_teacher_fine_tuned_for_another_task_is_not_reused(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """An MRPC teacher saved in the output directory was silently reused for RTE: the RTE student got MRPC's
    labels and `results.json` named the base model as the teacher. A saved teacher of another task (or base, data,
    setting) must be refused before any work, leaving it as it was; `results.json` names the teacher used."""
    output_dir = tmp_path / "shared_dir"
    mrpc = ["--task_name", "mrpc", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(monkeypatch, *mrpc)
    results = json.loads((output_dir / "results.json").read_text())
    assert results["teacher"] == str(output_dir / "_teacher")
    assert results["teacher_finetuning"]["base"]["path"] == str(tiny_teacher_dir.resolve())
    assert results["teacher_finetuning"]["task"] == "mrpc" and results["teacher_finetuning"]["reused"] is False
    assert "fine-tuned from" in (output_dir / "README.md").read_text()
    weights = output_dir / "_teacher" / "model.safetensors"
    before = weights.stat().st_mtime_ns

    forget_student(output_dir)
    rte = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match="task: saved 'mrpc', now 'rte'"):
        run_recipe(monkeypatch, *rte, "--teacher_finetune_epochs", "2")
    assert weights.stat().st_mtime_ns == before
    # Other data (another sample limit) is another teacher too.
    with pytest.raises(ValueError, match="train_rows"):
        run_recipe(monkeypatch, *mrpc, "--max_train_samples", "16")


def test_a_base_teacher_without_fine_tuning_is_refused_before_anything(
    glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A base model as teacher without --teacher_finetune_epochs trained the student from a random classifier; it
    must be refused before the output directory is created, naming the fix."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match="--teacher_finetune_epochs"):
        run_recipe(monkeypatch, *args, "--teacher_finetune_epochs", "0")
    assert not output_dir.exists()


@pytest.mark.parametrize("layers", [["0", "0"], ["9"]])
def test_bad_student_layers_fail_before_the_teacher_is_fine_tuned(
    layers, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """`--student_layers 0 0` or `9` was rejected only after the teacher had been fine-tuned and evaluated (minutes
    on real data), and left an empty output directory; it must fail first and create nothing."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match="strictly increasing|out of range"):
        run_recipe(monkeypatch, *args, "--student_layers", *layers)
    assert not output_dir.exists()


def test_resume_from_checkpoint_true_on_the_command_line(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """`--resume_from_checkpoint true` was taken as a path named "true"; it must resume from the newest checkpoint
    of --output_dir, as `run_glue.py` users expect."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(monkeypatch, *args, "--save_strategy", "steps", "--save_steps", "1")
    first_run = (output_dir / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    run_recipe(
        monkeypatch, *args, "--save_strategy", "steps", "--save_steps", "1", "--max_steps", "3",
        "--resume_from_checkpoint", "true",
    )  # fmt: skip
    state = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # Resumed: steps 1 and 2 were not trained (nor saved) again.
    assert (output_dir / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == first_run


def _state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def test_eval_strategy_evaluates_the_student_during_training(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """`--eval_strategy steps` (and so `--load_best_model_at_end`) crashed in the teacher's one-off evaluation with
    "you didn't pass an `eval_dataset`", after the teacher had been fine-tuned. The strategy must evaluate the
    student during training, as in `run_glue.py`."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(
        monkeypatch, *args, "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps",
        "--save_steps", "1", "--load_best_model_at_end", "true",
    )  # fmt: skip
    logs = _state(output_dir / "checkpoint-2")["log_history"]
    evals = [entry for entry in logs if "eval_loss" in entry]
    assert [entry["step"] for entry in evals] == [1, 2]
    assert all("eval_accuracy" in entry for entry in evals)
    assert (output_dir / "results.json").is_file()


def test_max_seq_length_above_the_position_limit_fails_before_any_work(
    glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A tokenizer without `model_max_length` let `--max_seq_length 1024` through for a 512-position model: it
    trained, evaluated, then failed in the latency step with no results. The models' own position limits must be
    checked first, naming the flag."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match="--max_seq_length 256 exceeds BertForSequenceClassification's position"):
        run_recipe(monkeypatch, *args, "--max_seq_length", "256")  # the tiny teacher has 128 positions
    assert not output_dir.exists()


def _write_test_file(glue_dir: Path, destination: Path, rows: int = 9) -> Path:
    """RTE rows to predict on, without their labels."""
    dev = load_glue(GLUE_TASKS["rte"], glue_dir=glue_dir)["validation"]
    path = destination / "rte_test.tsv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence1", "sentence2"])
        for row in dev.select(range(rows)):
            writer.writerow([row["sentence1"], row["sentence2"]])
    return path


def test_do_predict_writes_run_glue_predictions(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """`--do_predict` was accepted and silently ignored, and `--test_file` refused. Predictions must be written as
    `run_glue.py` writes them: `predict_results_<task>.txt`, one label name per test row."""
    output_dir = tmp_path / "rte"
    test_file = _write_test_file(glue_dir, tmp_path)
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(monkeypatch, *args, "--do_train", "true", "--do_predict", "true", "--test_file", str(test_file))
    lines = (output_dir / "predict_results_rte.txt").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 10
    assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "not_entailment"}
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(9))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--test_file", "x.tsv"], "add --do_predict"),
        (["--do_train", "true", "--do_predict", "true"], "No test data for rte"),
        (["--do_predict", "true"], "--do_predict without --do_train"),
        (["--do_eval", "true"], "--do_eval without --do_train"),
    ],
)
def test_run_glue_flags_that_cannot_be_honoured_are_refused(
    extra, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """`--do_predict`, `--test_file` and `--do_eval` were accepted with no effect; a flag the recipe cannot honour
    must be refused before any work, naming the fix."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match=re.escape(message)):
        run_recipe(monkeypatch, *args, *extra)
    assert not output_dir.exists()


def test_a_rerun_never_replaces_a_run_silently(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """A re-run into a directory holding a finished or interrupted run started from scratch and replaced the
    student, the checkpoints, `results.json` and the card. A finished run must be refused (nothing changed); an
    interrupted one (checkpoints, no results) resumes from its newest complete checkpoint."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    run_recipe(monkeypatch, *args, "--save_strategy", "steps", "--save_steps", "1")
    stamps = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="already holds a finished run"):
        run_recipe(monkeypatch, *args, "--save_strategy", "steps", "--save_steps", "1")
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir() if p.is_file()} == stamps

    # Interrupted: the run had only reached checkpoint-2 (its final files are gone).
    forget_student(output_dir)
    first = (output_dir / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    run_recipe(monkeypatch, *args, "--save_strategy", "steps", "--save_steps", "1", "--max_steps", "3")
    assert _state(output_dir / "checkpoint-3")["global_step"] == 3
    assert (output_dir / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == first  # not retrained


def test_card_metadata_says_what_was_measured_and_never_a_local_path(glue_dir, tmp_path, monkeypatch, minilm_path):
    """`base_model` was the teacher's local path, and `model-index` claimed "GLUE RTE validation" for a 20-row subset
    or for the user's own file. `base_model` must be a Hub id (a flag, or the teacher's config) or absent, and the
    results must name the data they were measured on."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    teacher_dir = tmp_path / "teacher"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    saved = json.loads((teacher_dir / "config.json").read_text())
    (teacher_dir / "config.json").write_text(json.dumps({**saved, "_name_or_path": "someone/tiny-base"}))

    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, teacher_dir)]
    run_recipe(monkeypatch, *args)
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.base_model == "someone/tiny-base"
    result = card.data.eval_results[0]
    assert "first 20 of 277 rows" in result.dataset_name, result.dataset_name

    output_dir = tmp_path / "rte_own"
    own = tmp_path / "rte_dev.tsv"
    dev = load_glue(GLUE_TASKS["rte"], glue_dir=glue_dir)["validation"]
    with open(own, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence1", "sentence2", "label"])
        for row in dev.select(range(12)):
            writer.writerow([row["sentence1"], row["sentence2"], row["label"]])
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, teacher_dir)]
    run_recipe(monkeypatch, *args, "--validation_file", str(own), "--base_model_id", "org/explicit-base")
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.base_model == "org/explicit-base"
    result = card.data.eval_results[0]
    assert "rte_dev.tsv" in result.dataset_name and result.dataset_type == "local-file"
    assert "GLUE" not in result.dataset_name


def test_teacher_evaluation_reports_nowhere_and_keeps_no_strategy(monkeypatch, tiny_classifier, tmp_path):
    """The teacher's one-off evaluation inherited `--report_to tensorboard` (an untagged event file in the current
    directory) and `--eval_strategy` (a crash); it must report nowhere and have no strategy of its own."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from hf_distill import teachers as pipeline

    seen = {}

    class Recording(pipeline.Trainer):
        def __init__(self, *args, **kwargs):
            seen["args"] = kwargs["args"]
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pipeline, "Trainer", Recording)
    args = TrainingArguments(
        output_dir=str(tmp_path / "o"), report_to="none", eval_strategy="steps", eval_steps=1, use_cpu=True,
        load_best_model_at_end=True, save_strategy="steps", save_steps=1,
    )  # fmt: skip
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 4, "labels": [0, 1, 2, 0]})
    from .conftest import pad_collate

    pipeline.evaluate_teacher(tiny_classifier, args=args, eval_sets={"validation": rows}, data_collator=pad_collate)
    assert seen["args"].report_to in ([], ["none"], "none")
    assert seen["args"].eval_strategy == "no" and not seen["args"].load_best_model_at_end
    assert args.eval_strategy == "steps"  # the run's own arguments are untouched


def test_near_chance_banner_names_what_was_done(caplog):
    """The banner told the user to fine-tune the teacher even when the run just had; it must say the fine-tuning
    was not enough and what to change."""
    import logging

    from hf_distill.glue import get_task
    from hf_distill.teachers import warn_if_near_chance

    with caplog.at_level(logging.WARNING):
        assert warn_if_near_chance(get_task("rte"), {"eval_accuracy": 0.5}, [0, 1], finetuned_epochs=2)
    text = caplog.text
    assert "fine-tuned it for 2 epochs" in text and "--teacher_learning_rate" in text
    assert "Fine-tune it first" not in text


def test_teacher_reuse_follows_every_setting_and_the_base_weights(glue_dir, tmp_path, monkeypatch, minilm_path):
    """The reuse check compared a handful of settings and the base as a string: a teacher trained with another
    weight decay or scheduler, or from base weights overwritten in place, was silently reused, while the same base
    folder spelled another way was refused. Every training setting and the base's resolved path and weights count."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    base = tmp_path / "base"
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, base)]
    run_recipe(monkeypatch, *args)

    forget_student(output_dir)
    with pytest.raises(ValueError, match="training.weight_decay: saved 0.0, now 0.5"):
        run_recipe(monkeypatch, *args, "--weight_decay", "0.5")
    with pytest.raises(ValueError, match="training.lr_scheduler_type"):
        run_recipe(monkeypatch, *args, "--lr_scheduler_type", "constant")

    # The same folder by another spelling is the same base: reused, and the card and results say so.
    other_spelling = os.path.relpath(base) + os.sep
    run_recipe(monkeypatch, *args, "--teacher_model_name_or_path", other_spelling)
    assert json.loads((output_dir / "results.json").read_text())["teacher_finetuning"]["reused"] is True
    assert "(reused)" in (output_dir / "README.md").read_text()

    # New weights saved over the base: another base.
    forget_student(output_dir)
    torch.manual_seed(1)
    BertModel(config).save_pretrained(base)
    with pytest.raises(ValueError, match="base.weights"):
        run_recipe(monkeypatch, *args)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be a positive integer"),
        (["--resume_from_checkpoint", "true"], "holds no complete checkpoint"),
        (["--student_model_name_or_path", "./no/such/student"], "the student path './no/such/student' does not exist"),
        (["--teacher_finetune_epochs", "-1"], "--teacher_finetune_epochs must be >= 0"),
    ],
)
def test_more_bad_flags_fail_before_anything_is_created(
    extra, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A batch size of 0 or `--resume_from_checkpoint true` into a new directory failed only after the teacher's
    evaluation and left an empty output directory; a missing student path gave a raw Hub error; a negative
    fine-tuning epoch count was silently accepted."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match=re.escape(message)):
        run_recipe(monkeypatch, *args, *extra)
    assert not output_dir.exists()


def test_a_teacher_with_another_label_count_is_refused_clearly(glue_dir, tmp_path, monkeypatch, minilm_path):
    """A 3-label classifier with generic label names used on 2-label RTE failed with a raw `RuntimeError` about
    `ignore_mismatched_sizes`; it must name the label counts and the fix."""
    from transformers import BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    teacher = tmp_path / "three"
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128, num_labels=3,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(tmp_path / "rte", teacher)]
    with pytest.raises(ValueError, match="classifies 3 labels but rte has 2"):
        run_recipe(monkeypatch, *args, "--teacher_finetune_epochs", "0")
    # Fine-tuning it replaces the head of the wrong size instead.
    run_recipe(monkeypatch, *args)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "rte").config.num_labels == 2


def test_mnli_card_and_best_model_use_quality_metrics_per_split(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """On MNLI the card listed `validation_matched_runtime` and other run figures as metrics with a "retention", all
    under the matched split, and `--load_best_model_at_end` failed on a missing `eval_loss` after the teacher was
    fine-tuned. Only quality metrics belong in the card, each under its own split, and training evaluates the
    matched split as `run_glue.py` does."""
    output_dir = tmp_path / "mnli"
    args = ["--task_name", "mnli", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    args += ["--train_file", str(write_train_file(glue_dir, "mnli", tmp_path))]
    run_recipe(
        monkeypatch, *args, "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps",
        "--save_steps", "1", "--load_best_model_at_end", "true",
    )  # fmt: skip
    card = ModelCard.load(output_dir / "README.md")
    results = {(r.metric_type, r.dataset_split) for r in card.data.eval_results}
    assert results == {
        ("validation_matched_accuracy", "validation_matched"),
        ("validation_mismatched_accuracy", "validation_mismatched"),
    }, results
    assert "runtime" not in card.text


def test_a_bad_resume_path_or_unresumable_checkpoints_fail_before_work(
    glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A wrong `--resume_from_checkpoint` path was caught only after the teacher was fine-tuned; checkpoints saved
    with `--save_only_model` (not resumable) were written over by a silent new run."""
    output_dir = tmp_path / "rte"
    args = ["--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir)]
    with pytest.raises(ValueError, match="Can't find a valid checkpoint at"):
        run_recipe(monkeypatch, *args, "--resume_from_checkpoint", str(tmp_path / "nope" / "checkpoint-9"))
    assert not output_dir.exists()

    only_model = ["--save_only_model", "true", "--save_strategy", "steps", "--save_steps", "1"]
    run_recipe(monkeypatch, *args, *only_model)
    forget_student(output_dir)
    stamps = {p: p.stat().st_mtime_ns for p in output_dir.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="cannot be resumed"):
        run_recipe(monkeypatch, *args, *only_model)
    assert {p: p.stat().st_mtime_ns for p in output_dir.rglob("*") if p.is_file()} == stamps


def test_recipe_teacher_modes(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """Each teacher mode must be reachable from the recipe's flags and finish with a report: cached outputs, an
    ensemble, a route of checkpoints and co-training."""
    base = ["--task_name", "sst2", "--glue_dir", str(glue_dir)]
    cached = tmp_path / "cached"
    run_recipe(monkeypatch, *base, *common_args(cached, tiny_teacher_dir), "--cache_teacher_outputs", "true")
    assert json.loads((cached / "results.json").read_text())["student_metrics"]
    second = str(cached / "_teacher")  # a fine-tuned teacher for the other modes
    modes = {
        "ensemble": ["--additional_teachers", second, "--teacher_weights", "2", "1", "--cos_teacher", "0"],
        "ensemble-cached": ["--additional_teachers", second, "--cos_teacher", "0", "--cache_teacher_outputs", "true"],
        "route": ["--additional_teachers", second, "--teacher_route", "true", "--logging_steps", "1"],
        "cotrain": ["--cotrain_teacher", "true", "--cotrain_isolation", "false"],
    }
    for name, flags in modes.items():
        output_dir = tmp_path / name
        run_recipe(monkeypatch, *base, *common_args(output_dir, tiny_teacher_dir), *flags)
        results = json.loads((output_dir / "results.json").read_text())
        assert results["student_metrics"] and results["teacher_metrics"], name
        if name.startswith("ensemble"):
            assert second in results["teacher"], results["teacher"]
    cotrained = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cotrain" / "_cotrained_teacher")
    assert json.loads((tmp_path / "cotrain" / "results.json").read_text())["teacher"].endswith("_cotrained_teacher")
    assert cotrained.config.num_hidden_layers == 4
    history = json.loads((tmp_path / "route" / "trainer_state.json").read_text())["log_history"]
    assert [entry["route_checkpoint"] for entry in history if "loss" in entry] == [0, 1]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--teacher_route", "true"], "at least two checkpoints"),
        (["--cache_teacher_outputs", "true", "--cotrain_teacher", "true"], "needs live teachers"),
        (["--teacher_weights", "1", "2"], "2 value(s) for 1 teacher(s)"),
        (["--additional_teachers", "/does/not/exist", "--cos_teacher", "0"], "does not exist"),
        (["--additional_teachers", "TINY_BASE", "--cos_teacher", "0"], "head"),
    ],
)
def test_teacher_mode_flags_that_cannot_work_fail_before_any_work(
    flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A contradictory teacher-mode flag found after the teacher is fine-tuned wastes that run and leaves files."""
    flags = [str(tiny_teacher_dir) if flag == "TINY_BASE" else flag for flag in flags]  # a base model: no head
    assert_refused_before_any_work(flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch)


def assert_refused_before_any_work(flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch) -> None:
    """The recipe on sst2 (unless `flags` names a task) with `flags` raises `message`, and no output dir exists."""
    output_dir = tmp_path / "run"
    task = [] if "--task_name" in flags else ["--task_name", "sst2"]
    with pytest.raises(ValueError, match=re.escape(message)):
        run_recipe(monkeypatch, *task, "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir), *flags)
    assert not output_dir.exists()


def test_recipe_tiny_student_on_a_transfer_set_and_push(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """`--student_type bilstm --augment N` must train a BiLSTM on the teacher-labelled transfer set and push a model
    that the Auto classes load: a run that ignored --augment, kept L_cos, pushed a card describing copied transformer
    layers, or saved a model without its architecture in config.json would each pass unnoticed otherwise."""
    import transformers.trainer

    fake = FakeHubApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: fake)
    output_dir = tmp_path / "bilstm"
    run_recipe(
        monkeypatch,
        "--task_name",
        "sst2",
        "--glue_dir",
        str(glue_dir),
        *common_args(output_dir, tiny_teacher_dir),
        "--student_type",
        "bilstm",
        "--student_config_overrides",
        "hidden_size=8,pooling=last,mlp_hidden_size=0",
        "--augment",
        "3",
        "--logging_steps",
        "1",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "someone/bilstm-sst2",
    )
    results = json.loads((output_dir / "results.json").read_text())
    transfer = results["transfer_set"]
    assert transfer["n_iter"] == 3 and transfer["labelled_rows"] == 24 and transfer["rows"] > 24
    assert results["student_type"] == "bilstm" and results["loss_weights"]["alpha_cos"] == 0.0
    student = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert type(student).__name__ == "BiLSTMForSequenceClassification"
    assert student.config.hidden_size == 8 and student.config.pooling == "last"
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert logged and all({"loss_kd", "loss_task"} <= set(e) and "loss_cos" not in e for e in logged)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(fake.uploaded)
    assert json.loads(fake.uploaded["config.json"])["model_type"] == "hf_distill_bilstm"
    card = fake.uploaded["README.md"].decode()
    assert "BiLSTMForSequenceClassification" in card and "transfer set" in card and "tang2019" in card
    assert "copied with their weights" not in card and "import hf_distill" in card


def test_recipe_textcnn_on_a_regression_transfer_set(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """STS-B's float scores have no 'no label' value: the recipe must distil the regression head from the teacher
    alone on the transfer set (--alpha_task 0) and keep the TextCNN's single regression output."""
    output_dir = tmp_path / "stsb"
    run_recipe(
        monkeypatch,
        "--task_name",
        "stsb",
        "--glue_dir",
        str(glue_dir),
        *common_args(output_dir, tiny_teacher_dir),
        "--student_type",
        "textcnn",
        "--augment",
        "2",
        "--alpha_task",
        "0",
    )
    results = json.loads((output_dir / "results.json").read_text())
    assert results["transfer_set"]["rows"] > 24 and "pearson" in results["student_metrics"]
    assert AutoModelForSequenceClassification.from_pretrained(output_dir).config.num_labels == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--student_type", "gru"], "--student_type must be one of"),
        (["--student_type", "bilstm", "--student_layers", "0", "2"], "--student_layers choose a transformer"),
        (["--student_type", "bilstm", "--alpha_cos", "1"], "pass --alpha_cos 0"),
        (["--student_type", "bilstm", "--alpha-cos", "0.5"], "pass --alpha_cos 0"),
        (["--student_type", "bilstm", "--alpha_co", "0.5"], "pass --alpha_cos 0"),
        (["--student_type", "bilstm", "--gradient_checkpointing", "true"], "does not support activation"),
        (["--student_config_overrides", "hidden_size=8"], "shape a tiny student"),
        (["--student_type", "bilstm", "--student_config_overrides", "hiden_size=8"], "no field ['hiden_size']"),
        (["--student_type", "textcnn", "--student_config_overrides", "kernel_sizes=[]"], "kernel_sizes"),
        (["--student_type", "textcnn", "--student_config_overrides", "nonsense"], "is not name=value"),
        (["--student_type", "bilstm", "--student_embedding_init", "glove"], "embedding_init"),
        (["--augment", "-1"], "--augment must be"),
        (["--augment", "2", "--augment_p_ng", "2"], "p_ng must be a probability"),
        (["--augment", "2", "--cotrain_teacher", "true"], "drop --cotrain_teacher or --augment"),
        (["--augment", "2", "--task_name", "stsb"], "pass --alpha_task 0"),
    ],
)
def test_tiny_student_and_augment_flags_fail_before_any_work(
    flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A contradictory student or transfer-set flag found after the teacher is fine-tuned wastes that run and leaves
    files behind."""
    assert_refused_before_any_work(flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch)


def test_recipe_two_stage_tinybert_distillation(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """TinyBERT's two stages through the recipe's flags (README "Layer losses"): intermediate layers first, then
    predictions from the stage-1 student. A stage 1 that ignored the layer flags, logged no layer terms, or saved a
    student stage 2 cannot load would each break the documented commands."""
    base = ["--task_name", "sst2", "--glue_dir", str(glue_dir)]
    stage1 = tmp_path / "stage1"
    layer_flags = [
        "--alpha_kd",
        "0",
        "--alpha_task",
        "0",
        "--alpha_cos",
        "0",
        "--alpha_hint",
        "1",
        "--alpha_attn",
        "1",
    ]
    run_recipe(monkeypatch, *base, *common_args(stage1, tiny_teacher_dir), *layer_flags, "--logging_steps", "1")
    history = json.loads((stage1 / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert logged and all({"loss_hint", "loss_attn"} <= entry.keys() and "loss_kd" not in entry for entry in logged)
    stage2 = tmp_path / "stage2"
    args = common_args(stage2, stage1 / "_teacher")
    args = args[: args.index("--teacher_finetune_epochs")]  # the stage-1 teacher is already fine-tuned
    run_recipe(
        monkeypatch, *base, *args, "--student_model_name_or_path", str(stage1),
        "--alpha_kd", "1", "--alpha_task", "0", "--alpha_cos", "0", "--temperature", "1", "--logging_steps", "1",
    )  # fmt: skip
    results = json.loads((stage2 / "results.json").read_text())
    assert results["student_metrics"]
    history = json.loads((stage2 / "trainer_state.json").read_text())["log_history"]
    assert all("loss_kd" in entry and "loss_hint" not in entry for entry in history if "loss" in entry)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--alpha_hint", "1", "--cache_teacher_outputs", "true"], "cached teacher outputs hold the logits"),
        (["--alpha_hint", "1", "--layer_map", "1:9"], "teacher has 4 layers"),
        (["--alpha_rel", "1", "--relation_heads", "3"], "relation_heads=3"),
        (["--alpha_attn", "1", "--layer_map", "0:0"], "pairs only the embeddings"),
        (["--alpha_hint", "1", "--layer_map", "1-2"], "student:teacher"),
        (["--schedules", "alpha_kd:1:steps"], "shape"),
    ],
)
def test_layer_term_flags_that_cannot_work_fail_before_any_work(
    flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A layer map beyond the teacher, a relation-head count that divides nothing, or layer terms on cached outputs
    found only when the trainer starts would waste the teacher's fine-tuning and leave files behind."""
    assert_refused_before_any_work(flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch)


def test_recipe_reports_int8_and_pruned_students(glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    """`--int8 --prune_heads --prune_recovery_epochs` must add one row per variant to results.json and the card, and
    save each variant where its loader reloads it: a recipe that dropped a row, scored a variant on other rows,
    reported no speed for it, or saved a pruned model that plain loading cannot rebuild would go unnoticed."""
    from hf_distill import load_pruned, load_quantized

    output_dir = tmp_path / "run"
    flags = ["--int8", "true", "--prune_heads", "0.5", "--prune_recovery_epochs", "1"]
    run_recipe(
        monkeypatch,
        "--task_name",
        "sst2",
        "--glue_dir",
        str(glue_dir),
        *common_args(output_dir, tiny_teacher_dir),
        *flags,
    )
    results = json.loads((output_dir / "results.json").read_text())
    names = [row["name"] for row in results["compression"]]
    assert names == [
        "student int8 (onnxruntime)",
        "student, 50% heads pruned",
        "student, 50% heads pruned + recovery",
        "student, 50% heads pruned + recovery, int8 (onnxruntime)",
    ]
    for row in results["compression"]:
        assert "accuracy" in row["metrics"] and row["size_bytes"] > 0
        assert row["name"] in results["latency"]["results"]
    pruned = results["compression"][1]
    assert sum(len(heads) for heads in pruned["method"]["pruned_heads"].values()) == 2  # 2 layers x 2 heads, half
    model = load_pruned(pruned["path"])
    assert model.config.pruned_heads == pruned["method"]["pruned_heads"]
    assert load_quantized(results["compression"][3]["path"]) is not None
    card = (output_dir / "README.md").read_text()
    assert "## Compressed variants" in card and "--prune_heads 0.5" in card and "michel2019sixteen" in card
    assert "student, 50% heads pruned + recovery" in card


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--prune_heads", "1.5"], "strictly between 0 and 1"),
        (["--prune_heads", "0.3", "0.3"], "lists a fraction twice"),
        (["--int8", "true", "--int8_backend", "tensorrt"], "tensorrt"),
        (["--prune_recovery_epochs", "1"], "prunes none"),
        (["--int8_backend", "torch"], "--int8 is not set"),
        (["--student_type", "bilstm", "--augment", "1", "--prune_heads", "0.3"], "does not support"),
    ],
)
def test_compression_flags_that_cannot_work_fail_before_any_work(
    flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch
):
    """A pruning fraction of 1.5, an unknown int8 backend or pruning a BiLSTM found only after training would waste
    the teacher's fine-tuning and the distillation, and leave a half-written output directory."""
    if "tensorrt" in flags:
        with pytest.raises(SystemExit):  # argparse's `choices`: refused while parsing, before anything
            run_recipe(monkeypatch, "--task_name", "sst2", *common_args(tmp_path / "run", tiny_teacher_dir), *flags)
        assert not (tmp_path / "run").exists()
        return
    assert_refused_before_any_work(flags, message, glue_dir, tiny_teacher_dir, tmp_path, monkeypatch)


def test_fsdp_launch_on_cpu_warns_and_a_sharded_teacher_stays_out_of_checkpoints(glue_dir, tiny_teacher_dir, tmp_path):
    """`accelerate launch --use_fsdp` on CPU processes is not sharded (Accelerate enables FSDP on GPUs only) and
    nothing said so; and a teacher sharded across the processes must never enter the student's checkpoints or its
    saved weights."""
    output_dir = tmp_path / "rte-fsdp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(RECIPE), "--task_name", "rte", "--glue_dir", str(glue_dir), *common_args(output_dir, tiny_teacher_dir),
        "--teacher_sharding", "shard", "--save_strategy", "steps", "--save_steps", "2",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stderr.count("this run is NOT sharded") == 2  # one per process
    assert "It trains with DDP on 2 processes" in completed.stderr
    from safetensors import safe_open

    for weights in (output_dir / "model.safetensors", output_dir / "checkpoint-2" / "model.safetensors"):
        with safe_open(str(weights), "pt") as saved:
            keys = list(saved.keys())
        layers = {key.split("layer.")[1].split(".")[0] for key in keys if "encoder.layer." in key}
        assert layers == {"0", "1"}, (weights, layers)  # the 2-layer student only, no teacher layer
    student = AutoModelForSequenceClassification.from_pretrained(output_dir)  # a normal, unsharded student
    assert student.config.num_hidden_layers == 2

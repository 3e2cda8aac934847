"""The GLUE recipe end to end, offline: every task, the teacher stage, the report, the model card, the Hub push
(mocked) and two processes under `accelerate launch`."""

from __future__ import annotations

import csv
import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from hf_distill.glue import GLUE_TASKS, load_glue

from .conftest import REPO_ROOT

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
    path = tmp_path_factory.mktemp("tiny_teacher")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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
    assert card.data.base_model == str(tiny_teacher_dir)
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

    from hf_distill.glue import make_compute_metrics
    from hf_distill.pipeline import tokenize_glue

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
    assert results["teacher_finetuning"]["base"] == str(tiny_teacher_dir)
    assert results["teacher_finetuning"]["task"] == "mrpc"
    assert "fine-tuned from" in (output_dir / "README.md").read_text()
    weights = output_dir / "_teacher" / "model.safetensors"
    before = weights.stat().st_mtime_ns

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

"""The compression report (`hf_distill.compare`, `hf-distill compare`): rows, one interleaved timing, scores on
real GLUE rows, the JSON and the table, and bad input refused before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from hf_distill.cli import main
from hf_distill.compare import compare, format_comparison
from hf_distill.head_pruning import prune_heads


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, minilm_path) -> tuple[Path, Path]:
    """A tiny teacher and a narrower, head-pruned student, saved with the real MiniLM tokenizer."""
    root = tmp_path_factory.mktemp("compare")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    paths = []
    # One layer each (the ONNX export takes seconds per layer); the teacher's is wider.
    for name, intermediate in (("teacher", 74), ("student", 37)):
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=intermediate, max_position_embeddings=128, num_labels=2,
        )  # fmt: skip
        model = BertForSequenceClassification(config)
        if name == "student":
            prune_heads(model, {0: [1, 2]})
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths.append(root / name)
    return paths[0], paths[1]


def test_compare_rows_timing_and_scores(saved_models, glue_dir):
    """One row per model and per derived form, all timed in the same run against the first model and scored on the
    same real SST-2 rows; a pruned student must be rebuilt with its pruned shapes (plain loading would fail), and an
    int8 row must report the int8 file's size, not the fp32 one's."""
    teacher, student = saved_models
    result = compare(
        [str(teacher), str(student)], task="sst2", glue_dir=str(glue_dir), max_eval_samples=16, int8=True,
        int8_backend="torch", onnx=True, batch_sizes=(1, 2), seq_len=16, repeats=2,
    )  # fmt: skip
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == [
        "teacher", "teacher int8 (torch)", "teacher onnx", "student", "student int8 (torch)", "student onnx",
    ]  # fmt: skip
    assert rows["teacher"]["speedup"] == {1: 1.0, 2: 1.0}
    assert set(result["latency"]["results"]) == set(rows)
    assert rows["student"]["parameters"] < rows["teacher"]["parameters"]
    assert rows["student int8 (torch)"]["size_bytes"] < rows["student"]["size_bytes"]
    for row in rows.values():
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
    # The ONNX export computes the same function: the same predictions on the same rows.
    assert rows["student onnx"]["metrics"]["accuracy"] == rows["student"]["metrics"]["accuracy"]
    table = format_comparison(result)
    assert table.splitlines()[0].split()[:2] == ["model", "form"] and "student onnx" in table


def test_cli_writes_json_and_prints_the_table(saved_models, tmp_path, capsys):
    """`hf-distill compare` must print the table and write the JSON it names; a CLI that printed but wrote nothing
    (or wrote int keys JSON cannot hold) would break scripts that read the report."""
    teacher, student = saved_models
    output = tmp_path / "out" / "report.json"
    status = main(
        ["compare", str(teacher), str(student), "--batch_sizes", "1", "--seq_len", "8", "--repeats", "1",
         "--output", str(output)]
    )  # fmt: skip
    assert status == 0
    written = json.loads(output.read_text())
    assert [row["name"] for row in written["rows"]] == ["teacher", "student"]
    assert "student" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "at least one student"),
        (["MISSING/dir/x"], "neither an existing directory nor a Hub id"),
        (["STUDENT", "--task", "sst5"], "sst5"),
        (["STUDENT", "--glue_dir", "GLUE"], "no --task"),
        (["STUDENT", "--repeats", "0"], "--repeats"),
        (["STUDENT", "--max_eval_samples", "0"], "--max_eval_samples"),
        (["STUDENT", "--threads", "0"], "--threads"),
    ],
)
def test_cli_bad_input_exits_2_before_loading(saved_models, glue_dir, tmp_path, capsys, extra, message):
    """Bad input must end with status 2 and the reason, before any model is loaded or a file written; a traceback
    (or a half-written report) is what a user would get otherwise."""
    teacher, student = saved_models
    output = tmp_path / "report.json"
    extra = [str(student) if e == "STUDENT" else str(glue_dir) if e == "GLUE" else e for e in extra]
    with pytest.raises(SystemExit) as raised:
        main(["compare", str(teacher), *extra, "--output", str(output)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_module_and_console_entry_points():
    """`python -m hf_distill compare` must reach the command line: a missing `__main__` is only found by users."""
    completed = subprocess.run(
        [sys.executable, "-m", "hf_distill", "compare", "--help"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0 and "--int8_backend" in completed.stdout


def test_the_console_script_is_installed():
    """`hf-distill compare` is the documented command; a console script missing from pyproject.toml (or pointing at a
    renamed function) leaves users with "command not found" while every module test passes."""
    from importlib.metadata import entry_points

    (script,) = [entry for entry in entry_points(group="console_scripts") if entry.name == "hf-distill"]
    assert script.value == "hf_distill.cli:main" and script.load() is main


def test_saved_int8_and_onnx_models_are_rows_of_their_own(saved_models, tmp_path):
    """An int8 or ONNX directory given as a model must be labelled by its form and count the weights it stores; the
    packed int8 weights are not `nn.Parameter`s, and counting parameters alone showed a third of the model."""
    from hf_distill import export_onnx, load_pruned, quantize, save_quantized

    teacher, student = saved_models
    model = load_pruned(student)
    save_quantized(quantize(model, "torch"), tmp_path / "int8")
    export_onnx(model, None, tmp_path / "onnx")
    result = compare(
        [str(teacher), str(student), str(tmp_path / "int8"), str(tmp_path / "onnx")], batch_sizes=(1,), seq_len=8,
        repeats=1,
    )  # fmt: skip
    rows = {row["name"]: row for row in result["rows"]}
    assert [rows[name]["form"] for name in ("student", "int8", "onnx")] == ["pytorch", "int8 (torch)", "onnx fp32"]
    assert rows["int8"]["parameters"] == rows["student"]["parameters"]
    # The graph's initializers: the model's weights, less the few small tensors the exporter folds into constants.
    assert rows["onnx"]["parameters"] == pytest.approx(rows["student"]["parameters"], rel=1e-3)

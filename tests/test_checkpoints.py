"""Faults around checkpoints: a killed run, corrupt or truncated files, a full disk while saving, rotation.

The run is tiny (a 4-layer teacher, a 2-layer student, 48 rows, batch 8) so that a kill-and-resume in a child process
stays well under a minute.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers.modeling_utils
from transformers import BertForSequenceClassification

import hf_distill.checkpoints
from hf_distill import DistillationTrainer
from hf_distill.checkpoints import (
    IN_PROGRESS_NAME,
    MARKER_NAME,
    checkpoint_dirs,
    is_complete_checkpoint,
    latest_complete_checkpoint,
    verify_checkpoint,
)

from .conftest import REPO_ROOT, random_token_dataset, tiny_bert_config
from .test_trainer import make_trainer, student_like, train_logs

RUN = dict(max_steps=8, save_strategy="steps", save_steps=2, logging_steps=1)
LOSS_KEYS = ("loss", "loss_kd", "loss_task", "loss_cos")


def faults_trainer(root: Path, *, student_seed: int = 123, **overrides) -> DistillationTrainer:
    """The run used throughout: fixed-seed tiny BERT teacher and student, output in `root / "out"`.

    The child process of the kill test builds its trainer with this same function.
    """
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    dataset = random_token_dataset(48, seed=14)
    student = student_like(teacher, seed=student_seed)
    return make_trainer(student, teacher, root, dataset=dataset, **{**RUN, **overrides})


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time, to prove that nothing was touched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def loss_logs(trainer: DistillationTrainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def full_disk(path_suffix: str, real_save, serialize=None):
    """A stand-in for a save function (`torch.save`, `safetensors.torch.save_file`) that fails as on a full disk for
    the file ending in `path_suffix`: after writing the first half of `serialize(obj)`, or before touching the file
    when `serialize` is `None`."""

    def save(obj, target, *args, **kwargs):
        if os.fspath(target).endswith(path_suffix):
            if serialize is not None:
                data = serialize(obj)
                with open(target, "wb") as handle:
                    handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(target))
        return real_save(obj, target, *args, **kwargs)

    return save


def full_disk_for_torch_save(path_suffix: str, *, partial: bool = True):
    real_save = torch.save

    def serialize(obj) -> bytes:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        return buffer.getvalue()

    return full_disk(path_suffix, real_save, serialize if partial else None)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """The output dir of a 6-step run saving every 2 steps with `save_total_limit=2` (checkpoint-4 and -6 remain)."""
    root = tmp_path_factory.mktemp("saved_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        faults_trainer(root, max_steps=6, save_total_limit=2).train()
    finally:
        torch.set_num_threads(threads)
    return root / "out"


@pytest.fixture
def run_copy(saved_run, tmp_path) -> Path:
    """A private copy of `saved_run` at `tmp_path / "out"`, where `faults_trainer(tmp_path)` writes."""
    shutil.copytree(saved_run, tmp_path / "out")
    return tmp_path / "out"


# ---- exact resume after a kill -----------------------------------------------------------------------------------

CHILD = """
import os, sys, time
from pathlib import Path

import torch

sys.path.insert(0, {repo!r})
torch.set_num_threads(1)
from tests.test_checkpoints import faults_trainer

root = Path(sys.argv[1])
real_save = torch.save


def save(obj, target, *args, **kwargs):
    # Hang while writing checkpoint-6: its weights and optimizer are on disk, its scheduler and trainer state are not.
    if os.fspath(target).endswith(os.path.join("checkpoint-6", "scheduler.pt")):
        (root / "hanging").touch()
        time.sleep(600)
    return real_save(obj, target, *args, **kwargs)


torch.save = save
faults_trainer(root).train()
"""


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, caplog):
    """A run killed while saving leaves a newer, half-written checkpoint that `Trainer` resumes from (or crashes on)
    instead of the last complete one; resuming must skip it and continue exactly as if never interrupted."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO_ROOT)))
    root = tmp_path / "cut"
    root.mkdir()
    checkpoint_4, checkpoint_6 = root / "out" / "checkpoint-4", root / "out" / "checkpoint-6"
    with open(tmp_path / "child.log", "wb") as log:
        child = subprocess.Popen([sys.executable, str(script), str(root)], cwd=REPO_ROOT, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not ((root / "hanging").exists() and checkpoint_4.is_dir() and is_complete_checkpoint(checkpoint_4)):
                assert child.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "the child did not reach checkpoint-6 in 120 s"
                time.sleep(0.05)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (checkpoint_6 / "optimizer.pt").is_file() and not is_complete_checkpoint(checkpoint_6)
    half_written = snapshot(checkpoint_6)

    full = faults_trainer(tmp_path / "full")
    full_logs = train_logs(full)
    assert [entry["step"] for entry in full_logs] == list(range(1, 9))

    resumed = faults_trainer(root, student_seed=999)  # the checkpoint, not the seed, must provide the weights
    with caplog.at_level(logging.WARNING, logger="hf_distill"):
        assert latest_complete_checkpoint(root / "out") == str(checkpoint_4)
        assert snapshot(checkpoint_6) == half_written  # looking does not touch
        resumed.train(resume_from_checkpoint=True)
    assert any("checkpoint-6" in r.getMessage() and IN_PROGRESS_NAME in r.getMessage() for r in caplog.records)

    resumed_logs = loss_logs(resumed)
    assert [entry["step"] for entry in resumed_logs] == list(range(1, 9))
    for a, b in zip(full_logs, resumed_logs):
        for key in LOSS_KEYS:
            assert a[key] == pytest.approx(b[key], abs=1e-6, rel=0), (a["step"], key)
    resumed_state = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed_state[name], value, atol=1e-6, rtol=0, msg=name)
    assert all(is_complete_checkpoint(path) for path in checkpoint_dirs(root / "out"))


# ---- corrupt or truncated checkpoints ----------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "plain-trainer"])
@pytest.mark.parametrize(
    "name, damage",
    [
        ("model.safetensors", truncate),
        ("config.json", truncate),
        ("optimizer.pt", truncate),
        ("trainer_state.json", Path.unlink),
        ("scheduler.pt", Path.unlink),
    ],
    ids=["truncated-weights", "truncated-config", "truncated-optimizer", "no-trainer-state", "no-scheduler"],
)
def test_corrupt_checkpoint_raises_before_any_step(run_copy, tmp_path, name, damage, marked):
    """A damaged checkpoint makes `Trainer` crash after loading part of it, or (no scheduler.pt) silently restart the
    learning-rate schedule; it must be refused up front, with the directory and file named, and nothing deleted."""
    checkpoint = run_copy / "checkpoint-6"
    if not marked:  # what plain Trainer writes: the same files, without hf_distill's marker
        for path in checkpoint_dirs(run_copy):
            (Path(path) / MARKER_NAME).unlink()
    damage(checkpoint / name)
    trainer = faults_trainer(tmp_path)
    before_weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    before_files = snapshot(run_copy)

    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=checkpoint)
    message = str(error.value)
    assert str(checkpoint) in message and name in message and "Nothing was loaded or deleted" in message, message

    assert trainer.state.global_step == 0 and trainer.state.log_history == []
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before_weights[key]), key
    assert snapshot(run_copy) == before_files
    # `resume_from_checkpoint=True` falls back to the intact older checkpoint (plain ones only when allowed).
    expected = str(run_copy / "checkpoint-4")
    assert latest_complete_checkpoint(run_copy, allow_unmarked=not marked) == expected


def test_resume_true_without_a_complete_checkpoint_raises(run_copy, tmp_path, caplog):
    """With only half-written checkpoints, `Trainer` would resume from a broken one; it must refuse, name them, and
    keep them."""
    for path in checkpoint_dirs(run_copy):
        (Path(path) / MARKER_NAME).unlink()
        (Path(path) / IN_PROGRESS_NAME).touch()
    before = snapshot(run_copy)
    trainer = faults_trainer(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_distill"), pytest.raises(ValueError, match="no complete check"):
        trainer.train(resume_from_checkpoint=True)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "checkpoint-4" in warned and "checkpoint-6" in warned
    assert trainer.state.global_step == 0 and snapshot(run_copy) == before


def test_plain_trainer_checkpoint_resumes_with_a_warning(run_copy, tmp_path, caplog):
    """Runs checkpointed by plain `Trainer` (no marker) must still resume, but not with a false claim of
    completeness."""
    for path in checkpoint_dirs(run_copy):
        (Path(path) / MARKER_NAME).unlink()
    assert not is_complete_checkpoint(run_copy / "checkpoint-6")
    trainer = faults_trainer(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_distill"):
        trainer.train(resume_from_checkpoint=True)
    assert any("checkpoint-6" in r.getMessage() and "cannot be proven" in r.getMessage() for r in caplog.records)
    assert [entry["step"] for entry in loss_logs(trainer)] == list(range(1, 9))


def test_save_only_model_checkpoint_is_not_resumed(tmp_path):
    """`Trainer` resumes from a `save_only_model=True` checkpoint with a fresh optimizer and learning-rate schedule,
    silently; it must be refused, while the checkpoint still counts as complete."""
    faults_trainer(tmp_path, max_steps=2, save_only_model=True).train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert is_complete_checkpoint(checkpoint) and not (checkpoint / "optimizer.pt").exists()
    trainer = faults_trainer(tmp_path)
    with pytest.raises(ValueError, match="save_only_model=True"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 0


# ---- saving: the marker, rotation, a full disk ---------------------------------------------------------------


def test_checkpoints_are_marked_complete_and_rotated(saved_run):
    """Without a marker written last, a checkpoint half-written by a crash looks like a complete one."""
    assert [Path(p).name for p in checkpoint_dirs(saved_run)] == ["checkpoint-4", "checkpoint-6"]
    for path in map(Path, checkpoint_dirs(saved_run)):
        marker = json.loads((path / MARKER_NAME).read_text())
        on_disk = {p.name: p.stat().st_size for p in path.iterdir() if p.name != MARKER_NAME}
        assert marker["files"] == on_disk
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= set(
            on_disk
        )
        assert marker["global_step"] == int(path.name.split("-")[1]) and marker["training_state"] is True
        verify_checkpoint(path)


@pytest.mark.parametrize("failing_file", ["model.safetensors", "optimizer.pt"])
def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing_file):
    """A save that fails on a full disk must stop training, must not look complete, and must not cost the previous
    checkpoint (`save_total_limit=1` rotates it away once a newer one exists)."""
    suffix = os.path.join("checkpoint-4", failing_file)
    if failing_file == "model.safetensors":
        # `save_pretrained` calls the `save_file` it imported into `transformers.modeling_utils`.
        save = full_disk(suffix, transformers.modeling_utils.safe_save_file, safetensors.torch.save)
        monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save)
    else:
        monkeypatch.setattr(torch, "save", full_disk_for_torch_save(suffix))
    trainer = faults_trainer(tmp_path, max_steps=6, save_total_limit=1)
    with pytest.raises(OSError) as error:
        trainer.train()
    assert error.value.errno == errno.ENOSPC
    assert trainer.state.global_step == 4  # no silent continuation past the failed save
    assert trainer.args.save_total_limit == 1

    out = tmp_path / "out"
    assert [Path(p).name for p in checkpoint_dirs(out)] == ["checkpoint-2", "checkpoint-4"]
    verify_checkpoint(out / "checkpoint-2")
    assert is_complete_checkpoint(out / "checkpoint-2")
    assert BertForSequenceClassification.from_pretrained(out / "checkpoint-2").config.num_hidden_layers == 2
    assert not is_complete_checkpoint(out / "checkpoint-4")
    with pytest.raises(ValueError, match="incomplete"):
        verify_checkpoint(out / "checkpoint-4")
    assert latest_complete_checkpoint(out) == str(out / "checkpoint-2")


def test_rotation_waits_for_the_completeness_marker(tmp_path, monkeypatch):
    """`Trainer` deletes old checkpoints before a marker could be written; a crash or full disk in between would
    leave no checkpoint that can be proven complete."""
    real = hf_distill.checkpoints.mark_checkpoint_complete

    def mark(path, **kwargs):
        if os.fspath(path).endswith("checkpoint-4"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return real(path, **kwargs)

    monkeypatch.setattr(hf_distill.checkpoints, "mark_checkpoint_complete", mark)
    trainer = faults_trainer(tmp_path, max_steps=6, save_total_limit=1)
    with pytest.raises(OSError):
        trainer.train()
    out = tmp_path / "out"
    assert is_complete_checkpoint(out / "checkpoint-2")
    assert not is_complete_checkpoint(out / "checkpoint-4")
    assert trainer.args.save_total_limit == 1


def test_failed_resave_over_a_complete_checkpoint_is_not_complete(tmp_path, monkeypatch):
    """A resumed run re-saves the steps after its checkpoint into existing directories; a failure half-way must not
    leave the old marker vouching for a mix of old and new files (whose sizes match: same run, same arguments)."""
    faults_trainer(tmp_path, max_steps=6).train()
    out = tmp_path / "out"
    assert is_complete_checkpoint(out / "checkpoint-6")
    # The new weights and arguments are written, the old optimizer.pt is left as it was.
    suffix = os.path.join("checkpoint-6", "optimizer.pt")
    monkeypatch.setattr(torch, "save", full_disk_for_torch_save(suffix, partial=False))
    trainer = faults_trainer(tmp_path, max_steps=6)
    with pytest.raises(OSError):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    assert is_complete_checkpoint(out / "checkpoint-4")
    assert not is_complete_checkpoint(out / "checkpoint-6")
    assert latest_complete_checkpoint(out) == str(out / "checkpoint-4")


def test_a_checkpoint_resharded_after_marking_still_resumes(run_copy, tmp_path):
    """The marker lists exact file names, so a checkpoint re-sharded after it was marked complete (weights saved
    again as `model-00001-of-0000N.safetensors` with an index) was refused although it holds everything resume
    needs. Weights that load through their index are accepted, and the resumed run equals the uninterrupted one."""
    checkpoint = run_copy / "checkpoint-4"
    state = safetensors.torch.load_file(checkpoint / "model.safetensors")
    (checkpoint / "model.safetensors").unlink()
    model = faults_trainer(tmp_path / "scratch").model
    model.load_state_dict(state, strict=False)
    model.save_pretrained(checkpoint, max_shard_size="20KB")
    assert (checkpoint / "model.safetensors.index.json").is_file()
    verify_checkpoint(checkpoint)  # no error

    uninterrupted = loss_logs(faults_trainer(tmp_path / "full", max_steps=6))
    trainer = faults_trainer(tmp_path, max_steps=6)
    trainer.train(resume_from_checkpoint=checkpoint)
    resumed = [entry for entry in trainer.state.log_history if "loss" in entry]
    for a, b in zip(uninterrupted, resumed):
        for key in LOSS_KEYS:
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["step"], key)

    # A shard that the index names but that is gone is still refused.
    shard = sorted(checkpoint.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(ValueError, match=shard.name):
        verify_checkpoint(checkpoint)


def test_resume_errors_keep_trainers_phrase(run_copy):
    """Users and tools match `Trainer`'s "Can't find a valid checkpoint at"; hf_distill's refusals used other
    words."""
    (run_copy / "checkpoint-6" / "scheduler.pt").unlink()
    with pytest.raises(ValueError, match="Can't find a valid checkpoint at .*checkpoint-6"):
        verify_checkpoint(run_copy / "checkpoint-6")


def test_resuming_a_run_at_its_last_step_is_refused_before_a_step(tiny_classifier, tmp_path):
    """`Trainer` resumed from the final checkpoint with the run's own settings took one step past max_steps (the end
    is checked only after a step), and a script then saved that student and its metrics over the finished run's."""
    dataset = random_token_dataset(32, seed=3)
    settings = dict(max_steps=4, save_strategy="steps", save_steps=4)
    make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path, dataset=dataset, **settings).train()
    checkpoint = tmp_path / "out" / "checkpoint-4"
    before = (checkpoint / "model.safetensors").read_bytes()
    again = make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path, dataset=dataset, **settings)
    with pytest.raises(ValueError, match="is at step 4 and this run ends at step 4: there is nothing left to train"):
        again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 4 and not (tmp_path / "out" / "checkpoint-5").exists()
    assert (checkpoint / "model.safetensors").read_bytes() == before
    # Raised once: the same trainer trains further when given more steps.
    again.args.max_steps = 6
    again.train(resume_from_checkpoint=str(checkpoint))
    assert again.state.global_step == 6

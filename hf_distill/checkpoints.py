"""Checkpoint completeness: a marker written last, checks before resuming, and rotation that spares good checkpoints.

`transformers.Trainer` (5.x) writes a checkpoint in place, one file after another, straight into
`<output_dir>/checkpoint-<step>`: weights (`save_pretrained`), `training_args.bin`, `optimizer.pt`, `scheduler.pt`,
`rng_state.pth`, and `trainer_state.json` last. There is no temporary directory, no rename and no `fsync`, so a crash
leaves a directory that looks like any other. On resume, `get_last_checkpoint` picks the highest-numbered directory
whatever it holds; a missing `optimizer.pt`/`scheduler.pt` silently restarts the optimizer and the learning-rate
schedule, and a missing `rng_state.pth` only logs at info level.

This module adds what it takes to tell a finished checkpoint from a half-written one:

- [`begin_checkpoint`] writes `hf_distill_in_progress` into the directory *before* anything else and removes an
  older completeness marker, so a directory being (re)written never looks complete;
- [`mark_checkpoint_complete`] flushes every file to disk, then writes `hf_distill_complete.json` (the step, and every
  file with its size) atomically, as the last act of a save;
- [`verify_checkpoint`], [`is_complete_checkpoint`] and [`latest_complete_checkpoint`] read it back before resuming;
- [`rotate_checkpoints`] deletes old checkpoints only after the new one is marked complete, and never the one just
  written.

Checkpoints written without these markers (by plain `Trainer`, or by an older hf_distill) cannot be proven complete.
They are accepted for resuming when the files a resume needs are present and structurally intact (JSON files such as
`trainer_state.json` parse, safetensors files match their header, the zip archives `torch.save` writes have their
central directory, optimizer and scheduler states exist), with a warning. A directory holding `hf_distill_in_progress`
but no `hf_distill_complete.json` is always rejected.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

logger = logging.get_logger(__name__)

MARKER_NAME = "hf_distill_complete.json"
IN_PROGRESS_NAME = "hf_distill_in_progress"
MARKER_FORMAT = 1
TRAINER_STATE_NAME = "trainer_state.json"

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TMP_SUFFIX = ".tmp"
_OWN_FILES = {name + suffix for name in (MARKER_NAME, IN_PROGRESS_NAME) for suffix in ("", _TMP_SUFFIX)}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
# Model weights, sharded or not: a checkpoint re-sharded after it was marked holds other names of the same weights.
_WEIGHT_NAME_RE = re.compile(r"^(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$")
_MODEL_CONFIG_FILES = ("config.json", "generation_config.json")
_OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")
_SCHEDULER_NAME = "scheduler.pt"
# Sub-directories in which DeepSpeed (`global_step*`) and FSDP (`pytorch_model_fsdp*`, `optimizer*`) keep state.
_STATE_DIR_PREFIXES = ("global_step", "pytorch_model_fsdp", "optimizer")
_ZIP_MAGIC = b"PK\x03\x04"
# fsync errors that only mean "this file system cannot sync this kind of file"; any other error is real.
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EISDIR, errno.EACCES, errno.EPERM}

_RESUME_HINT = (
    "Nothing was loaded or deleted. Resume from an earlier complete checkpoint (resume_from_checkpoint=True picks the "
    "newest one), or start a new run."
)


# ---- writing ---------------------------------------------------------------------------------------------------


def begin_checkpoint(path: str | os.PathLike) -> None:
    """Mark `path` as being written, before the first file of a checkpoint is saved.

    Writes `hf_distill_in_progress`, then removes any `hf_distill_complete.json` left by an earlier save into the same
    directory (a resumed run re-saves the steps after its checkpoint): a re-save killed half-way would otherwise leave
    an old marker whose sizes may still match the mixed old and new files. In that order, a crash between the two
    steps leaves the old, untouched checkpoint marked complete, which it still is.

    Args:
        path (`str` or `os.PathLike`): The checkpoint directory; created if missing.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    _write_durably(os.path.join(path, IN_PROGRESS_NAME), "a checkpoint is being written into this directory\n")
    marker = os.path.join(path, MARKER_NAME)
    if os.path.lexists(marker):
        os.remove(marker)
    _fsync_dir(path)


def mark_checkpoint_complete(path: str | os.PathLike, *, step: int, training_state: bool) -> dict[str, Any]:
    """Record that the checkpoint in `path` is fully written; call it as the last act of a save.

    Every file is flushed to disk first, then `hf_distill_complete.json` is written to a temporary file, flushed and
    renamed over the final name (`os.replace` is atomic), and `hf_distill_in_progress` is removed. The flush makes
    the marker mean "on disk", not "in the page cache": it costs the time to write the checkpoint out, which the
    operating system would spend anyway.

    Args:
        path (`str` or `os.PathLike`): The checkpoint directory.
        step (`int`): The global step the checkpoint was taken at.
        training_state (`bool`): Whether the optimizer, scheduler and RNG states were saved (`save_only_model=False`),
            i.e. whether training can be resumed from it.

    Returns:
        `dict[str, Any]`: The marker's content.
    """
    path = os.fspath(path)
    files: dict[str, int] = {}
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path).replace(os.sep, "/")
            if relative in _OWN_FILES or os.path.islink(full):
                continue
            _fsync_file(full)
            files[relative] = os.path.getsize(full)
        _fsync_dir(root)
    content = {"format": MARKER_FORMAT, "global_step": step, "training_state": training_state, "files": files}
    _write_durably(os.path.join(path, MARKER_NAME), json.dumps(content, indent=2, sort_keys=True) + "\n")
    in_progress = os.path.join(path, IN_PROGRESS_NAME)
    if os.path.lexists(in_progress):
        os.remove(in_progress)
    _fsync_dir(path)
    return content


def rotate_checkpoints(
    output_dir: str | os.PathLike, save_total_limit: int | None, *, keep: Iterable[str | os.PathLike | None] = ()
) -> list[str]:
    """Delete the oldest `checkpoint-<step>` directories until at most `save_total_limit` remain.

    Unlike `transformers.trainer_utils.rotate_checkpoints`, which orders by modification time (falling back to step
    numbers on file systems with coarse timestamps) and protects whatever sorts last, the directories in `keep` are
    protected by name; call this only after the new checkpoint is marked complete and pass it in `keep`.

    Args:
        output_dir (`str` or `os.PathLike`): The directory holding the checkpoints.
        save_total_limit (`int`, *optional*): How many to keep; `None` or <= 0 keeps all.
        keep (`Iterable`): Checkpoints never deleted (the one just written, the best one); `None` entries are ignored.

    Returns:
        `list[str]`: The deleted directories, oldest first.
    """
    if save_total_limit is None or save_total_limit <= 0:
        return []
    checkpoints = checkpoint_dirs(output_dir)
    protected = {os.path.realpath(os.fspath(p)) for p in keep if p is not None}
    present = {os.path.realpath(path) for path in checkpoints}
    excess = len(checkpoints) - max(save_total_limit, len(protected & present))
    deleted = []
    for path in checkpoints:
        if excess <= 0:
            break
        if os.path.realpath(path) in protected:
            continue
        logger.info("Deleting older checkpoint %s (save_total_limit=%s)", path, save_total_limit)
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
        excess -= 1
    return deleted


# ---- reading ---------------------------------------------------------------------------------------------------


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[str]:
    """The `checkpoint-<step>` directories in `output_dir`, oldest (lowest step) first; `[]` if it does not exist."""
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_RE.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` holds a checkpoint marked complete whose files all still match the marker.

    This is the strict test: a checkpoint without `hf_distill_complete.json` (written by plain `Trainer`, or one
    whose save was interrupted) is not complete here, even if [`verify_checkpoint`] accepts it for resuming.

    Args:
        path (`str` or `os.PathLike`): A checkpoint directory.

    Returns:
        `bool`
    """
    marked, problems = _inspect(os.fspath(path), require_training_state=False)
    return marked and not problems


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check that training can be resumed exactly from `path`, reading no tensor data.

    - With `hf_distill_complete.json`: every file it lists exists with its recorded size, safetensors headers match
      their file sizes, `torch.save` archives are readable, `trainer_state.json` parses and is at the marked step,
      and the optimizer state was saved.
    - With `hf_distill_in_progress` only: the save was interrupted; always an error.
    - With neither (plain `Trainer`): model weights, `trainer_state.json`, optimizer and scheduler states must exist
      and pass the same structural checks. Completeness cannot be proven, so a warning is logged.

    Args:
        path (`str` or `os.PathLike`): A checkpoint directory.

    Raises:
        ValueError: Naming the directory, each missing or corrupt file, and what to do instead.
    """
    path = os.fspath(path)
    marked, problems = _inspect(path, require_training_state=True)
    if problems:
        # "Can't find a valid checkpoint at" is `Trainer`'s own phrase, which users and tools match.
        raise ValueError(f"Can't find a valid checkpoint at {path}: {'; '.join(problems)}. {_RESUME_HINT}")
    if not marked:
        logger.warning(
            "Checkpoint %s has no %s (it was not written by hf_distill's DistillationTrainer), so its completeness "
            "cannot be proven; its files are present and structurally intact, resuming from it.",
            path,
            MARKER_NAME,
        )


def latest_complete_checkpoint(output_dir: str | os.PathLike, *, allow_unmarked: bool = False) -> str | None:
    """The newest checkpoint in `output_dir` that training can be resumed from, skipping broken newer ones.

    Each newer checkpoint skipped is named in a warning with the reason, and is left in place.

    Args:
        output_dir (`str` or `os.PathLike`): The training output directory.
        allow_unmarked (`bool`, *optional*, defaults to `False`):
            Also accept checkpoints without a completeness marker (written by plain `Trainer`) that pass
            [`verify_checkpoint`]'s structural checks. `DistillationTrainer.train(resume_from_checkpoint=True)` sets
            it, so that runs started with plain `Trainer` or an older hf_distill can be continued.

    Returns:
        `str` or `None`: The checkpoint directory, or `None` when there is none.
    """
    for path in reversed(checkpoint_dirs(output_dir)):
        marked, problems = _inspect(path, require_training_state=True)
        if not problems and (marked or allow_unmarked):
            return path
        reason = "; ".join(problems) if problems else f"it has no {MARKER_NAME}"
        logger.warning("Skipping checkpoint %s: %s. Its files are left in place.", path, reason)
    return None


# ---- checks ----------------------------------------------------------------------------------------------------


def _inspect(path: str, *, require_training_state: bool) -> tuple[bool, list[str]]:
    """Whether `path` carries a completeness marker, and the problems found."""
    if not os.path.isdir(path):
        return False, ["the directory does not exist"]
    marker = os.path.join(path, MARKER_NAME)
    if os.path.isfile(marker):
        return True, _marked_problems(path, marker, require_training_state)
    if os.path.lexists(os.path.join(path, IN_PROGRESS_NAME)):
        return False, [
            f"it is incomplete: it holds {IN_PROGRESS_NAME} but no {MARKER_NAME}, so the run stopped while saving it"
        ]
    return False, _unmarked_problems(path)


def _marked_problems(path: str, marker: str, require_training_state: bool) -> list[str]:
    try:
        with open(marker, encoding="utf-8") as handle:
            content = json.load(handle)
        files = dict(content["files"])
        step = int(content["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MARKER_NAME} is unreadable ({exc})"]
    problems = []
    weights_changed = False
    for name, size in sorted(files.items()):
        full = os.path.join(path, *name.split("/"))
        # `save_pretrained` (re-sharding) rewrites the config beside the weights; both are checked as they are now.
        is_weights = _WEIGHT_NAME_RE.match(name) is not None or name in _MODEL_CONFIG_FILES
        if not os.path.isfile(full):
            weights_changed |= is_weights
            if not is_weights:
                problems.append(f"{name} is missing")
            continue
        actual = os.path.getsize(full)
        if actual != size:
            weights_changed |= is_weights
            if not is_weights:
                problems.append(f"{name} has {actual} bytes, {size} were written (truncated or overwritten)")
            continue
        problem = _file_problem(full)
        if problem:
            problems.append(f"{name} {problem}")
    if weights_changed:
        # The weights were re-sharded (or re-saved) after the marker was written: what resume needs is weights that
        # load, so the current files are verified through their index instead of by the marker's list of names.
        weight_problems = _weight_problems(path)
        if weight_problems:
            problems += [
                f"the weights changed after the checkpoint was marked complete, and {p}" for p in weight_problems
            ]
        else:
            logger.info(
                "The weights of %s were re-saved after it was marked complete; they load through their index", path
            )
    if TRAINER_STATE_NAME not in files:
        problems.append(f"{TRAINER_STATE_NAME} was not saved")
    elif not problems:
        saved_step = _trainer_state_step(os.path.join(path, TRAINER_STATE_NAME))
        if not isinstance(saved_step, int):
            problems.append(f"{TRAINER_STATE_NAME} {saved_step}")
        elif saved_step != step:
            problems.append(f"{TRAINER_STATE_NAME} is at step {saved_step} but {MARKER_NAME} at step {step}")
    if require_training_state and not content.get("training_state", False):
        problems.append(
            "it holds no optimizer, scheduler or RNG state (saved with save_only_model=True), so resuming would "
            "restart the optimizer and the learning-rate schedule; load its weights with from_pretrained to start "
            "a new run instead"
        )
    return problems


def _unmarked_problems(path: str) -> list[str]:
    problems = []
    names = set(os.listdir(path))
    state_dirs = [n for n in names if n.startswith(_STATE_DIR_PREFIXES) and os.path.isdir(os.path.join(path, n))]
    if TRAINER_STATE_NAME not in names:
        problems.append(f"{TRAINER_STATE_NAME} is missing (Trainer writes it last)")
    else:
        step = _trainer_state_step(os.path.join(path, TRAINER_STATE_NAME))
        if not isinstance(step, int):
            problems.append(f"{TRAINER_STATE_NAME} {step}")
    deepspeed = any(n.startswith("global_step") for n in state_dirs)
    if not names & set(_OPTIMIZER_FILES) and not state_dirs:
        problems.append(
            "optimizer.pt is missing, so resuming would silently restart the optimizer (a checkpoint saved with "
            "save_only_model=True cannot be resumed; load its weights with from_pretrained to start a new run)"
        )
    if _SCHEDULER_NAME not in names and not deepspeed:
        problems.append(f"{_SCHEDULER_NAME} is missing, so resuming would silently restart the learning-rate schedule")
    problems += _weight_problems(path, check_all_files=True)
    return problems


def _weight_problems(path: str, *, check_all_files: bool = False) -> list[str]:
    """Problems that would stop the model weights in `path` from loading: no weights, an unreadable index, a shard
    it names that is missing, or a file whose structure is broken. With `check_all_files`, every top-level file is
    checked structurally, not only the weights."""
    names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
    weights = [n for n in names if _WEIGHT_NAME_RE.match(n)]
    problems = []
    if not weights and not any(
        n.startswith(_STATE_DIR_PREFIXES) and os.path.isdir(os.path.join(path, n)) for n in os.listdir(path)
    ):
        return [f"no model weights ({', '.join(_WEIGHT_FILES[:2])}, ...) were found"]
    configs = [n for n in names if n in _MODEL_CONFIG_FILES]
    to_check = list(names if check_all_files else [*weights, *configs])
    for index_name in (n for n in weights if n.endswith(".index.json")):
        try:
            with open(os.path.join(path, index_name), encoding="utf-8") as handle:
                to_check += sorted(set(json.load(handle)["weight_map"].values()) - set(to_check))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{index_name} is unreadable ({exc})")
    for name in to_check:
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            problems.append(f"{name} is missing (named in the weights index)")
            continue
        problem = _file_problem(full)
        if problem:
            problems.append(f"{name} {problem}")
    return problems


def _trainer_state_step(path: str) -> int | str:
    """The `global_step` in a `trainer_state.json`, or a description of why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            step = json.load(handle)["global_step"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"is unreadable ({exc})"
    return step if isinstance(step, int) else f"has a non-integer global_step {step!r}"


def _file_problem(path: str) -> str | None:
    """A structural problem of a safetensors file, a `torch.save` archive or a JSON file, without reading tensors."""
    if path.endswith(".safetensors"):
        return _safetensors_problem(path)
    if path.endswith((".pt", ".pth", ".bin")):
        return _archive_problem(path)
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError) as exc:
            return f"is not valid JSON ({exc})"
    return None


def _safetensors_problem(path: str) -> str | None:
    # Layout: 8-byte little-endian header length, a JSON header with each tensor's byte range, then the data.
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"is truncated ({size} bytes, no safetensors header)"
            header_size = int.from_bytes(prefix, "little")
            if header_size > size - 8:
                return f"is truncated ({size} bytes, its header alone needs {header_size + 8})"
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"has an unreadable safetensors header ({exc})"
    expected = 8 + header_size + end
    if size != expected:
        return f"is truncated or corrupt ({size} bytes, its safetensors header describes {expected})"
    return None


def _archive_problem(path: str) -> str | None:
    # `torch.save` writes a zip archive whose directory sits at the end of the file: a truncated file loses it.
    # Files in the legacy (pre-zip) pickle format are not checked.
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != _ZIP_MAGIC:
            return None if magic else "is empty"
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"is truncated or corrupt ({exc})"
    return None


# ---- durable writes --------------------------------------------------------------------------------------------


def _write_durably(path: str, text: str) -> None:
    """Write `text` to a temporary file, flush it to disk, and rename it to `path`."""
    tmp = path + _TMP_SUFFIX
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_file(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise


def _fsync_dir(path: str) -> None:
    """Make renames and new entries in `path` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


# ---- the trainer hooks that use them -------------------------------------------------------------------------------

_BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def resume_argument(value: str | os.PathLike | bool | None) -> str | bool | None:
    """`resume_from_checkpoint` as `True` (the newest complete checkpoint), a path, or `None` (a new run).

    `--resume_from_checkpoint true` on the command line arrives as the string "true" (the field is a path in
    `TrainingArguments`); "true"/"false" (and 1/0, yes/no) mean the booleans, as `run_glue.py` users expect, unless a
    directory of that name exists.
    """
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS and not os.path.isdir(value):
        value = _BOOLEAN_WORDS[value.strip().lower()]
    if value is None or value is False or value == "":
        return None
    return True if value is True else os.fspath(value)


class NothingLeftToTrain(TrainerCallback):
    """Refuse, before the first step, a resume from a checkpoint at or past the run's last step.

    `Trainer` resumed from its final checkpoint with the same settings takes one step past `max_steps` (it checks the
    end only after a step), or none; either way a script then saves the student, its metrics and card over the
    finished run's with those of a run that did not train. Armed by `CheckpointHooks` for one `train()` call.
    """

    def __init__(self) -> None:
        self.checkpoint: str | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint, self.checkpoint = self.checkpoint, None
        if checkpoint is not None and state.max_steps > 0 and state.global_step >= state.max_steps:
            raise ValueError(
                f"{checkpoint} is at step {state.global_step} and this run ends at step {state.max_steps}: there is "
                "nothing left to train (nothing was written). To train further, raise --num_train_epochs or "
                "--max_steps; to start again, pass another --output_dir"
            )


class CheckpointHooks:
    """`Trainer` hooks that add the completeness marker, verified resume and rotation after the marker.

    Mixed into `DistillationTrainer` before `Trainer` (`class DistillationTrainer(CheckpointHooks, Trainer)`); its
    `train` passes its arguments through `_with_verified_checkpoint`.
    """

    def _with_verified_checkpoint(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """`train`'s arguments with `resume_from_checkpoint` replaced by a verified checkpoint directory.

        `resume_from_checkpoint=True` resumes from the newest checkpoint in `output_dir` that
        `hf_distill.checkpoints.verify_checkpoint` accepts, skipping (with a warning naming each) newer ones that are
        incomplete or corrupt, where `Trainer` would take the highest-numbered directory whatever it holds. An
        explicit path to an incomplete or corrupt checkpoint raises `ValueError`. Either way this runs before
        `Trainer.train` loads, trains or deletes anything.
        """
        in_kwargs = "resume_from_checkpoint" in kwargs
        resume = kwargs.get("resume_from_checkpoint") if in_kwargs else (args[0] if args else None)
        resume = resume_argument(resume)
        if resume is None:
            path = None
        elif resume is True:
            output_dir = self.args.output_dir
            path = latest_complete_checkpoint(output_dir, allow_unmarked=True)
            if path is None:
                raise ValueError(
                    f"No valid checkpoint found in output directory ({output_dir}): resume_from_checkpoint=True but "
                    "it holds no complete checkpoint to resume from (any "
                    "incomplete ones are named in the warnings above and were left in place); pass "
                    "resume_from_checkpoint=None to start a new run"
                )
            logger.info("Resuming from %s, the newest complete checkpoint in %s", path, output_dir)
        else:
            path = resume
        if path is not None:
            verify_checkpoint(path)
            guard = next((c for c in self.callback_handler.callbacks if isinstance(c, NothingLeftToTrain)), None)
            if guard is None:
                guard = NothingLeftToTrain()
                self.add_callback(guard)
            guard.checkpoint = path
        if in_kwargs:
            return args, {**kwargs, "resume_from_checkpoint": path}
        if not args:
            return args, kwargs
        return (path, *args[1:]), kwargs

    def _save_extra_state(self, output_dir: str) -> None:
        """Write what else a resume needs into the checkpoint, before it is marked complete (rank 0 only).

        Nothing by default; co-training saves the teacher here (`hf_distill.cotraining`).
        """

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """`Trainer._save_checkpoint`, bracketed by the completeness markers, with rotation moved after the marker.

        `Trainer` deletes old checkpoints (`save_total_limit`) at the end of `_save_checkpoint`, before a marker could
        be written: a crash in between would leave only a checkpoint that cannot be proven complete. Rotation is
        therefore switched off for the duration of the call (`args` is restored before anything else reads it) and
        done here once the marker is on disk. A save that raises (a full disk) propagates, leaves its directory marked
        in progress, and deletes nothing.
        """
        run_dir = self._get_output_dir(trial=trial)
        output_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            begin_checkpoint(output_dir)
        # No process writes into the directory (e.g. its `rng_state_<rank>.pth`) before it is marked in progress.
        self.accelerator.wait_for_everyone()
        save_total_limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        except BaseException:
            logger.error("Saving %s failed; it stays marked incomplete and will not be resumed from", output_dir)
            raise
        finally:
            self.args.save_total_limit = save_total_limit
        if self.args.should_save:
            # `Trainer` saved the arguments while the limit was switched off; the checkpoint keeps the real ones.
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
            self._save_extra_state(output_dir)
        # Other processes may still be writing their `rng_state_<rank>.pth` into the directory.
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_checkpoint_complete(
                output_dir, step=self.state.global_step, training_state=not self.args.save_only_model
            )
            rotate_checkpoints(run_dir, save_total_limit, keep=(output_dir, self.state.best_model_checkpoint))

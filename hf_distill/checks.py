"""Checks run before training starts, so that a bad teacher/student pairing fails with a clear message.

Each check raises `ValueError` naming the offending value and how to fix it. None of them modifies its arguments.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments
from transformers.utils import logging

from .checkpoints import checkpoint_dirs, latest_complete_checkpoint, resume_argument, verify_checkpoint
from .modeling import head_suffix, max_sequence_length

logger = logging.get_logger(__name__)

_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")
_CLASSIFICATION_HEADS = ("ForSequenceClassification", "ForTokenClassification")


def _text_config_value(model: PreTrainedModel, name: str) -> Any:
    config = getattr(model, "config", None)
    if config is None:  # a plain `nn.Module`: nothing to compare statically
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, name, None)


def has_custom_label_names(id2label: dict[int, str] | None) -> bool:
    """Whether a label mapping names its classes (`{0: "negative", ...}`) rather than using `LABEL_i` defaults."""
    return bool(id2label) and not all(_DEFAULT_LABEL.match(str(name)) for name in id2label.values())


def check_teacher_student(teacher: PreTrainedModel, student: PreTrainedModel, *, terms: Collection[str]) -> None:
    """Check that a teacher can distil into a student.

    Args:
        teacher (`PreTrainedModel`): The teacher.
        student (`PreTrainedModel`): The student (unwrapped).
        terms (`Collection[str]`): The active loss terms by name (`"kd"`, `"cos"`, ...); `"cos"` needs equal hidden
            sizes.

    Models without a `config` (plain `nn.Module`s, which `Trainer` trains too) are compared on what they have:
    identity, shared weights and the head; their vocabulary, labels and hidden sizes are checked on the first batch
    by the loss functions instead (shape mismatches raise there, before the first optimizer step).

    Raises:
        ValueError: If the two are the same model or share weights, have different heads, vocabularies, label counts
            or label names, or different hidden sizes while the `"cos"` term is active.
    """
    if teacher is student:
        raise ValueError(
            "teacher_model is the student itself; pass a separate teacher, e.g. the fine-tuned model you started "
            "from, and build the student with hf_distill.make_student(teacher)"
        )
    student_storage = {p.untyped_storage().data_ptr() for p in student.parameters()}
    shared = [name for name, p in teacher.named_parameters() if p.untyped_storage().data_ptr() in student_storage]
    if shared:
        raise ValueError(
            f"teacher and student share weights ({shared[0]} and {len(shared) - 1} more); training the student would "
            "change the teacher. Build the student with hf_distill.make_student(teacher), which copies the weights"
        )

    teacher_head, student_head = head_suffix(teacher), head_suffix(student)
    # A plain `nn.Module` names no head: its outputs are matched by shape on the first batch instead.
    if teacher_head and student_head and teacher_head != student_head:
        raise ValueError(
            f"the teacher is a {type(teacher).__name__} but the student is a {type(student).__name__}; their outputs "
            f"cannot be matched. Load the teacher with the student's head ({student_head}), for example "
            f"{'AutoModel' if student_head == 'Model' else 'AutoModel' + student_head}.from_pretrained(...)"
        )

    teacher_vocab, student_vocab = _text_config_value(teacher, "vocab_size"), _text_config_value(student, "vocab_size")
    if teacher_vocab is not None and student_vocab is not None and teacher_vocab != student_vocab:
        raise ValueError(
            f"teacher vocab_size {teacher_vocab} differs from student vocab_size {student_vocab}: the two do not "
            "share a tokenizer, so the same input ids mean different tokens. Use a student built from the teacher "
            "(hf_distill.make_student) or one with the teacher's tokenizer"
        )

    both_configured = getattr(teacher, "config", None) is not None and getattr(student, "config", None) is not None
    if student_head in _CLASSIFICATION_HEADS and both_configured:
        if teacher.config.num_labels != student.config.num_labels:
            raise ValueError(
                f"teacher num_labels {teacher.config.num_labels} differs from student num_labels "
                f"{student.config.num_labels}; load the student with num_labels={teacher.config.num_labels} "
                "(and the teacher's id2label)"
            )
        teacher_labels, student_labels = teacher.config.id2label, student.config.id2label
        if has_custom_label_names(teacher_labels) and has_custom_label_names(student_labels):
            if {int(k): v for k, v in teacher_labels.items()} != {int(k): v for k, v in student_labels.items()}:
                raise ValueError(
                    f"teacher id2label {teacher_labels} differs from student id2label {student_labels}; the soft "
                    "targets would teach class i of the teacher as class i of the student. Give the student the "
                    "teacher's id2label/label2id"
                )

    if "cos" in terms:
        teacher_hidden, student_hidden = (
            _text_config_value(teacher, "hidden_size"),
            _text_config_value(student, "hidden_size"),
        )
        if teacher_hidden is not None and student_hidden is not None and teacher_hidden != student_hidden:
            raise ValueError(
                f"alpha_cos > 0 needs equal hidden sizes, but the teacher has hidden_size {teacher_hidden} and the "
                f"student {student_hidden}; set alpha_cos=0, or use a student with hidden_size {teacher_hidden}"
            )


def check_student_terms(student: Any, *, terms: Collection[str], args: Any = None) -> None:
    """Refuse loss terms and settings the student cannot take part in, before any teacher is loaded or run.

    A student whose class sets `supports_hidden_state_distillation = False` (the BiLSTM and TextCNN students of
    `hf_distill.models`) has no hidden states comparable to a transformer's, so `L_cos` is refused for it; and
    `gradient_checkpointing` is refused for a model that does not support it (`Trainer` says so only in `train()`).

    Raises:
        ValueError: If `"cos"` is active for such a student, or `args.gradient_checkpointing` for one that cannot.
    """
    if (
        getattr(args, "gradient_checkpointing", False)
        and isinstance(student, PreTrainedModel)
        and not student.supports_gradient_checkpointing
    ):
        raise ValueError(
            f"gradient_checkpointing=True, but {type(student).__name__} does not support activation checkpointing; "
            "drop --gradient_checkpointing (a small student rarely needs it)"
        )
    if "cos" in terms and not getattr(student, "supports_hidden_state_distillation", True):
        raise ValueError(
            f"alpha_cos > 0 compares the student's last hidden states with the teacher's, but "
            f"{type(student).__name__} has no hidden states comparable to a transformer's; set alpha_cos=0 "
            "(--alpha_cos 0) and distil its logits with alpha_kd and/or alpha_mse"
        )


def check_dataset_has_labels(dataset: Any, label_names: Iterable[str], data_collator: Any) -> None:
    """Check that a training set carries labels when the task loss is on.

    Only datasets that list their columns (`datasets.Dataset`) are checked here, and collators that create labels
    themselves (masked-LM collators, which have an `mlm` attribute) are trusted. Other cases are checked on the first
    batch by the trainer, still before any optimizer step.

    Raises:
        ValueError: If no label column is present.
    """
    columns = getattr(dataset, "column_names", None)
    if columns is None or hasattr(data_collator, "mlm"):
        return
    accepted = set(label_names) | {"label", "label_ids", "labels"}
    if not accepted & set(columns):
        raise ValueError(
            f"alpha_task > 0 but the training dataset has no label column (columns: {columns}); add a "
            f"'label' column, or set alpha_task=0 to distil from the teacher alone"
        )


def check_dataset_not_empty(dataset: Any) -> None:
    """Raise `ValueError` for a training set without rows, which `Trainer` would only report deep in its loop."""
    try:
        size = len(dataset)
    except TypeError:  # an iterable dataset has no length to check
        return
    if size == 0:
        raise ValueError(
            "the training dataset is empty (0 rows); check the data files, filters and --max_train_samples"
        )


def check_output_dir(output_dir: str | os.PathLike | None) -> None:
    """Raise `ValueError` when checkpoints could not be written to `output_dir`: it is a file, or an existing
    directory (or the nearest existing parent) without write permission. Nothing is created here."""
    if output_dir is None:
        return
    path = os.path.abspath(os.fspath(output_dir))
    if os.path.isfile(path):
        raise ValueError(f"output_dir {path!r} is a file, not a directory; pass a directory path for the checkpoints")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"output_dir {path!r} cannot be written ({existing!r} is not writable); choose a writable directory"
        )


def check_same_tokenization(teacher_tokenizer: Any, student_tokenizer: Any, texts: list[str]) -> None:
    """Raise `ValueError` when teacher and student tokenizers turn the same text into different ids.

    Both models then read one `input_ids` tensor; if the tokenizers differ, the teacher sees other tokens than the
    student was fed, and its soft targets describe another input.

    Args:
        teacher_tokenizer: The teacher's tokenizer.
        student_tokenizer: The student's tokenizer.
        texts (`list[str]`): Sample texts, e.g. the first rows of the training set.
    """
    for text in texts:
        teacher_ids = teacher_tokenizer(text)["input_ids"]
        student_ids = student_tokenizer(text)["input_ids"]
        if teacher_ids != student_ids:
            raise ValueError(
                f"teacher and student tokenize {text[:60]!r} differently ({teacher_ids[:8]}... vs "
                f"{student_ids[:8]}...); distillation feeds both the same input ids, so use a student that shares "
                "the teacher's tokenizer (hf_distill.make_student keeps it)"
            )


def check_label_order(id2label: dict[int, str] | None, label_names: list[str] | tuple[str, ...]) -> None:
    """Raise `ValueError` when a model's named classes are ordered differently from the dataset's labels.

    A teacher fine-tuned with `{0: "positive", 1: "negative"}` on a dataset whose label 0 means "negative" predicts
    the opposite class for every example; its soft targets then teach the student the wrong answers. Generic names
    (`LABEL_0`, ...) carry no order and pass.
    """
    if not has_custom_label_names(id2label) or not label_names:
        return
    model_names = [str(id2label[i]).lower() for i in sorted(int(k) for k in id2label)]
    data_names = [str(name).lower() for name in label_names]
    if sorted(model_names) == sorted(data_names) and model_names != data_names:
        raise ValueError(
            f"the model's labels {model_names} are in another order than the dataset's {data_names}; class id i "
            "would mean different things. Re-map the dataset labels with the model's label2id, or fine-tune the "
            "teacher with the dataset's label order"
        )


def check_max_seq_length(max_seq_length: int, tokenizer: PreTrainedTokenizerBase, *models: PreTrainedModel) -> None:
    """Raise `ValueError` when `--max_seq_length` exceeds what the tokenizer or any of the models can take.

    The tokenizer's `model_max_length` is often unset (a huge sentinel), so each model's own position limit
    (`hf_distill.modeling.max_sequence_length`) is checked too: a longer input fails in the teacher's forward in the
    middle of training, or in the latency step after it, with nothing saved.
    """
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit is not None and tokenizer_limit < 1e9:
        limits.append((int(tokenizer_limit), "the tokenizer's model_max_length"))
    for model in models:
        limit = max_sequence_length(model.config)
        if limit is not None:
            limits.append((limit, f"{type(model).__name__}'s position limit"))
    if max_seq_length < 1:
        raise ValueError(f"--max_seq_length must be a positive number of tokens, got {max_seq_length}")
    for limit, what in limits:
        if max_seq_length > limit:
            raise ValueError(
                f"--max_seq_length {max_seq_length} exceeds {what} ({limit} tokens); pass --max_seq_length "
                f"{min(128, limit)} (or at most {limit})"
            )


def check_push_arguments(args: TrainingArguments) -> None:
    """Raise `ValueError` for `--push_to_hub` without `--hub_model_id`, before hours of training are spent: the
    repository name would otherwise be guessed from the output directory."""
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id <user or org>/<model name>, e.g. me/minilm-l3-sst2")


def warn_if_cpu_launch_is_single_process(args: TrainingArguments) -> bool:
    """Warn when a multi-process CPU launch does not give one distributed run.

    - `accelerate launch --cpu --num_processes N` (N > 1) starts ONE process: accelerate's `--cpu` flag uses its
      simple launcher unless `--mpirun_hostfile` is given, though it still sets `MASTER_ADDR`.
    - `accelerate launch --multi_gpu --num_processes N` on a machine without GPUs starts N processes, but without
      `--use_cpu true` each of them trains alone (world size 1): N independent runs writing the same output dir.

    Returns whether a warning was given.
    """
    launched_for_many = "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ
    if launched_for_many and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        logger.warning(
            "accelerate launch --cpu with --num_processes > 1 started ONE process (accelerate uses its simple "
            "launcher for --cpu). For several CPU processes use: accelerate launch --multi_gpu --num_processes N "
            "... --use_cpu true"
        )
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.world_size == 1:
        logger.warning(
            "%s processes were launched but each trains alone (world size 1); on a machine without GPUs pass "
            "--use_cpu true so that they form one distributed run",
            os.environ["WORLD_SIZE"],
        )
        return True
    return False


def check_run_flags(
    args: TrainingArguments,
    *,
    test_file: str | None = None,
    teacher_finetune_epochs: float = 0.0,
    teacher_learning_rate: float | None = None,
) -> None:
    """Raise `ValueError` for `run_glue.py` flags that this recipe would otherwise ignore.

    The recipe always distils the student and evaluates it (the report and the card need both), so `--do_train` and
    `--do_eval` are accepted as what it does; `--do_eval` or `--do_predict` without `--do_train` asks `run_glue.py`
    for a run without training, which it has no mode for. `--do_predict --do_train` is honoured
    (`predict_test_splits`); `--test_file` needs `--do_predict`.
    """
    explicit_eval = args.do_eval and args.eval_strategy == "no"  # `eval_strategy` alone also sets do_eval
    for flag, given in (("--do_eval", explicit_eval), ("--do_predict", args.do_predict)):
        if given and not args.do_train:
            raise ValueError(
                f"{flag} without --do_train asks `run_glue.py` for a run without training, but this recipe always "
                f"distils a student and then evaluates it; add --do_train (or drop {flag}), or use a saved student "
                "with Trainer.evaluate / Trainer.predict"
            )
    if test_file is not None and not args.do_predict:
        raise ValueError(f"--test_file {test_file} is only read for predictions; add --do_predict")
    if not math.isfinite(teacher_finetune_epochs) or teacher_finetune_epochs < 0:
        raise ValueError(
            f"--teacher_finetune_epochs must be >= 0 (0 uses the teacher as given), got {teacher_finetune_epochs}"
        )
    if teacher_learning_rate is not None and not (math.isfinite(teacher_learning_rate) and teacher_learning_rate > 0):
        raise ValueError(f"--teacher_learning_rate must be a positive number, got {teacher_learning_rate}")


def plan_resume(output_dir: str | Path, resume_from_checkpoint: str | bool | None) -> str | bool | None:
    """What a run into `output_dir` resumes from, decided before any work; never a silent restart over a run.

    - `--resume_from_checkpoint` given: it is used as given (the trainer verifies it).
    - `output_dir` holds a finished run (`results.json`, or a saved student): `ValueError` with the fixes, since
      starting again would replace the student, its checkpoints, `results.json` and the card (transformers 5
      removed `--overwrite_output_dir`).
    - `output_dir` holds checkpoints of an interrupted run: the newest complete one, as `run_glue.py` does, logged.
    - Otherwise `None`: a new run.
    """
    output_dir = Path(output_dir)
    resume = resume_argument(resume_from_checkpoint)
    if resume is True and latest_complete_checkpoint(output_dir, allow_unmarked=True) is None:
        raise ValueError(
            f"--resume_from_checkpoint true but {output_dir} holds no complete checkpoint to resume from; drop "
            "the flag to start a new run, or pass the --output_dir of the run to continue"
        )
    if resume is not None:
        if resume is not True:
            verify_checkpoint(resume)  # a bad path fails now, not after the teacher stage
        return resume
    if not output_dir.is_dir():
        return None
    finished = [
        name for name in ("results.json", "model.safetensors", "pytorch_model.bin") if (output_dir / name).exists()
    ]
    if finished:
        raise ValueError(
            f"--output_dir {output_dir} already holds a finished run ({', '.join(finished)}); a new run would replace "
            "its student, checkpoints, results.json and card. Pass another --output_dir, pass "
            "--resume_from_checkpoint true with a larger --num_train_epochs or --max_steps to train it further from "
            "its newest checkpoint, or delete the directory to start again (nothing was changed)"
        )
    checkpoint = latest_complete_checkpoint(output_dir, allow_unmarked=True)
    if checkpoint is None and checkpoint_dirs(output_dir):
        raise ValueError(
            f"--output_dir {output_dir} holds checkpoints of an earlier run that cannot be resumed (named in the "
            "warnings above: incomplete, or saved with --save_only_model); a new run would write over them. Pass "
            "another --output_dir, or delete them to start again (nothing was changed)"
        )
    if checkpoint is not None:
        logger.warning(
            "Resuming from %s, the newest complete checkpoint of the interrupted run in %s. To start from scratch, "
            "pass another --output_dir or delete that one.",
            checkpoint,
            output_dir,
        )
        return checkpoint
    return None


STUDENT_TYPES: tuple[str, ...] = ("transformer", "bilstm", "textcnn")


def check_student_flags(
    student_type: str,
    *,
    student_path: str | None,
    layers: list[int] | None,
    num_layers: int | None,
    config_overrides: dict[str, Any],
    embedding_init: str,
    terms: Collection[str],
    alpha_cos_given: bool,
) -> None:
    """Raise `ValueError` for student flags of the recipes that contradict `--student_type` or each other.

    `--student_layers`, `--student_num_layers` and `--student_model_name_or_path` choose a transformer student (the
    first two build it from the teacher, so they do not go with the third);
    `--student_config_overrides` and `--student_embedding_init` shape a tiny one (BiLSTM, TextCNN), which has no
    hidden states for `L_cos`: an explicit `--alpha_cos` > 0 is refused for it (the default is then 0).
    """
    if student_type not in STUDENT_TYPES:
        raise ValueError(f"--student_type must be one of {', '.join(STUDENT_TYPES)}, got {student_type!r}")
    if student_type == "transformer":
        if student_path and (layers is not None or num_layers is not None):
            raise ValueError(
                "--student_layers/--student_num_layers build the student from teacher layers, but "
                f"--student_model_name_or_path {student_path} gives a ready one; drop one of them"
            )
        given = [flag for flag, value in (("--student_config_overrides", config_overrides),) if value]
        if embedding_init != "teacher":
            given.append("--student_embedding_init")
        if given:
            raise ValueError(
                f"{' and '.join(given)} shape a tiny student, but --student_type is transformer; pass "
                "--student_type bilstm or textcnn, or drop them"
            )
        return
    given = [
        flag
        for flag, value in (
            ("--student_model_name_or_path", student_path),
            ("--student_layers", layers),
            ("--student_num_layers", num_layers),
        )
        if value
    ]
    if given:
        raise ValueError(
            f"{' and '.join(given)} choose a transformer student, but --student_type is {student_type}; drop them, "
            "or pass --student_type transformer"
        )
    if alpha_cos_given and "cos" in terms:
        raise ValueError(
            f"--alpha_cos > 0 compares hidden states, which a {student_type} student does not have; pass --alpha_cos 0"
            " (the default for tiny students)"
        )


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """`"hidden_size=300,pooling=last,kernel_sizes=[2,3,4]"` as a dict, each value read as JSON where it parses
    (numbers, booleans, lists) and as a string otherwise. The format of `run_mlm.py`'s `--config_overrides`.

    Raises:
        ValueError: For an entry without `=` or with an empty name.
    """
    if not text:
        return {}
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    entries.append(current)
    overrides: dict[str, Any] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"--student_config_overrides entry {entry!r} is not name=value; write e.g. hidden_size=300,pooling=max"
            )
        try:
            overrides[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name.strip()] = value.strip()
    return overrides


def check_augment_flags(
    n_iter: int, *, regression: bool, terms: Collection[str], teacher_route: bool, cotrain_teacher: bool
) -> None:
    """Raise `ValueError` for `--augment` settings the recipe cannot honour.

    The transfer set is labelled once by the final teacher (`cache_teacher_outputs`), so a route of checkpoints or a
    co-trained teacher, which change during training, cannot label it; and regression labels have no "no label"
    value for the variants, so their task loss must be off.
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"--augment must be a number of variants per example >= 0 (0: off), got {n_iter!r}")
    if n_iter == 0:
        return
    for flag, given in (("--teacher_route", teacher_route), ("--cotrain_teacher", cotrain_teacher)):
        if given:
            raise ValueError(
                f"--augment labels the transfer set once with the final teacher, but {flag} changes the teacher "
                f"during training; drop {flag} or --augment"
            )
    if regression and "task" in terms:
        raise ValueError(
            "--augment on a regression task: the variants have no gold score, and a float label has no 'no label' "
            "value that the task loss skips; pass --alpha_task 0 to distil on the transfer set from the teacher alone"
        )

"""Checks run before training starts, so that a bad teacher/student pairing fails with a clear message.

Each check raises `ValueError` naming the offending value and how to fix it. None of them modifies its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedModel

from .modeling import head_suffix

_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")
_CLASSIFICATION_HEADS = ("ForSequenceClassification", "ForTokenClassification")


def _text_config_value(model: PreTrainedModel, name: str) -> Any:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text_config, name, None)


def _has_custom_names(id2label: dict[int, str] | None) -> bool:
    return bool(id2label) and not all(_DEFAULT_LABEL.match(str(name)) for name in id2label.values())


def check_teacher_student(teacher: PreTrainedModel, student: PreTrainedModel, *, use_hidden_states: bool) -> None:
    """Check that a teacher can distil into a student.

    Args:
        teacher (`PreTrainedModel`): The teacher.
        student (`PreTrainedModel`): The student (unwrapped).
        use_hidden_states (`bool`): Whether a hidden-state loss (cosine) is active, which needs equal hidden sizes.

    Raises:
        ValueError: If the two are the same model or share weights, have different heads, vocabularies, label counts
            or label names, or different hidden sizes while `use_hidden_states` is set.
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
    if teacher_head != student_head:
        raise ValueError(
            f"the teacher is a {type(teacher).__name__} but the student is a {type(student).__name__}; their outputs "
            f"cannot be matched. Load the teacher with the student's head ({student_head}), for example "
            f"AutoModel{student_head}.from_pretrained(...)"
        )

    teacher_vocab, student_vocab = _text_config_value(teacher, "vocab_size"), _text_config_value(student, "vocab_size")
    if teacher_vocab is not None and student_vocab is not None and teacher_vocab != student_vocab:
        raise ValueError(
            f"teacher vocab_size {teacher_vocab} differs from student vocab_size {student_vocab}: the two do not "
            "share a tokenizer, so the same input ids mean different tokens. Use a student built from the teacher "
            "(hf_distill.make_student) or one with the teacher's tokenizer"
        )

    if student_head in _CLASSIFICATION_HEADS:
        if teacher.config.num_labels != student.config.num_labels:
            raise ValueError(
                f"teacher num_labels {teacher.config.num_labels} differs from student num_labels "
                f"{student.config.num_labels}; load the student with num_labels={teacher.config.num_labels} "
                "(and the teacher's id2label)"
            )
        teacher_labels, student_labels = teacher.config.id2label, student.config.id2label
        if _has_custom_names(teacher_labels) and _has_custom_names(student_labels):
            if {int(k): v for k, v in teacher_labels.items()} != {int(k): v for k, v in student_labels.items()}:
                raise ValueError(
                    f"teacher id2label {teacher_labels} differs from student id2label {student_labels}; the soft "
                    "targets would teach class i of the teacher as class i of the student. Give the student the "
                    "teacher's id2label/label2id"
                )

    if use_hidden_states:
        teacher_hidden, student_hidden = (
            _text_config_value(teacher, "hidden_size"),
            _text_config_value(student, "hidden_size"),
        )
        if teacher_hidden != student_hidden:
            raise ValueError(
                f"alpha_cos > 0 needs equal hidden sizes, but the teacher has hidden_size {teacher_hidden} and the "
                f"student {student_hidden}; set alpha_cos=0, or use a student with hidden_size {teacher_hidden}"
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

"""`make_tiny_student`: a BiLSTM or TextCNN student that reads the teacher's tokenizer, built from the teacher.

The student takes the teacher's vocabulary, padding id, label count, label names and `problem_type`, so that it reads
the same `input_ids` and its logits line up with the teacher's. Its token embeddings can start from the teacher's
input embeddings: kept as they are, or projected down to a smaller `embedding_dim` on their principal components.
Tang et al. (2019) start from word2vec vectors; a word-level table does not fit a word-piece tokenizer, while the
teacher's own table does, piece for piece.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from ..modeling import head_suffix, load_model
from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from .textcnn import TextCNNConfig, TextCNNForSequenceClassification

logger = logging.get_logger(__name__)

#: The tiny students by `student_type` (the recipe's `--student_type`), with their config and model classes.
TINY_STUDENTS: dict[str, tuple[type, type]] = {
    "bilstm": (BiLSTMConfig, BiLSTMForSequenceClassification),
    "textcnn": (TextCNNConfig, TextCNNForSequenceClassification),
}
EMBEDDING_INITS = ("teacher", "random")
# Configuration entries taken from the teacher, which config_overrides may not change.
_FROM_TEACHER = ("vocab_size", "pad_token_id", "num_labels", "id2label", "label2id", "problem_type")


def check_config_overrides(student_type: str, overrides: dict[str, Any]) -> None:
    """Raise `ValueError` for an override that names no field of the student's config (a typo would otherwise be
    stored silently and change nothing) or one that comes from the teacher."""
    if student_type not in TINY_STUDENTS:
        raise ValueError(f"student_type must be one of {sorted(TINY_STUDENTS)}, got {student_type!r}")
    config_class = TINY_STUDENTS[student_type][0]
    own = {field.name for field in dataclasses.fields(config_class)} - {"transformers_version", "architectures"}
    fixed = sorted(set(overrides) & set(_FROM_TEACHER))
    if fixed:
        raise ValueError(
            f"{fixed} come from the teacher (the student reads the teacher's tokenizer and matches its labels); "
            "remove them from the overrides"
        )
    unknown = sorted(set(overrides) - own)
    if unknown:
        fields = sorted(name for name in config_class.__annotations__ if name not in _FROM_TEACHER)
        raise ValueError(f"{config_class.__name__} has no field {unknown}; its own fields are {fields}")


def project_embeddings(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The rows of an embedding matrix on its `dim` leading principal components (PCA), in fp32.

    Args:
        weight (`torch.Tensor` of shape `(vocab_size, teacher_dim)`): The teacher's input embeddings.
        dim (`int`): The student's embedding size, at most `teacher_dim`.

    Returns:
        `torch.Tensor` of shape `(vocab_size, dim)`: Centred rows projected on the top `dim` right singular vectors,
        which keeps as much of the rows' variance (their distances to one another) as any `dim`-dimensional linear map.
    """
    centred = weight.float() - weight.float().mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:dim].T


def make_tiny_student(
    teacher: PreTrainedModel | str | os.PathLike,
    student_type: Literal["bilstm", "textcnn"],
    *,
    embedding_init: Literal["teacher", "random"] = "teacher",
    **config_overrides: Any,
) -> PreTrainedModel:
    """Build a BiLSTM or TextCNN sequence classifier to distil `teacher` into.

    ```python
    student = make_tiny_student(teacher, "bilstm")  # teacher's vocabulary, labels and input embeddings
    student = make_tiny_student(teacher, "textcnn", embedding_dim=128, num_filters=200)  # embeddings PCA-projected
    ```

    Args:
        teacher (`PreTrainedModel`, `str` or `os.PathLike`): A sequence-classification teacher, or its Hub id or path.
        student_type (`str`): `"bilstm"` ([`BiLSTMForSequenceClassification`]) or `"textcnn"`
            ([`TextCNNForSequenceClassification`]).
        embedding_init (`str`, *optional*, defaults to `"teacher"`): `"teacher"` copies the teacher's input
            embeddings (at the teacher's size, or projected down when `embedding_dim` is smaller); `"random"` starts
            from a random table (`embedding_dim` 300 unless given).
        **config_overrides: Any field of the student's config (`hidden_size`, `pooling`, `kernel_sizes`,
            `num_filters`, `mlp_hidden_size`, `dropout`, `embedding_dim`, ...).

    Returns:
        `PreTrainedModel`: The student, in train mode, in fp32 on the CPU. `student.config.distillation` records the
        teacher, the student type and the embedding start.

    Raises:
        ValueError: For an unknown `student_type` or `embedding_init`, a teacher that is not a sequence classifier,
            an `embedding_dim` larger than the teacher's with `embedding_init="teacher"`, an override that names no
            config field or one that must come from the teacher (vocabulary, labels), or an invalid config value.
            All before anything is built.
    """
    check_config_overrides(student_type, config_overrides)
    if embedding_init not in EMBEDDING_INITS:
        raise ValueError(f"embedding_init must be one of {EMBEDDING_INITS}, got {embedding_init!r}")
    name_or_path = None
    if isinstance(teacher, (str, os.PathLike)):
        name_or_path = os.fspath(teacher)
        teacher = load_model(name_or_path)
    if not isinstance(teacher, PreTrainedModel):
        raise TypeError(f"teacher must be a PreTrainedModel or a model name or path, got {type(teacher).__name__}")
    if head_suffix(teacher) != "ForSequenceClassification":
        raise ValueError(
            f"the tiny students are sequence classifiers, but the teacher is a {type(teacher).__name__}; load the "
            "teacher with AutoModelForSequenceClassification, or use make_student for other heads"
        )
    text_config = teacher.config.get_text_config()
    teacher_embeddings = teacher.get_input_embeddings().weight.detach()
    teacher_dim = teacher_embeddings.shape[1]
    config_class, model_class = TINY_STUDENTS[student_type]
    if embedding_init == "teacher":
        dim = config_overrides.setdefault("embedding_dim", teacher_dim)
        if isinstance(dim, int) and not isinstance(dim, bool) and dim > teacher_dim:
            raise ValueError(
                f"embedding_dim={dim} is larger than the teacher's embeddings ({teacher_dim}), which "
                f"embedding_init='teacher' copies; use embedding_dim <= {teacher_dim}, or embedding_init='random'"
            )
        vocab = teacher_embeddings.shape[0]
        if isinstance(dim, int) and not isinstance(dim, bool) and teacher_dim > dim > vocab:
            raise ValueError(
                f"embedding_dim={dim} needs {dim} principal components of the teacher's embeddings, but its "
                f"{vocab}-token vocabulary gives at most {vocab}; use embedding_dim <= {vocab} or {teacher_dim}"
            )
    config = config_class(
        vocab_size=teacher_embeddings.shape[0],
        pad_token_id=getattr(text_config, "pad_token_id", None),
        num_labels=teacher.config.num_labels,
        id2label=dict(teacher.config.id2label),
        label2id=dict(teacher.config.label2id),
        problem_type=teacher.config.problem_type,
        **config_overrides,
    )
    config.distillation = {
        "teacher": name_or_path or getattr(teacher, "name_or_path", None) or None,
        "student_type": student_type,
        "embedding_init": embedding_init,
    }
    student = model_class(config)
    if embedding_init == "teacher":
        table = teacher_embeddings.float()
        if config.embedding_dim < teacher_dim:
            table = project_embeddings(table, config.embedding_dim)
            logger.info(
                "Teacher embeddings projected from %d to %d dimensions (PCA)", teacher_dim, config.embedding_dim
            )
        weight = student.get_input_embeddings().weight
        with torch.no_grad():
            weight.copy_(table.to(weight.device))
            if config.pad_token_id is not None and 0 <= config.pad_token_id < weight.shape[0]:
                weight[config.pad_token_id].zero_()  # as a fresh `nn.Embedding(padding_idx=...)` has it
    student.train()
    return student

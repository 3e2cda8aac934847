"""hf_distill: knowledge distillation for BERT-family models as a drop-in Hugging Face `Trainer`."""

from .arguments import DistillationTrainingArguments
from .checkpoints import is_complete_checkpoint, latest_complete_checkpoint, verify_checkpoint
from .losses import binary_kd_loss, cosine_loss, kd_loss, mse_loss
from .models import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    TextCNNConfig,
    TextCNNForSequenceClassification,
    make_tiny_student,
)
from .processes import end_processes_together
from .student import make_student
from .teacher_cache import cache_teacher_outputs
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "TextCNNConfig",
    "TextCNNForSequenceClassification",
    "binary_kd_loss",
    "cache_teacher_outputs",
    "cosine_loss",
    "end_processes_together",
    "is_complete_checkpoint",
    "kd_loss",
    "latest_complete_checkpoint",
    "make_student",
    "make_tiny_student",
    "mse_loss",
    "verify_checkpoint",
]

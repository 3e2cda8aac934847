"""hf_distill: knowledge distillation for BERT-family models as a drop-in Hugging Face `Trainer`."""

from .arguments import DistillationTrainingArguments
from .losses import binary_kd_loss, cosine_loss, kd_loss, mse_loss
from .student import make_student
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "binary_kd_loss",
    "cosine_loss",
    "kd_loss",
    "make_student",
    "mse_loss",
]

"""hf_distill: knowledge distillation for BERT-family models as a drop-in Hugging Face `Trainer`."""

from .arguments import DistillationTrainingArguments
from .checkpoints import is_complete_checkpoint, latest_complete_checkpoint, verify_checkpoint
from .head_pruning import head_importance, heads_to_prune, load_pruned, prune_heads
from .losses import binary_kd_loss, cosine_loss, kd_loss, mse_loss
from .masking import MaskedLMCollator, MaskingEpochCallback, mask_once
from .models import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    TextCNNConfig,
    TextCNNForSequenceClassification,
    make_tiny_student,
)
from .onnx_export import OnnxModel, export_onnx
from .perplexity import masked_lm_metrics
from .processes import end_processes_together
from .quantization import is_quantized, load_quantized, quantize, save_quantized
from .student import freeze_position_embeddings, make_student
from .teacher_cache import cache_teacher_outputs
from .text_corpus import load_text_corpus, tokenize_corpus
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "MaskedLMCollator",
    "MaskingEpochCallback",
    "OnnxModel",
    "TextCNNConfig",
    "TextCNNForSequenceClassification",
    "binary_kd_loss",
    "cache_teacher_outputs",
    "cosine_loss",
    "end_processes_together",
    "export_onnx",
    "freeze_position_embeddings",
    "head_importance",
    "heads_to_prune",
    "is_complete_checkpoint",
    "is_quantized",
    "kd_loss",
    "latest_complete_checkpoint",
    "load_pruned",
    "load_quantized",
    "load_text_corpus",
    "make_student",
    "make_tiny_student",
    "mask_once",
    "masked_lm_metrics",
    "mse_loss",
    "prune_heads",
    "quantize",
    "save_quantized",
    "tokenize_corpus",
    "verify_checkpoint",
]

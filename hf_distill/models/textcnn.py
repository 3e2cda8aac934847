"""A convolutional sentence classifier (Kim 2014), a common production student of BERT.

Kim. "Convolutional Neural Networks for Sentence Classification", EMNLP 2014 (https://arxiv.org/abs/1408.5882):
parallel 1-d convolutions of several widths over word embeddings, ReLU, max-over-time pooling, dropout, and a linear
layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig

from .sequence_classifier import TinySequenceClassifier, check_dropout, check_ints


class TextCNNConfig(PreTrainedConfig):
    r"""Configuration of [`TextCNNForSequenceClassification`].

    Args:
        vocab_size (`int`, *optional*, defaults to 30522):
            Size of the vocabulary: the teacher's, since the student reads the teacher's tokenizer.
        embedding_dim (`int`, *optional*, defaults to 300):
            Size of the token embeddings (`make_tiny_student` uses the teacher's).
        kernel_sizes (`list[int]`, *optional*, defaults to `[3, 4, 5]`):
            Widths of the convolutions, in tokens (Kim 2014).
        num_filters (`int`, *optional*, defaults to 100):
            Filters per width (Kim 2014).
        mlp_hidden_size (`int`, *optional*, defaults to 0):
            Units of a ReLU layer before the logits; 0 (Kim's design) for a single linear layer.
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout on the pooled features (Kim 2014).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the embeddings, convolutions and linear layers.
        pad_token_id (`int`, *optional*, defaults to 0):
            The tokenizer's padding id; its embedding stays zero.
    """

    model_type = "hf_distill_textcnn"

    vocab_size: int = 30522
    embedding_dim: int = 300
    kernel_sizes: list[int] | tuple[int, ...] = (3, 4, 5)
    num_filters: int = 100
    mlp_hidden_size: int = 0
    dropout: float = 0.5
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs) -> None:
        check_ints(self, "vocab_size", "embedding_dim", "num_filters")
        sizes = self.kernel_sizes
        if (
            not isinstance(sizes, (list, tuple))
            or not sizes
            or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in sizes)
        ):
            raise ValueError(
                f"TextCNNConfig.kernel_sizes must be a non-empty list of positive integers, got {sizes!r}"
            )
        self.kernel_sizes = list(sizes)
        check_ints(self, "mlp_hidden_size", minimum=0)
        check_dropout(self)
        super().__post_init__(**kwargs)


class TextCNNForSequenceClassification(TinySequenceClassifier):
    """Convolutions of several widths with max-over-time pooling, returning `SequenceClassifierOutput`.

    Each convolution is "wide": a sentence of `L` tokens, zero-padded by `k - 1` on both sides, gives `L + k - 1`
    windows, each touching at least one real token; windows over padding alone are excluded from the max. So the same
    sentence gives the same logits however far its batch is padded, and a sentence shorter than the widest kernel
    still has windows. Regression and multi-label heads follow transformers' conventions (`config.problem_type`).
    """

    config_class = TextCNNConfig

    def build_encoder(self, config: TextCNNConfig) -> nn.Module:
        return nn.ModuleList(nn.Conv1d(config.embedding_dim, config.num_filters, k) for k in config.kernel_sizes)

    @staticmethod
    def features_size(config: TextCNNConfig) -> int:
        return config.num_filters * len(config.kernel_sizes)

    def encode(self, embeddings: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        channels_first = embeddings.transpose(1, 2)  # (batch, dim, seq_len)
        pooled = []
        for conv in self.encoder:
            width = conv.kernel_size[0]
            windows = conv(F.pad(channels_first, (width - 1, width - 1)))  # (batch, filters, seq_len + width - 1)
            # Window t covers positions t - width + 1 .. t: it touches a real token while t < length + width - 1.
            valid = torch.arange(windows.shape[-1], device=windows.device).unsqueeze(0) < (
                lengths + width - 1
            ).unsqueeze(1)
            windows = windows.masked_fill(~valid.unsqueeze(1), torch.finfo(windows.dtype).min)
            pooled.append(F.relu(windows.max(dim=-1).values))  # max, then ReLU: the same as ReLU, then max
        return torch.cat(pooled, dim=-1)

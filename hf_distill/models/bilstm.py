"""A bidirectional LSTM sequence classifier, the student of Tang et al. (2019).

Tang, Lu, Liu, Mou, Vechtomova, Lin. "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"
(https://arxiv.org/abs/1903.12136): one bidirectional LSTM layer over word embeddings, its states pooled into one
vector, then a ReLU MLP. Trained on the teacher's logits over an augmented transfer set it closes much of the gap to
BERT at a small fraction of the cost (`hf_distill.augment`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedConfig

from .sequence_classifier import TinySequenceClassifier, check_dropout, check_ints

POOLINGS = ("max", "last")


class BiLSTMConfig(PreTrainedConfig):
    r"""Configuration of [`BiLSTMForSequenceClassification`].

    Args:
        vocab_size (`int`, *optional*, defaults to 30522):
            Size of the vocabulary: the teacher's, since the student reads the teacher's tokenizer.
        embedding_dim (`int`, *optional*, defaults to 300):
            Size of the token embeddings (word2vec's 300 in Tang et al.; `make_tiny_student` uses the teacher's).
        hidden_size (`int`, *optional*, defaults to 150):
            LSTM units per direction.
        num_layers (`int`, *optional*, defaults to 1):
            Stacked bidirectional LSTM layers.
        pooling (`str`, *optional*, defaults to `"max"`):
            `"max"`: max over time of the states at every real token; `"last"`: the forward direction's final state
            concatenated with the backward direction's (Tang et al.). Padding is excluded either way.
        mlp_hidden_size (`int`, *optional*, defaults to 200):
            Units of the ReLU layer between the pooled states and the logits; 0 for a single linear layer.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the pooled features and in the MLP (and between LSTM layers when `num_layers > 1`).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the embeddings and linear layers.
        pad_token_id (`int`, *optional*, defaults to 0):
            The tokenizer's padding id; its embedding stays zero.
    """

    model_type = "hf_distill_bilstm"

    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 150
    num_layers: int = 1
    pooling: str = "max"
    mlp_hidden_size: int = 200
    dropout: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs) -> None:
        check_ints(self, "vocab_size", "embedding_dim", "hidden_size", "num_layers")
        check_ints(self, "mlp_hidden_size", minimum=0)
        if self.pooling not in POOLINGS:
            raise ValueError(f"BiLSTMConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check_dropout(self)
        super().__post_init__(**kwargs)


class BiLSTMForSequenceClassification(TinySequenceClassifier):
    """A BiLSTM over token embeddings with a ReLU MLP head, returning `SequenceClassifierOutput`.

    Padding is never read: each row's real tokens are packed (`pack_padded_sequence`), so the same sentence gives the
    same logits in any batch, padded on either side. Regression (`num_labels == 1`) and multi-label heads follow
    transformers' conventions (`config.problem_type`).
    """

    config_class = BiLSTMConfig

    def build_encoder(self, config: BiLSTMConfig) -> nn.Module:
        return nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )

    @staticmethod
    def features_size(config: BiLSTMConfig) -> int:
        return 2 * config.hidden_size

    def encode(self, embeddings: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # `pack_padded_sequence` needs the lengths on the CPU: one device-to-host copy per batch on a GPU.
        packed = nn.utils.rnn.pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if embeddings.device.type == "cpu":
            # oneDNN has no reduced-precision LSTM for every batch shape (one where all rows have the same length
            # fails), so under CPU autocast (`--bf16`) the LSTM runs in its weights' dtype; GPUs keep cuDNN's.
            with torch.autocast("cpu", enabled=False):
                outputs, (final, _) = self.encoder(packed.to(self.encoder.weight_ih_l0.dtype))
        else:
            outputs, (final, _) = self.encoder(packed)
        if self.config.pooling == "last":
            # The last layer's forward state after the last real token and backward state after the first.
            return torch.cat([final[-2], final[-1]], dim=-1)
        states, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=embeddings.shape[1])
        states = states.masked_fill(~mask.unsqueeze(-1), torch.finfo(states.dtype).min)
        return states.max(dim=1).values

"""The parts shared by the tiny students: token embeddings, padding handling, the MLP head and the HF loss.

`BiLSTMForSequenceClassification` and `TextCNNForSequenceClassification` differ only in how they turn a sequence of
token embeddings into one feature vector (`encode`). Everything around that, embedding lookup, the classifier, the
loss computed the HF way from `config.problem_type`, lives here once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


def check_ints(config: PreTrainedConfig, *names: str, minimum: int = 1) -> None:
    """Raise `ValueError` naming the first of `names` whose value in `config` is not an integer >= `minimum`."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {minimum}, got {value!r}")


def check_dropout(config: PreTrainedConfig, name: str = "dropout") -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{type(config).__name__}.{name} must be a probability in [0, 1), got {value!r}")


def compact_tokens(
    embeddings: torch.Tensor, attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each row's real tokens to the front, in order, and zero every padding position.

    Right padding, left padding and padding in the middle then all look the same to the encoder, which is what makes
    the tiny students padding-invariant: a sentence gives the same logits however far (and on whichever side) its
    batch is padded.

    Args:
        embeddings (`torch.Tensor` of shape `(batch, seq_len, dim)`): Token embeddings.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 for real tokens.

    Returns:
        The compacted embeddings, the mask of real positions after compaction (`(batch, seq_len)`, bool), and the
        number of real tokens per row (at least 1: a row of padding alone is read as one zero vector rather than
        nothing, so that pooling stays finite).
    """
    batch, seq_len, _ = embeddings.shape
    if attention_mask is None:
        mask = torch.ones(batch, seq_len, dtype=torch.bool, device=embeddings.device)
    else:
        mask = attention_mask.to(embeddings.device).bool()
        # A stable sort on "is padding" keeps the real tokens in their order and puts them first.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        embeddings = torch.gather(embeddings, 1, order.unsqueeze(-1).expand_as(embeddings))
        mask = torch.gather(mask, 1, order)
    lengths = mask.sum(dim=1).clamp(min=1)
    positions = torch.arange(seq_len, device=embeddings.device).unsqueeze(0)
    mask = positions < lengths.unsqueeze(1)
    embeddings = embeddings * mask.unsqueeze(-1).to(embeddings.dtype)
    return embeddings, mask, lengths


class TinySequenceClassifier(PreTrainedModel):
    """Base of the tiny students: embeddings -> `encode` -> dropout -> ReLU MLP -> logits (-> loss).

    Subclasses build `self.encoder` in `build_encoder` and define `encode` and `features_size`. The config must have
    `vocab_size`, `embedding_dim`, `mlp_hidden_size` (0: a single linear layer), `dropout` and `pad_token_id`.

    The students have no hidden states comparable to a transformer's, so `DistillationTrainer` refuses `alpha_cos > 0`
    for them (`supports_hidden_state_distillation`); `L_kd` and `L_mse` distil their logits.
    """

    main_input_name = "input_ids"
    base_model_prefix = "encoder"
    supports_hidden_state_distillation = False

    def __init__(self, config: PreTrainedConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.encoder = self.build_encoder(config)
        self.dropout = nn.Dropout(config.dropout)
        features = self.features_size(config)
        if config.mlp_hidden_size:
            self.classifier = nn.Sequential(
                nn.Linear(features, config.mlp_hidden_size),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.mlp_hidden_size, config.num_labels),
            )
        else:
            self.classifier = nn.Sequential(nn.Linear(features, config.num_labels))
        self.post_init()

    def build_encoder(self, config: PreTrainedConfig) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def features_size(config: PreTrainedConfig) -> int:
        raise NotImplementedError

    def encode(self, embeddings: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One feature vector per row from compacted embeddings (see `compact_tokens`)."""
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): Token ids from the teacher's tokenizer.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 for real tokens, 0 for padding.
                Padding never changes the logits, on either side.
            token_type_ids (*optional*): Accepted so that a BERT tokenizer's output can be passed as it is (pipelines
                do); not used.
            labels (`torch.Tensor` of shape `(batch,)` or `(batch, num_labels)`, *optional*): As in transformers'
                sequence-classification heads: class indices (cross-entropy; `-100` marks a row without a label),
                floats for regression (`num_labels == 1`), or multi-hot floats for
                `problem_type="multi_label_classification"`.
            inputs_embeds (`torch.Tensor` of shape `(batch, seq_len, embedding_dim)`, *optional*): Instead of
                `input_ids`.
            return_dict (`bool`, *optional*): Return a `SequenceClassifierOutput` (default) or a tuple.
        """
        del token_type_ids  # a bag of tokens in order: sentence pairs are read through their [SEP] tokens
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        embeddings = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        embeddings, mask, lengths = compact_tokens(embeddings, attention_mask)
        features = self.dropout(self.encode(embeddings, mask, lengths))
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            # transformers' own sequence-classification loss: problem_type inferred as in BertForSequenceClassification
            # (regression for num_labels == 1, cross-entropy ignoring -100 for integer labels, BCE otherwise).
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits)

"""Distillation losses as pure functions.

Every function takes student and teacher tensors, computes in fp32 whatever the input dtype, and reduces over "items":
the leading dimensions that remain after the class (or hidden) dimension is consumed. An optional boolean `mask` over
those leading dimensions keeps only the items that count (label positions for masked LM, non-padding tokens for hidden
states). Three reductions are offered:

- `"mean"`: the average over the kept items (0 when none is kept, so an all-padding batch contributes nothing);
- `"sum"`: the sum over the kept items, which `DistillationTrainer` divides by the item count of the whole
  accumulated batch so that gradient accumulation is exact;
- `"none"`: one value per kept item, flattened.

Each formula is written once, here. The trainer only chooses inputs, masks and weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum", "none"]

CITATIONS: dict[str, str] = {
    "hinton2015": (
        "@article{hinton2015distilling,\n"
        "  title={Distilling the Knowledge in a Neural Network},\n"
        "  author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},\n"
        "  journal={arXiv preprint arXiv:1503.02531},\n"
        "  year={2015}\n"
        "}"
    ),
    "sanh2019": (
        "@article{sanh2019distilbert,\n"
        "  title={DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter},\n"
        "  author={Sanh, Victor and Debut, Lysandre and Chaumond, Julien and Wolf, Thomas},\n"
        "  journal={arXiv preprint arXiv:1910.01108},\n"
        "  year={2019}\n"
        "}"
    ),
    "michel2019": (
        "@inproceedings{michel2019sixteen,\n"
        "  title={Are Sixteen Heads Really Better than One?},\n"
        "  author={Michel, Paul and Levy, Omer and Neubig, Graham},\n"
        "  booktitle={Advances in Neural Information Processing Systems},\n"
        "  year={2019}\n"
        "}"
    ),
    "kim2014": (
        "@inproceedings{kim2014convolutional,\n"
        "  title={Convolutional Neural Networks for Sentence Classification},\n"
        "  author={Kim, Yoon},\n"
        "  booktitle={Proceedings of the 2014 Conference on Empirical Methods in Natural Language Processing},\n"
        "  year={2014}\n"
        "}"
    ),
    "romero2015": (
        "@inproceedings{romero2015fitnets,\n"
        "  title={FitNets: Hints for Thin Deep Nets},\n"
        "  author={Romero, Adriana and Ballas, Nicolas and Kahou, Samira Ebrahimi and Chassang, Antoine and Gatta, "
        "Carlo and Bengio, Yoshua},\n"
        "  booktitle={International Conference on Learning Representations},\n"
        "  year={2015}\n"
        "}"
    ),
    "jiao2020": (
        "@inproceedings{jiao2020tinybert,\n"
        "  title={TinyBERT: Distilling BERT for Natural Language Understanding},\n"
        "  author={Jiao, Xiaoqi and Yin, Yichun and Shang, Lifeng and Jiang, Xin and Chen, Xiao and Li, Linlin and "
        "Wang, Fang and Liu, Qun},\n"
        "  booktitle={Findings of the Association for Computational Linguistics: EMNLP 2020},\n"
        "  year={2020}\n"
        "}"
    ),
    "wang2021": (
        "@inproceedings{wang2021minilmv2,\n"
        "  title={MiniLMv2: Multi-Head Self-Attention Relation Distillation for Compressing Pretrained "
        "Transformers},\n"
        "  author={Wang, Wenhui and Bao, Hangbo and Huang, Shaohan and Dong, Li and Wei, Furu},\n"
        "  booktitle={Findings of the Association for Computational Linguistics: ACL-IJCNLP 2021},\n"
        "  year={2021}\n"
        "}"
    ),
    "tang2019": (
        "@article{tang2019distilling,\n"
        "  title={Distilling Task-Specific Knowledge from BERT into Simple Neural Networks},\n"
        "  author={Tang, Raphael and Lu, Yao and Liu, Linqing and Mou, Lili and Vechtomova, Olga and Lin, Jimmy},\n"
        "  journal={arXiv preprint arXiv:1903.12136},\n"
        "  year={2019}\n"
        "}"
    ),
}


@dataclass(frozen=True)
class LossTerm:
    """One term of the distillation loss, the single source of its names from flag to log to card.

    Attributes:
        name (`str`): The short name, e.g. `"cos"`: the key of `LOSS_TERMS` and of the trainer's loss parts.
        symbol (`str`): How the card and the docs write it, e.g. `"L_cos"`.
        description (`str`): One line for the card and the flag's help.
        default_weight (`float`): The weight's default (DistilBERT's 5 : 2 : 1 for kd, task, cos; mse off).
        paper (`str`, *optional*): The key of its paper in `CITATIONS`.
    """

    name: str
    symbol: str
    description: str
    default_weight: float
    paper: str | None = None

    @property
    def flag(self) -> str:
        """The argument that weights it: `alpha_<name>` (`--alpha_cos`)."""
        return f"alpha_{self.name}"

    @property
    def log_key(self) -> str:
        """Its key in the training logs: `loss_<name>` (`loss_cos`)."""
        return f"loss_{self.name}"


# The registry: every place that names a loss term (arguments, trainer logs, card, benchmarks, README) reads it here.
LOSS_TERMS: dict[str, LossTerm] = {
    term.name: term
    for term in (
        LossTerm(
            "kd",
            "L_kd",
            "soft-target KL divergence at temperature T, scaled by T² (MSE for regression); Hinton et al., 2015",
            5.0,
            "hinton2015",
        ),
        LossTerm("task", "L_task", "the student's own loss on the labels (cross-entropy, masked LM, ...)", 2.0),
        LossTerm(
            "cos",
            "L_cos",
            "cosine loss between student and teacher last hidden states; Sanh et al., 2019",
            1.0,
            "sanh2019",
        ),
        LossTerm(
            "mse", "L_mse", "mean squared error between student and teacher logits; Tang et al., 2019", 0.0, "tang2019"
        ),
        LossTerm(
            "hint",
            "L_hint",
            "hidden-state hints at the layers of layer_map (MSE, cosine or PKD's normalised [CLS]), through learned "
            "projections when the hidden sizes differ; Romero et al., 2015; Sun et al., 2019; Jiao et al., 2020",
            0.0,
            "romero2015",
        ),
        LossTerm(
            "attn",
            "L_attn",
            "attention scores (MSE) or distributions (KL) at the layers of layer_map; Jiao et al., 2020",
            0.0,
            "jiao2020",
        ),
        LossTerm(
            "rel",
            "L_rel",
            "self-attention relations (query-query, key-key, value-value KL) of one teacher layer and the student's "
            "last; Wang et al., 2021",
            0.0,
            "wang2021",
        ),
    )
}

# The terms that read the models' inner layers; they need live teachers (cached outputs hold the last hidden state).
LAYER_TERMS: tuple[str, ...] = ("hint", "attn", "rel")


def _select(tensor: torch.Tensor, mask: torch.Tensor | None, feature_dims: int = 1) -> torch.Tensor:
    """Flatten the item dimensions of `tensor` to one and keep the items where `mask` is true, as fp32."""
    items = tensor.reshape(-1, *tensor.shape[tensor.dim() - feature_dims :]) if feature_dims else tensor.reshape(-1)
    if mask is not None:
        if mask.shape != tensor.shape[: tensor.dim() - feature_dims]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match the item dimensions "
                f"{tuple(tensor.shape[: tensor.dim() - feature_dims])} of a tensor of shape {tuple(tensor.shape)}"
            )
        # Selecting before the fp32 cast and the softmax keeps masked-LM distillation cheap: only the masked
        # positions' vocabulary-sized rows are ever materialised in fp32.
        items = items[mask.reshape(-1).bool()]
    return items.float()


def _reduce(per_item: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    if reduction == "mean":
        # An empty selection has no mean; returning a graph-connected zero keeps backward() working.
        return per_item.sum() / max(per_item.numel(), 1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher {what} have different shapes: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )


def _softened(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept items of both logit tensors, in fp32, divided by the temperature."""
    _check_same_shape(student_logits, teacher_logits, "logits")
    return _select(student_logits, mask) / temperature, _select(teacher_logits, mask) / temperature


def _kl(log_p_student: torch.Tensor, log_p_teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the last dimension, from log-probabilities.

    `F.kl_div(input, target)` takes the student's log-probabilities first and computes KL(target || input);
    `log_target=True` passes the teacher as log-probabilities too, which stays finite where probabilities underflow.
    """
    return F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Soft-target loss of Hinton et al. (2015): :math:`T^2 \, KL(p_T \,\|\, p_S)` with :math:`p = softmax(z / T)`.

    The KL divergence between the teacher's and the student's softened distributions is summed over the class
    dimension, giving one value per item. It is multiplied by :math:`T^2` because the gradient of the softened
    cross-entropy with respect to the logits scales as :math:`1/T^2` (Hinton et al. 2015, section 2); the factor keeps
    the soft term's gradients on the same scale as the hard-label term's when T changes, so loss weights need not be
    re-tuned per temperature. DistilBERT (Sanh et al. 2019) uses the same term as `L_ce`.

    The computation is in fp32 whatever the logits' dtype: in bf16, `log_softmax` differences of near-equal
    probabilities round to values that make the KL negative.

    Args:
        student_logits (`torch.Tensor` of shape `(*items, num_classes)`): Student logits.
        teacher_logits (`torch.Tensor` of shape `(*items, num_classes)`): Teacher logits.
        temperature (`float`): Softmax temperature T > 0.
        mask (`torch.Tensor` of shape `(*items)`, *optional*): True for the items that count.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the kept items.

    Returns:
        `torch.Tensor`: A scalar, or one value per kept item for `reduction="none"`.
    """
    student, teacher = _softened(student_logits, teacher_logits, mask, temperature)
    per_item = _kl(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1))
    return _reduce(per_item * temperature**2, reduction)


def binary_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Soft-target loss for multi-label heads: :math:`T^2` times the Bernoulli KL per label, averaged over labels.

    Each label is an independent sigmoid, so the softmax KL of :func:`kd_loss` does not apply; the per-label
    distribution is :math:`(\sigma(z/T), 1 - \sigma(z/T))`. The :math:`T^2` factor has the same reason as in
    :func:`kd_loss` (Hinton et al. 2015).

    Args:
        student_logits (`torch.Tensor` of shape `(*items, num_labels)`): Student logits.
        teacher_logits (`torch.Tensor` of shape `(*items, num_labels)`): Teacher logits.
        temperature (`float`): Temperature T > 0.
        mask (`torch.Tensor` of shape `(*items)`, *optional*): True for the items that count.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the kept items.

    Returns:
        `torch.Tensor`: A scalar, or one value per kept item for `reduction="none"`.
    """
    student, teacher = _softened(student_logits, teacher_logits, mask, temperature)
    # Two-class log-probabilities from logsigmoid are exact where sigmoid would round to 0 or 1.
    log_p_teacher = torch.stack([F.logsigmoid(teacher), F.logsigmoid(-teacher)], dim=-1)
    log_p_student = torch.stack([F.logsigmoid(student), F.logsigmoid(-student)], dim=-1)
    per_label = _kl(log_p_student, log_p_teacher)
    return _reduce(per_label.mean(-1) * temperature**2, reduction)


def mse_loss(
    student_outputs: torch.Tensor,
    teacher_outputs: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean squared error between student and teacher outputs, averaged over the last dimension per item.

    Used two ways: as the distillation loss of regression heads (`num_labels == 1`, where a softmax over one output
    is meaningless), and as the logit-matching loss of Tang et al. (2019), who distilled BERT into a BiLSTM by
    regressing its logits. With `reduction="mean"` the result equals the MSE over all kept elements.

    Args:
        student_outputs (`torch.Tensor` of shape `(*items, dim)`): Student predictions or logits.
        teacher_outputs (`torch.Tensor` of shape `(*items, dim)`): Teacher predictions or logits.
        mask (`torch.Tensor` of shape `(*items)`, *optional*): True for the items that count.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the kept items.

    Returns:
        `torch.Tensor`: A scalar, or one value per kept item for `reduction="none"`.
    """
    _check_same_shape(student_outputs, teacher_outputs, "outputs")
    per_item = (_select(student_outputs, mask) - _select(teacher_outputs, mask)).pow(2).mean(-1)
    return _reduce(per_item, reduction)


def cosine_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DistilBERT's cosine embedding loss `L_cos` (Sanh et al. 2019): 1 - cos(h_student, h_teacher) per token.

    It aligns the directions of the student's and the teacher's hidden states. Padding tokens must be masked out:
    their hidden states are arbitrary, and averaging over them dilutes the loss by the padding ratio of each batch.

    Args:
        student_hidden (`torch.Tensor` of shape `(*items, hidden_size)`): Student hidden states.
        teacher_hidden (`torch.Tensor` of shape `(*items, hidden_size)`): Teacher hidden states.
        mask (`torch.Tensor` of shape `(*items)`, *optional*): True for the tokens that count (the attention mask).
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the kept tokens.

    Returns:
        `torch.Tensor`: A scalar, or one value per kept token for `reduction="none"`.

    Raises:
        ValueError: If the hidden sizes differ; a projection is needed then.
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(
            f"cosine_loss needs equal hidden sizes, got student {student_hidden.shape[-1]} and teacher "
            f"{teacher_hidden.shape[-1]}; set alpha_cos=0 or use a student with the teacher's hidden size"
        )
    _check_same_shape(student_hidden, teacher_hidden, "hidden states")
    per_item = 1.0 - F.cosine_similarity(_select(student_hidden, mask), _select(teacher_hidden, mask), dim=-1)
    return _reduce(per_item, reduction)


def pkd_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""The patient loss of PKD (Sun et al. 2019, eq. 3), per item: :math:`\| h_s / \|h_s\| - h_t / \|h_t\| \|_2^2`.

    PKD applies it to the [CLS] hidden state of each mapped layer. Normalising both vectors first makes it blind to
    their scale, so a student need not match the teacher's activation norms; it equals :math:`2 (1 - \cos)`, twice
    :func:`cosine_loss`, written here in the paper's form.

    Args:
        student_hidden (`torch.Tensor` of shape `(*items, hidden_size)`): Student vectors (projected to the teacher's
            size if the sizes differ).
        teacher_hidden (`torch.Tensor` of shape `(*items, hidden_size)`): Teacher vectors.
        mask (`torch.Tensor` of shape `(*items)`, *optional*): True for the items that count.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the kept items.

    Returns:
        `torch.Tensor`: A scalar, or one value per kept item for `reduction="none"`.
    """
    _check_same_shape(student_hidden, teacher_hidden, "hidden states")
    student = F.normalize(_select(student_hidden, mask), dim=-1)
    teacher = F.normalize(_select(teacher_hidden, mask), dim=-1)
    return _reduce((student - teacher).pow(2).sum(-1), reduction)


def _key_padding(scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`(batch, 1, 1, keys)`: True at the padding keys of score matrices `(batch, heads, queries, keys)`."""
    if attention_mask.shape != (scores.shape[0], scores.shape[-1]):
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match the (batch, keys) dimensions of "
            f"scores of shape {tuple(scores.shape)}"
        )
    return ~attention_mask.bool()[:, None, None, :]


def _row_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the softmax of each row of `(batch, heads, queries, keys)` scores, padding keys
    excluded, averaged over heads: `(batch, queries)`, in fp32.

    Padding keys are set to the lowest fp32 value in both models before the softmax, so they carry no probability
    and their log-probabilities stay finite (an infinite one would make the KL `0 * inf = NaN`).
    """
    padding = _key_padding(teacher_scores, attention_mask)
    lowest = torch.finfo(torch.float32).min
    student = F.log_softmax(student_scores.float().masked_fill(padding, lowest), dim=-1)
    teacher = F.log_softmax(teacher_scores.float().masked_fill(padding, lowest), dim=-1)
    return _kl(student, teacher).mean(1)


AttentionKind = Literal["mse", "kl"]


def attention_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    *,
    attention_mask: torch.Tensor,
    kind: AttentionKind = "mse",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Attention distillation of TinyBERT (Jiao et al. 2020, eq. 7) for one pair of layers, per query token.

    - `"mse"`: the squared difference of the attention scores :math:`Q K^T / \sqrt{d_k}` before the softmax (TinyBERT),
      averaged over the real keys of each query row, then over heads.
    - `"kl"`: KL(teacher ‖ student) between the attention distributions (the softmax over the real keys) of each query
      row, averaged over heads (as MiniLM, Wang et al. 2020, does for the last layer).

    Padding is excluded twice: padding keys never enter a row, and rows of padding queries are dropped (the items are
    the real query tokens). Averaging over the keys of a row, not over all score pairs of the batch, makes each query
    token one item, so the trainer normalises by the token count like every other token-level term.

    Args:
        student_scores (`torch.Tensor` of shape `(batch, heads, seq, seq)`): Student attention scores, pre-softmax.
        teacher_scores (`torch.Tensor` of shape `(batch, heads, seq, seq)`): Teacher attention scores, pre-softmax.
        attention_mask (`torch.Tensor` of shape `(batch, seq)`): 1 for real tokens, 0 for padding.
        kind (`str`, *optional*, defaults to `"mse"`): `"mse"` on scores or `"kl"` on distributions.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the real query tokens.

    Returns:
        `torch.Tensor`: A scalar, or one value per real query token for `reduction="none"`.

    Raises:
        ValueError: If the head counts differ (TinyBERT matches head to head; use `alpha_rel`, which needs no equal
            head count, instead).
    """
    if student_scores.dim() != 4 or teacher_scores.dim() != 4:
        raise ValueError(
            f"attention scores must be (batch, heads, seq, seq), got {tuple(student_scores.shape)} and "
            f"{tuple(teacher_scores.shape)}"
        )
    if student_scores.shape[1] != teacher_scores.shape[1]:
        raise ValueError(
            f"attention_loss matches heads one to one, but the student has {student_scores.shape[1]} heads and the "
            f"teacher {teacher_scores.shape[1]}; give the student the teacher's num_attention_heads, or use the "
            "relation loss (alpha_rel), which works with any head count"
        )
    _check_same_shape(student_scores, teacher_scores, "attention scores")
    if kind == "kl":
        per_row = _row_kl(student_scores, teacher_scores, attention_mask)
    elif kind == "mse":
        keys = (~_key_padding(teacher_scores, attention_mask)).float()
        squared = (student_scores.float() - teacher_scores.float()).pow(2) * keys
        per_row = (squared.sum(-1) / keys.sum(-1).clamp(min=1)).mean(1)
    else:
        raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}")
    return _reduce(_select(per_row, attention_mask.bool(), feature_dims=0), reduction)


def head_products(first: torch.Tensor, second: torch.Tensor, num_heads: int) -> torch.Tensor:
    r"""Scaled dot products per head, :math:`A_h B_h^T / \sqrt{d_h}`, in fp32: attention scores from queries and keys
    (Vaswani et al. 2017), and MiniLMv2's relations (Wang et al. 2021, eq. 5) from one kind of states with itself.

    Args:
        first (`torch.Tensor` of shape `(batch, seq, hidden)`): Queries (or the states of a relation).
        second (`torch.Tensor` of shape `(batch, seq, hidden)`): Keys (or the same states).
        num_heads (`int`): The heads to split the hidden dimension into; it must divide it.

    Returns:
        `torch.Tensor` of shape `(batch, num_heads, seq, seq)`: pre-softmax scores, without any padding mask.
    """
    batch, seq, hidden = first.shape
    if hidden % num_heads:
        raise ValueError(
            f"{num_heads} heads do not divide the hidden size {hidden}; for relations, choose relation_heads that "
            "divides both models' hidden sizes"
        )
    size = hidden // num_heads
    a = first.float().reshape(batch, seq, num_heads, size).transpose(1, 2)
    b = second.float().reshape(batch, seq, num_heads, size).transpose(1, 2)
    return a @ b.transpose(-1, -2) / math.sqrt(size)


def relation_loss(
    student_states: torch.Tensor,
    teacher_states: torch.Tensor,
    *,
    num_relation_heads: int,
    attention_mask: torch.Tensor,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""One self-attention relation loss of MiniLMv2 (Wang et al. 2021, eq. 6), per query token.

    The teacher's and the student's relations (:func:`head_products` of the states with themselves, split into
    `num_relation_heads` heads whatever each model's own head count, softmax over the real keys) are compared by
    KL(teacher ‖ student) per row, averaged over the relation heads. MiniLMv2 sums this loss over the query-query,
    key-key and value-value relations; the trainer does that sum. Hidden sizes may differ: only the relation heads
    must divide both.

    Args:
        student_states (`torch.Tensor` of shape `(batch, seq, student_hidden)`): Student queries, keys or values.
        teacher_states (`torch.Tensor` of shape `(batch, seq, teacher_hidden)`): The teacher's of the same kind.
        num_relation_heads (`int`): The number of relation heads.
        attention_mask (`torch.Tensor` of shape `(batch, seq)`): 1 for real tokens, 0 for padding.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"sum"` or `"none"` over the real query tokens.

    Returns:
        `torch.Tensor`: A scalar, or one value per real query token for `reduction="none"`.
    """
    if student_states.shape[:2] != teacher_states.shape[:2]:
        raise ValueError(
            f"student and teacher states have different (batch, seq) shapes: {tuple(student_states.shape)} vs "
            f"{tuple(teacher_states.shape)}"
        )
    per_row = _row_kl(
        head_products(student_states, student_states, num_relation_heads),
        head_products(teacher_states, teacher_states, num_relation_heads),
        attention_mask,
    )
    return _reduce(_select(per_row, attention_mask.bool(), feature_dims=0), reduction)


EnsembleKind = Literal["softmax", "sigmoid", "mean"]


def ensemble_logits(
    teacher_logits: torch.Tensor, weights: torch.Tensor, *, temperature: float, kind: EnsembleKind
) -> torch.Tensor:
    r"""One target from K teachers' logits (stacked on dimension 0), as logits at `temperature`, in fp32.

    - `"softmax"`: the weighted mean of the teachers' softened probabilities,
      :math:`p = \sum_k w_k \, softmax(z_k / T)`, returned as :math:`T \log p`, so that :func:`kd_loss` at the same T
      on these logits is the KL divergence from the mixture itself (:math:`softmax(T \log p / T) = p`).
    - `"sigmoid"`: the same per label for multi-label heads, :math:`p = \sum_k w_k \sigma(z_k / T)`, returned as
      :math:`T \, logit(p)`.
    - `"mean"`: the weighted mean of the logits, for regression predictions and logit regression (`L_mse`).

    The mean of probabilities, not of logits, is the soft target: it is the ensemble's own predictive distribution
    (each teacher's uncertainty kept, and a teacher that is confidently wrong outvoted), whereas the mean of logits is
    a normalised geometric mean of the distributions that is sharper than every teacher where they agree and lets one
    confident teacher dominate where they do not. Computed in log space, so it stays finite where probabilities
    underflow.

    Args:
        teacher_logits (`torch.Tensor` of shape `(K, *items, num_classes)`): The teachers' logits.
        weights (`torch.Tensor` of shape `(K,)`): Weights > 0 that sum to 1.
        temperature (`float`): Softmax temperature T > 0.
        kind (`str`): `"softmax"`, `"sigmoid"` or `"mean"`.

    Returns:
        `torch.Tensor` of shape `(*items, num_classes)`.
    """
    logits = teacher_logits.float()
    shape = (-1,) + (1,) * (logits.dim() - 1)
    w = weights.to(device=logits.device, dtype=torch.float32).reshape(shape)
    if kind == "mean":
        return (w * logits).sum(0)
    log_w = w.log()
    if kind == "softmax":
        log_p = torch.logsumexp(log_w + F.log_softmax(logits / temperature, dim=-1), dim=0)
        return temperature * log_p
    if kind == "sigmoid":
        log_p = torch.logsumexp(log_w + F.logsigmoid(logits / temperature), dim=0)
        log_q = torch.logsumexp(log_w + F.logsigmoid(-logits / temperature), dim=0)
        return temperature * (log_p - log_q)
    raise ValueError(f"kind must be 'softmax', 'sigmoid' or 'mean', got {kind!r}")

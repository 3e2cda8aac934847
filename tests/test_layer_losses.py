"""The intermediate-layer losses as pure functions, the layer map and the schedules: properties, golden values and
edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from hf_distill import DistillationTrainingArguments
from hf_distill.arguments import distillation_settings
from hf_distill.layer_map import parse_layer_map, resolve_layer_map, uniform_layer_map
from hf_distill.losses import attention_loss, cosine_loss, head_products, pkd_loss, relation_loss
from hf_distill.schedules import Schedule, parse_schedules

# ---- PKD ---------------------------------------------------------------------------------------------------------


def test_pkd_loss_golden_value_and_its_cosine_identity():
    """A PKD distance on unnormalised vectors (plain MSE) or summed over the wrong axis gives another number than the
    paper's formula worked out by hand; it must also equal 2 (1 - cos)."""
    student, teacher = [3.0, 4.0], [1.0, 0.0]
    s_norm = [v / 5.0 for v in student]
    expected = (s_norm[0] - 1.0) ** 2 + (s_norm[1] - 0.0) ** 2  # (0.6 - 1)^2 + 0.8^2 = 0.8
    got = pkd_loss(torch.tensor([student]), torch.tensor([teacher]))
    assert got.item() == pytest.approx(expected, rel=1e-6) and expected == pytest.approx(0.8)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert pkd_loss(a, b).item() == pytest.approx(2 * cosine_loss(a, b).item(), rel=1e-5)


def test_pkd_loss_is_zero_for_identical_directions_and_ignores_scale():
    """Without the normalisation the student is pushed to copy the teacher's activation norms, which PKD avoids."""
    a = torch.randn(4, 9)
    assert pkd_loss(a * 3.0, a).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(4, 9)
    assert pkd_loss(a * 10.0, b).item() == pytest.approx(pkd_loss(a, b).item(), rel=1e-5)


def test_pkd_loss_mask_and_reductions():
    """A masked item that still counts (or a mean over all items) dilutes the loss."""
    a, b = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    per_item = pkd_loss(a, b, mask=mask, reduction="none")
    assert per_item.shape == (3,)
    assert pkd_loss(a, b, mask=mask, reduction="sum").item() == pytest.approx(per_item.sum().item(), rel=1e-6)
    assert pkd_loss(a, b, mask=torch.zeros(2, 3, dtype=torch.bool)).item() == 0.0


# ---- attention ---------------------------------------------------------------------------------------------------


def _scores_and_mask(batch=2, heads=3, seq=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, heads, seq, seq, generator=generator)
    teacher = torch.randn(batch, heads, seq, seq, generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 3:] = 0
    return student, teacher, mask


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_attention_loss_is_zero_for_identical_scores(kind):
    """A KL written as a cross-entropy, or an MSE against the wrong tensor, is not zero at the optimum."""
    scores, _, mask = _scores_and_mask()
    assert attention_loss(scores, scores.clone(), attention_mask=mask, kind=kind).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_attention_loss_ignores_padding_keys_and_padding_queries(kind):
    """Scores at padding keys or in padding query rows are arbitrary (the model adds -inf there); letting them into
    the loss trains the student on noise, diluted differently in each batch."""
    student, teacher, mask = _scores_and_mask()
    reference = attention_loss(student, teacher, attention_mask=mask, kind=kind)
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[1, :, :, 3:] += 100.0  # padding keys of the second example
    noisy_teacher[1, :, 3:, :] -= 50.0  # its padding query rows
    noisy = attention_loss(noisy_student, noisy_teacher, attention_mask=mask, kind=kind)
    assert noisy.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.isfinite(noisy)


def test_attention_loss_golden_values():
    """Per query row: the MSE over the real keys, and the KL of the softmax over the real keys, worked out with plain
    Python for one head; a mean over padding keys or a KL in the wrong direction gives other numbers."""
    student = torch.tensor([[[[1.0, 2.0, 9.0], [0.0, 1.0, 9.0], [5.0, 5.0, 5.0]]]])
    teacher = torch.tensor([[[[2.0, 0.0, -9.0], [1.0, 1.0, -9.0], [0.0, 0.0, 0.0]]]])
    mask = torch.tensor([[1, 1, 0]])
    rows = [([1.0, 2.0], [2.0, 0.0]), ([0.0, 1.0], [1.0, 1.0])]
    mse = sum(sum((s - t) ** 2 for s, t in zip(srow, trow)) / 2 for srow, trow in rows) / 2

    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(trow), softmax(srow))) for srow, trow in rows) / 2
    assert attention_loss(student, teacher, attention_mask=mask, kind="mse").item() == pytest.approx(mse, rel=1e-6)
    assert attention_loss(student, teacher, attention_mask=mask, kind="kl").item() == pytest.approx(kl, rel=1e-5)
    per_token = attention_loss(student, teacher, attention_mask=mask, kind="mse", reduction="none")
    assert per_token.shape == (2,)


def test_attention_loss_refuses_different_head_counts():
    """Heads matched by position between models with different head counts would broadcast or mis-pair silently."""
    with pytest.raises(ValueError, match="2 heads and the teacher 4.*alpha_rel"):
        attention_loss(torch.randn(1, 2, 3, 3), torch.randn(1, 4, 3, 3), attention_mask=torch.ones(1, 3))


def test_attention_loss_of_an_all_padding_batch_is_zero_not_nan():
    """An all-padding micro-batch must contribute 0, not 0 / 0."""
    student, teacher, _ = _scores_and_mask()
    value = attention_loss(student, teacher, attention_mask=torch.zeros(2, 5), kind="kl")
    assert value.item() == 0.0


def test_head_products_are_the_models_own_attention_scores(tiny_classifier):
    """Scores recomputed from the projections must be the ones BERT's eager attention softmaxes: a wrong head split
    or scale would distil attention the teacher never had."""
    from hf_distill.attention_capture import attention_layers, capture_projections

    model = tiny_classifier
    model.config._attn_implementation = "eager"
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    layers = attention_layers(model, what="the model")
    with capture_projections(layers, {1: ("query", "key"), 3: ("query", "key")}) as captured, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    for layer in (1, 3):
        scores = head_products(captured[(layer, "query")], captured[(layer, "key")], layers.num_heads)
        probabilities = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf")).softmax(-1)
        torch.testing.assert_close(probabilities, out.attentions[layer - 1], atol=1e-5, rtol=0)


# ---- relations ---------------------------------------------------------------------------------------------------


def test_relation_loss_is_zero_for_identical_states_and_invariant_to_rotations_within_heads():
    """Relations are dot products within each relation head: a rotation of each head's subspace changes no relation,
    so the loss between a model and its rotated copy is 0. A split into the wrong heads (or none) breaks this."""
    states = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6)
    assert relation_loss(states, states, num_relation_heads=2, attention_mask=mask).item() == pytest.approx(
        0, abs=1e-6
    )
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    rotated = torch.cat([states[..., :4] @ q, states[..., 4:] @ q.T], dim=-1)
    value = relation_loss(rotated, states, num_relation_heads=2, attention_mask=mask).item()
    assert value == pytest.approx(0.0, abs=1e-5)
    # A rotation across the two heads mixes them, and the relations change.
    full, _ = torch.linalg.qr(torch.randn(8, 8))
    assert relation_loss(states @ full, states, num_relation_heads=2, attention_mask=mask).item() > 1e-3


def test_relation_loss_golden_value_with_different_hidden_sizes():
    """MiniLMv2 compares relations of models of different widths; the value must be the KL of the softmaxed scaled
    dot products per relation head, worked out with plain Python (one relation head, padding key excluded)."""
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[1.0, 1.0, 0.0], [2.0, 0.0, 1.0], [9.0, 9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])

    def relation_rows(vectors):
        size = len(vectors[0])
        return [[sum(a * b for a, b in zip(u, v)) / math.sqrt(size) for v in vectors] for u in vectors]

    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    s_rows = relation_rows([[1.0, 0.0], [0.0, 1.0]])
    t_rows = relation_rows([[1.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    expected = (
        sum(sum(p * math.log(p / q) for p, q in zip(softmax(t), softmax(s))) for s, t in zip(s_rows, t_rows)) / 2
    )
    got = relation_loss(student, teacher, num_relation_heads=1, attention_mask=mask)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_relation_heads_must_divide_the_hidden_size():
    """A relation-head split that does not divide the width would reshape across tokens."""
    with pytest.raises(ValueError, match="relation_heads"):
        relation_loss(
            torch.randn(1, 3, 6), torch.randn(1, 3, 8), num_relation_heads=4, attention_mask=torch.ones(1, 3)
        )


# ---- layer map ---------------------------------------------------------------------------------------------------


def test_uniform_layer_map_pairs_the_last_layers():
    """TinyBERT's uniform mapping: a map that leaves the student's last layer unpaired (or pairs it below the
    teacher's last) teaches the top layer nothing."""
    assert uniform_layer_map(3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert uniform_layer_map(3, 6, embeddings=True) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert uniform_layer_map(4, 6) == [(1, 1), (2, 3), (3, 4), (4, 6)]
    assert uniform_layer_map(2, 2) == [(1, 1), (2, 2)]


@pytest.mark.parametrize(
    "value, expected",
    [(["1:2", "2:4"], [(1, 2), (2, 4)]), ({2: 4, 1: 2}, [(1, 2), (2, 4)]), ("3:6, 0:0", [(0, 0), (3, 6)])],
)
def test_layer_map_forms(value, expected):
    """The flag, a Python dict and a comma list must mean the same pairs."""
    assert parse_layer_map(value) == expected


@pytest.mark.parametrize(
    "value, match",
    [
        (["1-2"], "student:teacher"),
        (["a:2"], "layer numbers"),
        (["1:2", "1:3"], "more than once"),
        (["-1:2"], "negative"),
        ([], "empty"),
        (["1.5:2"], "layer numbers"),
    ],
)
def test_bad_layer_maps_are_refused(value, match):
    """A malformed map must fail with the entry named, not train some other mapping."""
    with pytest.raises(ValueError, match=match):
        DistillationTrainingArguments(output_dir="unused", layer_map=value, alpha_hint=1.0)


def test_layer_map_beyond_a_models_depth_is_refused():
    """Hidden state 7 of a 6-layer teacher does not exist; indexing would fail at the first step or wrap around."""
    with pytest.raises(ValueError, match="teacher has 6 layers"):
        resolve_layer_map([(1, 7)], student_layers=3, teacher_layers=6)
    with pytest.raises(ValueError, match="student has 3 layers"):
        resolve_layer_map([(4, 6)], student_layers=3, teacher_layers=6)


# ---- schedules ---------------------------------------------------------------------------------------------------


def test_schedule_values_at_start_middle_and_end():
    """A schedule off by one step, or a cosine that is not flat at its ends, anneals to other values."""
    linear, cosine = Schedule("alpha_kd", 1.0, "linear"), Schedule("alpha_kd", 1.0, "cosine")
    assert [linear.value(5.0, p) for p in (0.0, 0.5, 1.0)] == [5.0, 3.0, 1.0]
    assert cosine.value(5.0, 0.0) == 5.0 and cosine.value(5.0, 1.0) == pytest.approx(1.0)
    assert cosine.value(5.0, 0.5) == pytest.approx(3.0) and cosine.value(5.0, 0.1) > linear.value(5.0, 0.1)


def test_scheduled_settings_and_activity():
    """A term scheduled from 0 up must be computed (active) from the first step, at weight 0 there."""
    args = DistillationTrainingArguments(
        output_dir="unused", alpha_mse=0.0, schedules=["alpha_mse:2", "temperature:1:cosine"]
    )
    temperature, weights = distillation_settings(args, 0.0)
    assert temperature == 2.0 and weights["mse"] == 0.0
    temperature, weights = distillation_settings(args, 1.0)
    assert temperature == pytest.approx(1.0) and weights["mse"] == 2.0


@pytest.mark.parametrize(
    "entries, match",
    [
        (["alpha_foo:1"], "cannot be scheduled"),
        (["alpha_kd:1:step"], "shape"),
        (["alpha_kd:x"], "not a number"),
        (["alpha_kd:1", "alpha_kd:2"], "twice"),
        (["temperature:0"], "temperature"),
        (["alpha_kd:-1"], ">= 0"),
        (["alpha_kd"], "<name>:<end>"),
    ],
)
def test_bad_schedules_are_refused(entries, match):
    """An end value that would train with NaN (T = 0, a negative weight) or a typo must fail before any work."""
    with pytest.raises(ValueError, match=match):
        DistillationTrainingArguments(output_dir="unused", schedules=entries)


def test_schedules_parse_on_the_command_line():
    """The flags a user types must arrive as the stored, canonical form."""
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(DistillationTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "unused", "--schedules", "alpha_kd:1:cosine", "--layer_map", "1:2", "2:4"]
    )
    assert args.schedules == ["alpha_kd:1:cosine"] and args.layer_map == ["1:2", "2:4"]
    assert parse_schedules(args.schedules, ["alpha_kd"])["alpha_kd"].shape == "cosine"

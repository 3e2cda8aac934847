"""Properties, one golden value and edge cases of the pure loss functions."""

from __future__ import annotations

import math

import pytest
import torch

from hf_distill.losses import binary_kd_loss, cosine_loss, kd_loss, mse_loss


def _softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_kd_loss_golden_value():
    """A swapped KL direction, a missing T² or a softmax over the wrong axis gives another number than plain math."""
    student, teacher, temperature = [1.0, 2.0, 3.0], [3.0, 1.0, 0.0], 2.0
    p_teacher, p_student = _softmax(teacher, temperature), _softmax(student, temperature)
    expected = temperature**2 * sum(p * math.log(p / q) for p, q in zip(p_teacher, p_student))
    got = kd_loss(torch.tensor([student]), torch.tensor([teacher]), temperature=temperature)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(2.0738, abs=1e-4)  # worked out separately, as a cross-check


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    """A KL written as cross-entropy (without the teacher's entropy) is not zero at the optimum."""
    logits = torch.randn(6, 5)
    assert kd_loss(logits, logits.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(torch.randn(6, 5), logits, temperature=3.0).item() > 0


def test_kd_loss_scales_with_temperature_squared():
    """Without the T² factor the soft-target gradients shrink as 1/T² and the KD term silently fades at high T."""
    student, teacher = torch.randn(4, 7), torch.randn(4, 7)
    for temperature in (1.0, 2.0, 4.0):
        plain = torch.nn.functional.kl_div(
            torch.log_softmax(student / temperature, -1),
            torch.softmax(teacher / temperature, -1),
            reduction="batchmean",
        )
        assert kd_loss(student, teacher, temperature=temperature).item() == pytest.approx(
            temperature**2 * plain.item(), rel=1e-5
        )


def test_kd_loss_is_not_symmetric():
    """KL(teacher‖student) and KL(student‖teacher) differ; the teacher must be the target distribution."""
    a, b = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.5]])
    forward = kd_loss(a, b, temperature=1.0).item()
    backward = kd_loss(b, a, temperature=1.0).item()
    p = _softmax([1.0, 1.0, 0.5], 1.0)
    q = _softmax([4.0, 0.0, 0.0], 1.0)
    assert forward == pytest.approx(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)), rel=1e-5)
    assert abs(forward - backward) > 0.1


def test_kd_loss_runs_in_fp32_for_bf16_inputs():
    """Half-precision softmax differences can make the KL negative or far off; inputs are upcast first."""
    student, teacher = torch.randn(16, 50) * 4, torch.randn(16, 50) * 4
    reference = kd_loss(student, teacher, temperature=2.0)
    half = kd_loss(student.bfloat16(), teacher.bfloat16(), temperature=2.0)
    assert half.dtype == torch.float32
    assert half.item() >= 0
    # The only difference left is the bf16 rounding of the inputs themselves.
    assert half.item() == pytest.approx(
        kd_loss(student.bfloat16().float(), teacher.bfloat16().float(), temperature=2.0).item(), rel=1e-6
    )
    assert half.item() == pytest.approx(reference.item(), rel=0.05)


def test_kd_loss_mask_selects_positions_and_reductions_agree():
    """Padding positions averaged into a token-level KD dilute it by the padding ratio of each batch."""
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    per_item = kd_loss(student, teacher, temperature=2.0, mask=mask, reduction="none")
    assert per_item.shape == (4,)
    manual = torch.stack(
        [kd_loss(student[b, t][None], teacher[b, t][None], temperature=2.0) for b, t in mask.nonzero().tolist()]
    )
    torch.testing.assert_close(per_item, manual)
    total = kd_loss(student, teacher, temperature=2.0, mask=mask, reduction="sum")
    mean = kd_loss(student, teacher, temperature=2.0, mask=mask, reduction="mean")
    assert total.item() == pytest.approx(manual.sum().item(), rel=1e-6)
    assert mean.item() == pytest.approx(manual.mean().item(), rel=1e-6)


def test_all_masked_gives_zero_and_a_usable_gradient():
    """A batch with no masked-LM position must contribute 0, not NaN from a 0/0 mean that poisons the weights."""
    student = torch.randn(2, 3, 5, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for loss in (
        kd_loss(student, torch.randn(2, 3, 5), temperature=2.0, mask=mask),
        mse_loss(student, torch.randn(2, 3, 5), mask=mask),
        cosine_loss(student, torch.randn(2, 3, 5), mask=mask),
    ):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, student)
        assert torch.all(grad == 0)


def test_mask_shape_mismatch_is_an_error():
    """A mask that broadcasts instead of matching would silently select the wrong positions."""
    with pytest.raises(ValueError, match="mask shape"):
        kd_loss(torch.randn(2, 5, 3), torch.randn(2, 5, 3), temperature=1.0, mask=torch.ones(5, dtype=torch.bool))


def test_shape_mismatch_between_student_and_teacher_is_an_error():
    """A narrower teacher tensor must not broadcast into a plausible-looking loss."""
    with pytest.raises(ValueError, match="different shapes"):
        kd_loss(torch.randn(4, 3), torch.randn(4, 1), temperature=1.0)


def test_mse_loss_matches_elementwise_mean():
    """The regression KD must be the plain MSE over elements, not a sum that grows with the label count."""
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    expected = ((student - teacher) ** 2).mean().item()
    assert mse_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert mse_loss(student, teacher, reduction="sum").item() == pytest.approx(expected * 4, rel=1e-6)


def test_cosine_loss_golden_value_and_masking():
    """Padding tokens counted in the cosine loss pull the student toward arbitrary pad-token states."""
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    # Token 0: identical direction (loss 0); token 1: orthogonal (loss 1); token 2: padding, ignored.
    assert cosine_loss(student, teacher, mask=mask).item() == pytest.approx(0.5, abs=1e-6)
    assert cosine_loss(student, teacher).item() == pytest.approx((0 + 1 + (1 + math.sqrt(0.5))) / 3, abs=1e-6)


def test_cosine_loss_rejects_different_hidden_sizes():
    """Different hidden sizes need a projection; silently truncating would compare unrelated features."""
    with pytest.raises(ValueError, match="hidden sizes"):
        cosine_loss(torch.randn(2, 3, 8), torch.randn(2, 3, 16))


def test_binary_kd_loss_properties():
    """Multi-label heads need a per-label Bernoulli KL; a softmax KL would couple independent labels."""
    logits = torch.randn(3, 4)
    assert binary_kd_loss(logits, logits.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)
    student, teacher, temperature = torch.tensor([[0.5]]), torch.tensor([[2.0]]), 2.0
    p = 1 / (1 + math.exp(-2.0 / temperature))
    q = 1 / (1 + math.exp(-0.5 / temperature))
    expected = temperature**2 * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    assert binary_kd_loss(student, teacher, temperature=temperature).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 100.0])
def test_extreme_temperatures_give_finite_losses_and_gradients(temperature):
    """Very low or high temperatures must not overflow into inf/NaN losses or gradients."""
    student = (torch.randn(4, 10) * 30).requires_grad_()
    loss = kd_loss(student, torch.randn(4, 10) * 30, temperature=temperature)
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()

"""atgan_plugin.attack.losses: the C&W-style adversarial loss, the noise ρ and the distance loss."""

from __future__ import annotations

import math

import pytest
import torch

from atgan_plugin.attack.losses import (
    FEATURE_SMOOTHING,
    adversarial_loss,
    distance_loss,
    feature_distance,
    sample_rho,
    source_guard_loss,
)


def reference_loss(row: list[float], label: int, *, targeted: bool, kappa: float) -> float:
    """The paper's formula written out in plain Python, for the parity test."""
    lse = math.log(sum(math.exp(v) for v in row))
    log_p = [v - lse for v in row]
    best_other = max(p for i, p in enumerate(log_p) if i != label)
    margin = best_other - log_p[label] if targeted else log_p[label] - best_other
    return max(margin, -kappa)


# Differences of log-probabilities are differences of logits, so each expected value below is
# read off the logits: (logits, label, targeted, kappa, expected).
CASES = [
    # Untargeted: label = source class; L = logit(source) - best other logit, floored at -κ.
    ([3.0, 1.0, 0.0], 0, False, 5.0, 3.0 - 1.0),  # still classified as the source
    ([0.0, 4.0, 1.0], 0, False, 5.0, 0.0 - 4.0),  # misclassified by a margin below κ
    ([0.0, 4.0, 1.0], 0, False, 2.0, -2.0),  # misclassified beyond κ: the floor
    ([2.0, 2.0, 0.0], 1, False, 5.0, 0.0),  # a tie
    ([1.0, 5.0, 2.0, 3.0], 1, False, 0.0, 5.0 - 3.0),  # κ = 0 does not floor a positive loss
    ([1.0, 5.0, 2.0, 7.0], 1, False, 0.0, 0.0),  # ... and floors a negative one at 0
    # Targeted: label = target class; L = best other logit - logit(target), floored at -κ.
    ([3.0, 1.0, 0.0], 2, True, 5.0, 3.0 - 0.0),
    ([0.0, 1.0, 4.0], 2, True, 5.0, 1.0 - 4.0),
    ([0.0, 1.0, 9.0], 2, True, 5.0, -5.0),  # reached with a margin beyond κ: the floor
    ([-1.0, -3.0, -2.0], 0, True, 5.0, -2.0 - -1.0),  # negative logits
]


@pytest.mark.parametrize("logits, label, targeted, kappa, expected", CASES)
def test_adversarial_loss_hand_made(
    logits: list[float], label: int, targeted: bool, kappa: float, expected: float
) -> None:
    loss = adversarial_loss(torch.tensor([logits]), torch.tensor([label]), targeted=targeted, kappa=kappa)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("targeted", [False, True])
def test_adversarial_loss_matches_the_formula_per_sample(targeted: bool) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g) * 4
    labels = torch.randint(10, (64,), generator=g)
    loss = adversarial_loss(logits, labels, targeted=targeted, kappa=3.0)
    expected = [
        reference_loss(row, int(y), targeted=targeted, kappa=3.0)
        for row, y in zip(logits.tolist(), labels, strict=True)
    ]
    assert loss.shape == (64,)
    assert torch.allclose(loss, torch.tensor(expected), atol=1e-4)
    assert (loss >= -3.0).all()


def test_adversarial_loss_is_shift_invariant() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.5, 2.0, -1.0]])
    labels = torch.tensor([0, 2])
    for targeted in (False, True):
        a = adversarial_loss(logits, labels, targeted=targeted, kappa=10.0)
        b = adversarial_loss(logits + torch.tensor([[100.0], [-7.0]]), labels, targeted=targeted, kappa=10.0)
        assert torch.allclose(a, b, atol=1e-4)


def test_floored_examples_stop_pulling() -> None:
    # Row 0 is adversarial beyond κ (no gradient); row 1 is not yet (gradient).
    logits = torch.tensor([[0.0, 9.0, 0.0], [3.0, 1.0, 0.0]], requires_grad=True)
    adversarial_loss(logits, torch.tensor([0, 0]), targeted=False, kappa=2.0).sum().backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[0] == 0)
    assert logits.grad[1].abs().sum() > 0


def test_spread_pulls_half_against_every_other_class() -> None:
    # Source 0; nearest other class 1. The spread half is log p_0 - log(p_1 + p_2) = 3 - log(e^1 + e^0).
    logits = torch.tensor([[3.0, 1.0, 0.0]], requires_grad=True)
    loss = adversarial_loss(logits, torch.tensor([0]), targeted=False, kappa=5.0, spread=True)
    against_all = 3.0 - math.log(math.exp(1.0) + math.exp(0.0))
    assert loss.item() == pytest.approx(((3.0 - 1.0) + against_all) / 2, abs=1e-5)
    loss.sum().backward()
    assert logits.grad is not None and logits.grad[0, 2] < 0  # the third class is pulled up too, not only the nearest
    plain = torch.tensor([[3.0, 1.0, 0.0]], requires_grad=True)
    adversarial_loss(plain, torch.tensor([0]), targeted=False, kappa=5.0).sum().backward()
    assert plain.grad is not None and plain.grad[0, 2] == 0  # the paper's loss pulls the nearest class alone


def test_spread_stops_pulling_once_adversarial_beyond_kappa_and_leaves_targeted_alone() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 10, generator=g) * 4
    labels = torch.randint(10, (64,), generator=g)
    plain = adversarial_loss(logits, labels, targeted=False, kappa=2.0)
    spread = adversarial_loss(logits, labels, targeted=False, kappa=2.0, spread=True)
    assert (spread <= plain + 1e-6).all() and (spread >= -2.0).all()
    assert torch.equal(spread[plain == -2.0], plain[plain == -2.0])  # at the floor both are -κ
    targeted = adversarial_loss(logits, labels, targeted=True, kappa=2.0)
    assert torch.equal(adversarial_loss(logits, labels, targeted=True, kappa=2.0, spread=True), targeted)


# ------------------------------------------------------------------------------------------------
# The noise ρ.


@pytest.mark.parametrize(
    "shape, l0, linf",
    [
        ((6, 1, 28, 28), 200, 0.5),  # the paper's setting
        ((6, 1, 28, 28), 0, 0.5),
        ((6, 1, 28, 28), 1, 0.5),
        ((6, 1, 28, 28), 784, 0.1),
        ((6, 1, 28, 28), 200, 0.0),
        ((3, 3, 8, 8), 50, 2.0),
    ],
)
def test_rho_respects_l0_and_linf(shape: tuple[int, ...], l0: int, linf: float) -> None:
    rho = sample_rho(shape, l0=l0, linf=linf, generator=torch.Generator().manual_seed(0))
    assert rho.shape == shape
    flat = rho.flatten(1)
    # Gaussian entries are never exactly zero, so exactly l0 entries per sample are non-zero.
    expected_nonzero = l0 if linf > 0 else 0
    assert (flat != 0).sum(dim=1).tolist() == [expected_nonzero] * shape[0]
    assert flat.abs().max() <= torch.tensor(linf)  # compared in float32, the noise's dtype
    if l0 >= 100 and linf <= 0.5:
        # With that many N(0, 1) draws, the ±linf clip is certainly reached.
        assert flat.abs().max().item() == pytest.approx(linf)


def test_rho_is_reproducible_with_a_seed() -> None:
    def draw(seed: int) -> torch.Tensor:
        return sample_rho((4, 1, 28, 28), l0=200, linf=0.5, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_rho_positions_differ_between_samples_and_are_uniform() -> None:
    n, l0, size = 2000, 200, 784
    rho = sample_rho((n, 1, 28, 28), l0=l0, linf=0.5, generator=torch.Generator().manual_seed(0))
    mask = rho.flatten(1) != 0
    assert not torch.equal(mask[0], mask[1])
    # Each position is chosen with probability l0/size; allow six binomial standard deviations.
    p = l0 / size
    counts = mask.sum(dim=0).float()
    assert (counts - n * p).abs().max().item() < 6 * math.sqrt(n * p * (1 - p))


def test_rho_same_values_on_every_device(device: torch.device) -> None:
    kwargs = dict(l0=100, linf=0.5)
    on_cpu = sample_rho((2, 1, 28, 28), generator=torch.Generator().manual_seed(1), **kwargs)  # type: ignore[arg-type]
    on_device = sample_rho((2, 1, 28, 28), generator=torch.Generator().manual_seed(1), device=device, **kwargs)  # type: ignore[arg-type]
    assert on_device.device.type == device.type
    assert torch.equal(on_device.cpu(), on_cpu)


# ------------------------------------------------------------------------------------------------
# The distance loss.


def test_distance_loss_is_the_unsquared_l2_norm_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    original = torch.rand(5, 1, 28, 28, generator=g)
    rho = sample_rho(original.shape, l0=200, linf=0.5, generator=g)
    attack = torch.rand(5, 1, 28, 28, generator=g)
    loss = distance_loss(attack, original, rho)
    assert loss.shape == (5,)
    for i in range(5):
        assert loss[i].item() == pytest.approx(
            torch.linalg.vector_norm(original[i] + rho[i] - attack[i]).item(), rel=1e-5
        )
    # Not squared: doubling the gap doubles the loss.
    doubled = distance_loss(original + rho - 2 * (original + rho - attack), original, rho)
    assert torch.allclose(doubled, 2 * loss, rtol=1e-5)
    assert torch.all(distance_loss(original + rho, original, rho) == 0)


def test_source_guard_loss_counts_only_lost_evidence() -> None:
    reference = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    attack = torch.tensor(
        [
            [2.0, 0.0, 0.0],  # unchanged: no loss
            [0.0, 0.0, 2.0],  # the class was erased: the cross-entropy grew
            [5.0, 0.0, 0.0],
        ]
    )  # more typical than G_orig: not rewarded, no loss
    sources = torch.zeros(3, dtype=torch.long)
    loss = source_guard_loss(attack, reference, sources)
    ce = lambda row: -torch.log_softmax(row, 0)[0]  # noqa: E731
    assert loss[0] == 0 and loss[2] == 0
    assert loss[1] == pytest.approx((ce(attack[1]) - ce(reference[1])).item())


def test_feature_distance_is_relative_to_g_origs_features() -> None:
    g = torch.Generator().manual_seed(4)
    reference = torch.randn(6, 32, generator=g)
    moved = reference + 0.1 * torch.randn(6, 32, generator=g)
    expected = (moved - reference).norm(dim=1) / reference.norm(dim=1)
    assert torch.allclose(feature_distance(moved, reference), expected, atol=FEATURE_SMOOTHING)
    assert torch.equal(feature_distance(reference, reference), torch.zeros(6))
    # Smooth at zero: rounding noise gives a gradient of about its own size, not a unit vector.
    noisy = (reference + 1e-7 * torch.randn(6, 32, generator=g)).requires_grad_(True)
    (gradient,) = torch.autograd.grad(feature_distance(noisy, reference).sum(), noisy)
    assert gradient.norm() < 1e-2
    # Relative: a guard whose features are 100 times larger gives the same term.
    assert torch.allclose(feature_distance(100 * moved, 100 * reference), expected, atol=FEATURE_SMOOTHING)
    # Any trailing shape is flattened per sample.
    assert torch.allclose(feature_distance(moved.view(6, 2, 4, 4), reference.view(6, 2, 4, 4)), expected, atol=1e-3)

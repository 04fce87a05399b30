"""The per-example shrink towards G_orig: success kept, changes smaller, the margin respected."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.attack.shrink import fooling_margin, shrink_towards_reference


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above 0.5, else class 0 (logits = ± 20·(mean − 0.5))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 20 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-score, score], dim=1)


def test_fooling_margin_untargeted_and_targeted() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 2.995], [1.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    assert torch.allclose(fooling_margin(logits, labels, targeted=False), torch.tensor([-1.0, 0.005, 0.0]), atol=1e-6)
    targeted = fooling_margin(logits, torch.tensor([0, 1, 0]), targeted=True)
    assert torch.allclose(targeted, torch.tensor([1.0, 0.005, 0.0]), atol=1e-6)


def test_shrink_finds_the_boundary_on_the_segment_and_keeps_every_success() -> None:
    model = Brightness()
    reference = torch.full((4, 1, 4, 4), 0.3)  # class 0
    adversarial = torch.tensor([0.9, 0.7, 0.6, 0.4])[:, None, None, None].expand(4, 1, 4, 4)  # the last one fails
    labels = torch.zeros(4, dtype=torch.long)

    def margin(x: torch.Tensor) -> torch.Tensor:
        return fooling_margin(model(x), labels, targeted=False)

    # The boundary is where the mean crosses 0.5: t* = 0.2 / (a − 0.3).
    expected = torch.tensor([0.2 / 0.6, 0.2 / 0.4, 0.2 / 0.3])
    for steps, tolerance in ((12, 1e-5), (2, 0.011 * (1 - expected))):  # two passes: a hundredth of the way
        images, t = shrink_towards_reference(reference, adversarial, margin, steps=steps)
        assert (margin(images)[:3] > 0).all()
        assert torch.all(t[:3] >= expected) and torch.all(t[:3] <= expected + tolerance), (steps, t, expected)
        assert t[3] == 1 and torch.equal(images[3], adversarial[3])  # not fooled even at t = 1: returned as it is
        assert ((images - reference).abs() <= (adversarial - reference).abs() + 1e-7).all()


def test_an_example_whose_reference_fools_already_comes_back_as_the_reference() -> None:
    reference, adversarial = torch.full((1, 1, 2, 2), 0.7), torch.full((1, 1, 2, 2), 0.9)
    images, t = shrink_towards_reference(
        reference,
        adversarial,
        lambda x: fooling_margin(Brightness()(x), torch.zeros(1, dtype=torch.long), targeted=False),
        steps=2,
    )
    assert t.tolist() == [0.0] and torch.equal(images, reference)


def test_a_margin_that_bends_still_ends_fooled_and_inside_the_bracket() -> None:
    # A margin convex along the segment: the straight line overshoots; the bracket keeps the result fooled.
    reference, adversarial = torch.zeros(64, 1, 1, 1), torch.ones(64, 1, 1, 1)
    crossing = torch.linspace(0.05, 0.95, 64)
    power = torch.linspace(0.3, 4.0, 64)

    def margin(x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(1)[:, 0]
        return t**power - crossing**power

    for steps in (1, 2, 4, 8):
        images, t = shrink_towards_reference(reference, adversarial, margin, steps=steps)
        assert (margin(images) > 0).all() and (t >= crossing).all() and (t <= 1).all()
    assert (t - crossing).max() < 0.01  # eight passes: within a hundredth


def test_zero_steps_returns_the_adversarial_images() -> None:
    reference, adversarial = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    images, t = shrink_towards_reference(reference, adversarial, lambda x: torch.ones(len(x)), steps=0)
    assert torch.equal(images, adversarial) and torch.equal(t, torch.ones(2))


@pytest.mark.parametrize("targeted", [False, True])
def test_the_attack_shrinks_without_losing_success(
    targeted: bool, tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    common = dict(steps=60, batch_size=32, lr=0.1 if targeted else 0.05, guard=None, progress=False, targeted=targeted)
    raw = ATGANAttack(tiny_target, generator=tiny_generator, search_steps=0, **common)
    shrunk = ATGANAttack(tiny_target, generator=tiny_generator, search_steps=8, **common)
    n = 300
    z = tiny_generator.sample_z(n, generator=torch.Generator().manual_seed(4))
    sources = (torch.arange(n) % 9) + 1  # never 0, the target of the targeted case
    target = 0 if targeted else None
    with torch.no_grad():
        a, reference = raw.generate(sources, target=target, z=z, with_reference=True)
        b = shrunk.generate(sources, target=target, z=z)
        predicted_a, predicted_b = tiny_target(a).argmax(1), tiny_target(b).argmax(1)
    fooled_a = predicted_a == 0 if targeted else predicted_a != sources
    fooled_b = predicted_b == 0 if targeted else predicted_b != sources
    assert fooled_a.float().mean() > 0.5  # the fit works, so the comparison means something
    assert torch.equal(fooled_a, fooled_b)  # the same examples succeed
    l2_a = (a - reference).flatten(1).norm(dim=1)[fooled_a].mean()
    l2_b = (b - reference).flatten(1).norm(dim=1)[fooled_b].mean()
    assert l2_b < 0.9 * l2_a, (l2_a, l2_b)
    assert torch.equal(a[~fooled_a], b[~fooled_b])  # failures come back unshrunk

"""atgan_plugin.attack.fit and .objective: the stage-2 fine-tuning of G_orig into G_attack, one setting."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import FitResult, fit_attack_generator, sample_sources
from atgan_plugin.attack.losses import adversarial_loss, feature_distance
from atgan_plugin.attack.objective import GuardView, guard_views, logits_and_features, render_reference, transfer_loss
from atgan_plugin.imaging import to_bounds

CONFIG = TransferConfig(steps=12, batch_size=16, lr=0.05)


def parameters_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.fixture
def fitted(tiny_generator: nn.Module, tiny_target: nn.Module) -> tuple[FitResult, dict[str, Any]]:
    before = {
        "params": parameters_of(tiny_generator),
        "flags": [p.requires_grad for p in tiny_generator.parameters()],
        "training": tiny_generator.training,
    }
    return fit_attack_generator(tiny_generator, tiny_target, config=CONFIG, progress=False), before


def test_fit_returns_a_new_frozen_generator(
    fitted: tuple[FitResult, dict[str, Any]], tiny_generator: nn.Module
) -> None:
    result, _ = fitted
    assert result.generator is not tiny_generator
    assert result.target is None and result.config == CONFIG
    assert not result.generator.training
    for p in result.generator.parameters():
        assert not p.requires_grad and p.grad is None
    changed = [
        n
        for n, p in result.generator.named_parameters()
        if not torch.equal(p, dict(tiny_generator.named_parameters())[n])
    ]
    assert changed  # it was fine-tuned


def test_g_orig_is_untouched(fitted: tuple[FitResult, dict[str, Any]], tiny_generator: nn.Module) -> None:
    _, before = fitted
    for name, p in tiny_generator.named_parameters():
        assert torch.equal(p, before["params"][name]) and p.grad is None
    assert [p.requires_grad for p in tiny_generator.parameters()] == before["flags"]
    assert tiny_generator.training == before["training"]


def test_history_every_ten_steps_and_at_the_end(fitted: tuple[FitResult, dict[str, Any]]) -> None:
    result, _ = fitted
    assert [h["step"] for h in result.history] == [10, 12]
    for record in result.history:
        assert set(record) == {"step", "loss", "l_adv", "l_dist", "success", "l2", "lr"}  # no guard given
        assert 0 <= record["success"] <= 1 and record["l2"] >= 0
        assert record["loss"] == pytest.approx(
            CONFIG.alpha * record["l_adv"] + CONFIG.beta * record["l_dist"], rel=1e-5
        )
    summary = result.summary()
    assert summary["final"] == result.history[-1] and summary["config"]["steps"] == 12 and summary["target"] is None


def test_classifier_receives_no_gradients(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    model = copy.deepcopy(tiny_target)
    assert all(p.requires_grad for p in model.parameters())
    fit_attack_generator(tiny_generator, model, config=TransferConfig(steps=2, batch_size=8), progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_a_plain_function_is_a_classifier(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    result = fit_attack_generator(
        tiny_generator, lambda x: tiny_target(x), config=TransferConfig(steps=2, batch_size=8), progress=False
    )
    assert result.history[-1]["step"] == 2


@pytest.mark.parametrize("target", [None, 6])
def test_fit_is_reproducible_with_its_seed(
    target: int | None, tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    def fit(seed: int) -> dict[str, torch.Tensor]:
        config = TransferConfig(steps=3, batch_size=8, lr=0.05, seed=seed)
        return parameters_of(
            fit_attack_generator(tiny_generator, tiny_target, target=target, config=config, progress=False).generator
        )

    a, b, c = fit(0), fit(0), fit(1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_targeted_fit_never_uses_the_target_as_source() -> None:
    sources = sample_sources(9000, 10, 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(sources, minlength=10)
    assert counts[4] == 0
    # Uniform over the nine other classes: 1000 each, within six standard deviations.
    others = torch.cat([counts[:4], counts[5:]]).float()
    assert (others - 1000).abs().max() < 6 * (9000 * (1 / 9) * (8 / 9)) ** 0.5


def test_untargeted_sources_cover_every_class() -> None:
    counts = torch.bincount(sample_sources(5000, 10, None, torch.Generator().manual_seed(0)), minlength=10)
    assert (counts > 400).all()


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-0.5, 0.5)])
def test_to_bounds_maps_the_unit_interval(bounds: tuple[float, float]) -> None:
    images = torch.tensor([0.0, 0.25, 1.0])
    low, high = bounds
    mapped = to_bounds(images, bounds)
    assert mapped[0].item() == low and mapped[-1].item() == high
    assert mapped[1].item() == pytest.approx(low + 0.25 * (high - low))


def _guard_agreement(generator: nn.Module, guard: nn.Module, n: int = 1000) -> float:
    """How often ``guard`` gives the source class to ``generator``'s images on fixed ``(z, y_s)``."""
    rng = torch.Generator().manual_seed(123)
    z, y_s = generator.sample_z(n, generator=rng), torch.randint(10, (n,), generator=rng)
    with torch.no_grad():
        return (guard(generator(z, y_s)).argmax(1) == y_s).float().mean().item()


def test_the_guard_keeps_the_source_class_for_the_guard(
    tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module
) -> None:
    config = TransferConfig(steps=60, batch_size=32, lr=0.05, kappa=1.0)
    unguarded = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    guarded = fit_attack_generator(tiny_generator, tiny_target, config=config, guard=tiny_guard, progress=False)
    original = _guard_agreement(tiny_generator, tiny_guard)
    assert original > 0.5  # the guard recognises G_orig's images
    # Without the guard the fit erases much of the class; with it, far less.
    kept, erased = _guard_agreement(guarded.generator, tiny_guard), _guard_agreement(unguarded.generator, tiny_guard)
    assert kept > erased + 0.1, f"guard agreement: G_orig {original:.3f}, guarded {kept:.3f}, unguarded {erased:.3f}"
    assert guarded.history[-1]["success"] > 0.5 and "l_guard" in guarded.history[-1]
    record = guarded.history[-1]
    assert record["loss"] == pytest.approx(
        config.alpha * record["l_adv"] + config.beta * record["l_dist"] + config.gamma * record["l_guard"], rel=1e-4
    )


def test_the_guard_is_only_read(tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module) -> None:
    guard = copy.deepcopy(tiny_guard).train()
    before = parameters_of(guard)
    fit_attack_generator(
        tiny_generator, tiny_target, config=TransferConfig(steps=3, batch_size=8), guard=guard, progress=False
    )
    assert guard.training and all(m.training for m in guard.modules())
    for name, p in guard.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None and p.requires_grad


def test_gamma_zero_turns_the_guard_off(
    tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module
) -> None:
    config = TransferConfig(steps=3, batch_size=8, gamma=0.0)
    with_guard = fit_attack_generator(tiny_generator, tiny_target, config=config, guard=tiny_guard, progress=False)
    without = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    a, b = parameters_of(with_guard.generator), parameters_of(without.generator)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_each_of_several_guards_weighs_gamma(
    tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module
) -> None:
    # Two guards sum their L_guard terms: the same guard twice is one guard at twice γ, step for step.
    config = TransferConfig(steps=5, batch_size=16, lr=0.05, kappa=1.0, gamma=3.0, feature=0.0)
    twice = fit_attack_generator(
        tiny_generator, tiny_target, config=config, guard=[tiny_guard, tiny_guard], progress=False
    )
    doubled = fit_attack_generator(
        tiny_generator, tiny_target, config=replace(config, gamma=6.0), guard=tiny_guard, progress=False
    )
    single = fit_attack_generator(tiny_generator, tiny_target, config=config, guard=tiny_guard, progress=False)
    a, b, c = (parameters_of(fit.generator) for fit in (twice, doubled, single))
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert not all(torch.allclose(a[n], c[n], atol=1e-6) for n in a)  # the second guard does pull
    # The record holds the guards' summed L_guard (γ apart), so that loss = α·L_adv + β·L_dist + γ·L_guard still holds.
    assert twice.history[-1]["l_guard"] == pytest.approx(2 * doubled.history[-1]["l_guard"], rel=1e-4)


def test_a_guard_of_other_classes_is_refused(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    guard = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    with pytest.raises(ValueError, match="guard returns logits of shape"):
        fit_attack_generator(
            tiny_generator, tiny_target, config=TransferConfig(steps=1, batch_size=4), guard=guard, progress=False
        )


def test_the_untargeted_pull_spreads_with_guards_and_is_the_papers_without() -> None:
    g = torch.Generator().manual_seed(2)
    images, reference, rho = torch.rand(3, 8, 1, 4, 4, generator=g)
    logits, sources = torch.randn(8, 10, generator=g) * 3, torch.randint(10, (8,), generator=g)
    guards = [GuardView(*torch.randn(4, 8, 10, generator=g))]
    config = TransferConfig()
    for targeted in (False, True):
        labels = (sources + 1) % 10 if targeted else sources
        args = (images, reference, logits, sources, labels, rho)
        _, plain = transfer_loss(*args, targeted=targeted, config=config)
        _, guarded = transfer_loss(*args, targeted=targeted, config=config, guards=guards)
        paper = adversarial_loss(logits, labels, targeted=targeted, kappa=config.kappa)
        assert torch.equal(plain["l_adv"], paper)
        spread = adversarial_loss(logits, labels, targeted=targeted, kappa=config.kappa, spread=True)
        assert torch.equal(guarded["l_adv"], spread)
        assert torch.equal(spread, paper) == targeted  # only an untargeted pull spreads


def test_the_feature_term_holds_the_guards_features(
    tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module
) -> None:
    # Same fit with and without L_feature: with it, G_attack's images move less in the guard's features.
    config = TransferConfig(steps=40, batch_size=32, lr=0.05, kappa=1.0, gamma=3.0, feature=8.0)
    held = fit_attack_generator(tiny_generator, tiny_target, config=config, guard=tiny_guard, progress=False)
    free = fit_attack_generator(
        tiny_generator, tiny_target, config=replace(config, feature=0.0), guard=tiny_guard, progress=False
    )
    assert "l_feature" in held.history[-1] and "l_feature" not in free.history[-1]
    record = held.history[-1]
    assert record["loss"] == pytest.approx(
        config.alpha * record["l_adv"]
        + config.beta * record["l_dist"]
        + config.gamma * record["l_guard"]
        + config.feature * record["l_feature"],
        rel=1e-4,
    )
    z = tiny_generator.sample_z(256, generator=torch.Generator().manual_seed(9))
    y = torch.arange(256) % 10
    with torch.no_grad():
        reference = tiny_generator(z, y)
        reference_features = logits_and_features(tiny_guard, reference)[1]
        moved = {
            name: feature_distance(logits_and_features(tiny_guard, fit.generator(z, y))[1], reference_features)
            for name, fit in (("held", held), ("free", free))
        }
    assert moved["held"].mean() < 0.8 * moved["free"].mean(), {k: round(v.mean().item(), 4) for k, v in moved.items()}


def test_the_same_guard_twice_doubles_the_feature_term(
    tiny_generator: nn.Module, tiny_target: nn.Module, tiny_guard: nn.Module
) -> None:
    config = TransferConfig(steps=4, batch_size=16, lr=0.05, kappa=1.0, gamma=3.0, feature=2.0)
    twice = fit_attack_generator(tiny_generator, tiny_target, config=config, guard=[tiny_guard] * 2, progress=False)
    doubled = fit_attack_generator(
        tiny_generator, tiny_target, config=replace(config, gamma=6.0, feature=4.0), guard=tiny_guard, progress=False
    )
    a, b = parameters_of(twice.generator), parameters_of(doubled.generator)
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_a_guard_without_a_linear_layer_gives_its_logits_as_features() -> None:
    guard = nn.Sequential(nn.Conv2d(1, 10, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # no nn.Linear
    images, reference = torch.rand(2, 5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    images.requires_grad_(True)

    def view_of(g: nn.Module) -> GuardView:
        rendered = render_reference(
            lambda z, y: reference, [g], torch.zeros(5, 2), torch.zeros(5), num_classes=10, precision="fp32"
        )
        return guard_views([g], images, rendered)[0]

    view = view_of(guard)
    assert torch.equal(view.features, view.logits) and torch.equal(view.reference_features, view.reference_logits)
    assert view.features.requires_grad and not view.reference_features.requires_grad
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 7), nn.ReLU(), nn.Linear(7, 10))
    view = view_of(linear)
    assert view.features.shape == (5, 7)  # the input of the last linear layer
    assert not linear[-1]._forward_hooks  # the hook is gone after use

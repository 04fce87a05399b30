"""atgan_plugin.attack.atgan.ATGANAttack: one class, a Foolbox 3 attack and an AdverTorch attack.

Most tests use the small class-mean generator from conftest (a fit takes a fraction of a second)
and the tiny trained Model D; the shipped AC-WGAN_GP generator is used where the claim is about
a real generator, and those tests skip themselves until it is shipped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import eagerpy as ep
import foolbox as fb
import pytest
import torch
from torch import nn

import atgan_plugin
from atgan_plugin import ATGANAttack
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.checkpoints import read_checkpoint_kind
from atgan_plugin.data import TensorDataset

# Small fits: a handful of Adam steps with a large learning rate on the class-mean generator, the realistic
# preset otherwise (guards, schedule, pool, shrink), at a fixed length (stretch 0: these tests read the steps
# run; tests/test_fit_parts.py covers the lengthening).
FAST: dict[str, Any] = dict(config=TransferConfig.realistic(steps=5, batch_size=16, lr=0.05, stretch=0), progress=False)
# Enough for the class-mean generator to fool the tiny target almost always (measured: untargeted
# ~0.93; targeted 0.93-1.0 for the targets used below).
STRONG: dict[str, Any] = dict(
    config=TransferConfig.realistic(steps=40, batch_size=32, lr=0.05, stretch=0), progress=False
)
TARGETED: dict[str, Any] = dict(
    config=TransferConfig.realistic(steps=120, batch_size=32, lr=0.1, stretch=0), progress=False
)


class Rescaled(nn.Module):
    """``model`` for inputs in ``[low, high]`` instead of [0, 1]."""

    def __init__(self, model: nn.Module, low: float, high: float):
        super().__init__()
        self.model, self.low, self.high = model, low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.low) / (self.high - self.low))


@pytest.fixture
def batch(fashion_test: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return fashion_test.images[:12].clone(), fashion_test.labels[:12].clone()


@pytest.fixture
def fmodel(tiny_target: nn.Module) -> fb.PyTorchModel:
    return fb.PyTorchModel(tiny_target, bounds=(0, 1), device="cpu")


def predict(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def fresh_samples(generator: nn.Module, n: int, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return torch.arange(n) % generator.num_classes, generator.sample_z(n, generator=rng)


# ------------------------------------------------------------------------------------------------
# What the class is.


def test_is_a_foolbox_and_an_advertorch_attack(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    # advertorch is imported only after atgan_plugin, whose shim makes it importable on current torch.
    import advertorch.attacks
    from advertorch.attacks.base import LabelMixin

    for attack in (ATGANAttack(generator=tiny_generator), ATGANAttack(tiny_target, generator=tiny_generator)):
        assert isinstance(attack, fb.attacks.base.Attack)
        assert isinstance(attack, fb.attacks.base.MinimizationAttack)
        assert isinstance(attack, advertorch.attacks.Attack)
        assert isinstance(attack, LabelMixin)
    assert atgan_plugin.ATGANAttack is ATGANAttack


def test_repr_tells_the_configuration(tiny_generator: nn.Module) -> None:
    config = TransferConfig.realistic(steps=7, kappa=2.5)
    text = repr(ATGANAttack(generator=tiny_generator, config=config, latent="invert", targeted=True))
    rho_l0 = f"rho_l0={config.rho_l0!r}"  # a fraction of the pixels
    for part in ("ATGANAttack(", "steps=7", "kappa=2.5", "latent='invert'", "targeted=True", rho_l0, "seed=0"):
        assert part in text


def test_distance_defaults_to_l2(tiny_generator: nn.Module) -> None:
    assert ATGANAttack(generator=tiny_generator).distance is fb.distances.l2
    assert ATGANAttack(generator=tiny_generator, distance=fb.distances.linf).distance is fb.distances.linf


# ------------------------------------------------------------------------------------------------
# Foolbox face.


@pytest.mark.parametrize("kind", ["torch", "eagerpy"])
def test_foolbox_returns_the_input_type(
    kind: str,
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fmodel: fb.PyTorchModel,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    inputs, labels = (x, y) if kind == "torch" else (ep.astensor(x), ep.astensor(y))
    raw, clipped, success = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, inputs, labels, epsilons=None)
    for output in (raw, clipped, success):
        assert type(output) is type(inputs)
    raw_t, clipped_t, success_t = (o if kind == "torch" else o.raw for o in (raw, clipped, success))
    assert raw_t.shape == x.shape and raw_t.dtype == x.dtype
    assert torch.equal(raw_t, clipped_t)
    assert 0 <= raw_t.min() and raw_t.max() <= 1
    assert success_t.shape == (12,) and success_t.dtype == torch.bool
    assert torch.equal(success_t, predict(tiny_target, raw_t) != y)


def test_foolbox_labels_and_misclassification_agree(
    tiny_generator: nn.Module, fmodel: fb.PyTorchModel, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    a, _, _ = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x, y, epsilons=None)
    b, _, _ = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x, fb.criteria.Misclassification(y), epsilons=None)
    assert torch.equal(a, b)


def test_foolbox_epsilon_list(
    tiny_generator: nn.Module, tiny_target: nn.Module, fmodel: fb.PyTorchModel, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    epsilons = [None, 0.0, 1.0, 3.0]
    raws, clipped, success = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x, y, epsilons=epsilons)
    assert isinstance(raws, list) and isinstance(clipped, list)
    assert len(raws) == len(clipped) == len(epsilons)
    assert success.shape == (len(epsilons), len(x))
    for raw in raws:
        assert torch.equal(raw, raws[0])  # the attack does not depend on ε
    assert torch.equal(clipped[0], raws[0])  # ε = None: unbounded
    assert torch.equal(clipped[1], x)  # ε = 0: nothing may change
    for eps, xc in zip(epsilons[2:], clipped[2:], strict=True):
        assert (xc - x).flatten(1).norm(dim=1).max().item() <= eps + 1e-4  # projected onto the ℓ2 ball
    assert (raws[0] - x).flatten(1).norm(dim=1).min().item() > 1.0  # ... which really did project
    for k, xc in enumerate(clipped):
        assert torch.equal(success[k], predict(tiny_target, xc) != y)


def test_foolbox_single_epsilon_is_not_a_list(
    tiny_generator: nn.Module, fmodel: fb.PyTorchModel, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    raw, clipped, success = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x, y, epsilons=2.0)
    assert isinstance(raw, torch.Tensor) and isinstance(clipped, torch.Tensor)
    assert success.shape == (len(x),)
    assert (clipped - x).flatten(1).norm(dim=1).max().item() <= 2.0 + 1e-4


def test_foolbox_targeted(
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fmodel: fb.PyTorchModel,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, _ = batch
    targets = torch.tensor([2] * 6 + [7] * 6)
    sources = (targets + 1 + torch.arange(12) % 8) % 10  # never the target
    criterion = fb.criteria.TargetedMisclassification(targets)
    attack = ATGANAttack(generator=tiny_generator, **TARGETED)
    raw, _, success = attack(fmodel, x, criterion, epsilons=None, source_labels=sources)
    assert sorted(fit_calls) == [2, 7]  # one fit per target
    assert torch.equal(success, predict(tiny_target, raw) == targets)
    # Each group was generated by its own target's G_attack: both reach their target.
    assert success[:6].float().mean() >= 0.75 and success[6:].float().mean() >= 0.75
    # Without source_labels the sources are the model's predictions; it runs and reuses the fits.
    attack(fmodel, x, criterion, epsilons=None)
    assert sorted(fit_calls) == [2, 7]


# ------------------------------------------------------------------------------------------------
# AdverTorch face.


def test_perturb_keeps_shape_dtype_device_and_bounds(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> None:
    model = copy.deepcopy(tiny_target).to(device)
    x, y = (t.to(device) for t in batch)
    adversary = ATGANAttack(model, generator=tiny_generator, **FAST)
    adv = adversary.perturb(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert 0 <= adv.min() and adv.max() <= 1
    assert not adv.requires_grad


def test_perturb_returns_the_inputs_dtype(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    adv = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x.double(), y)
    assert adv.dtype == torch.float64


def test_y_none_means_the_models_predictions(
    tiny_generator: nn.Module, tiny_target: nn.Module, fashion_test: TensorDataset
) -> None:
    # Half the inputs are misclassified by the target, so predictions and labels differ.
    wrong = (predict(tiny_target, fashion_test.images) != fashion_test.labels).nonzero().squeeze(1)[:6]
    x = torch.cat([fashion_test.images[:6], fashion_test.images[wrong]])
    y = torch.cat([fashion_test.labels[:6], fashion_test.labels[wrong]])
    predicted = predict(tiny_target, x)
    with_none = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x)
    with_predictions = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x, predicted)
    with_labels = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x, y)
    assert torch.equal(with_none, with_predictions)
    assert not torch.equal(with_none, with_labels)


def test_call_is_perturb(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    called = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)(x, y)
    perturbed = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x, y)
    assert torch.equal(called, perturbed)


def test_advertorch_targeted(
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, _ = batch
    targets = torch.tensor([4] * 6 + [1] * 6)
    sources = (targets + 1 + torch.arange(12) % 8) % 10
    adversary = ATGANAttack(tiny_target, generator=tiny_generator, targeted=True, **TARGETED)
    adv = adversary.perturb(x, targets, source_labels=sources)
    assert sorted(fit_calls) == [1, 4]
    hit = predict(tiny_target, adv) == targets
    assert hit[:6].float().mean() >= 0.75 and hit[6:].float().mean() >= 0.75


@pytest.mark.parametrize("face", ["advertorch", "foolbox"])
@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 255.0)])
def test_other_input_ranges(
    face: str,
    low: float,
    high: float,
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fmodel: fb.PyTorchModel,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # A model for [low, high] that is the tiny target after rescaling: the attack must give the
    # same images, rescaled, as for the [0, 1] model.
    x, y = batch
    scaled_model = Rescaled(tiny_target, low, high)
    scaled_x = low + (high - low) * x
    if face == "advertorch":
        reference = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x, y)
        out = ATGANAttack(scaled_model, generator=tiny_generator, clip_min=low, clip_max=high, **FAST).perturb(
            scaled_x, y
        )
    else:
        reference, _, _ = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x, y, epsilons=None)
        scaled_fmodel = fb.PyTorchModel(scaled_model, bounds=(low, high), device="cpu")
        out, _, _ = ATGANAttack(generator=tiny_generator, **FAST)(scaled_fmodel, scaled_x, y, epsilons=None)
    assert low <= out.min() and out.max() <= high
    assert out.max() > 1.0 or out.min() < 0.0  # really in the other range
    assert torch.allclose((out - low) / (high - low), reference, atol=1e-5)


def test_attack_whole_dataset(
    tiny_generator: nn.Module, tiny_target: nn.Module, fit_calls: list[int | None], fashion_test: TensorDataset
) -> None:
    from advertorch.attacks.utils import attack_whole_dataset

    data = torch.utils.data.TensorDataset(fashion_test.images[:40], fashion_test.labels[:40])
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    adversary = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    adv, label, pred, advpred = attack_whole_dataset(adversary, loader, device="cpu")
    assert adv.shape == (40, 1, 28, 28)
    assert torch.equal(label, fashion_test.labels[:40])
    assert torch.equal(pred, predict(tiny_target, fashion_test.images[:40]))
    assert torch.equal(advpred, predict(tiny_target, adv))
    assert fit_calls == [None]  # fitted once for three batches


def test_both_faces_with_the_acwgan_gp_adapter(
    random_generator: nn.Module,
    tiny_target: nn.Module,
    fmodel: fb.PyTorchModel,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    # Our own adapter (an untrained AC-WGAN_GP generator) behind both faces.
    x, y = batch
    settings = dict(steps=3, batch_size=8, progress=False)
    adv = ATGANAttack(tiny_target, generator=random_generator, **settings).perturb(x, y)
    raw, clipped, success = ATGANAttack(generator=random_generator, **settings)(fmodel, x, y, epsilons=[None, 1.0])
    assert torch.equal(adv, raw[0])  # same seed, same settings, same model: the faces agree
    for images in (adv, clipped[1]):
        assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1
    assert success.shape == (2, 12)


# ------------------------------------------------------------------------------------------------
# Does it work: success on fresh samples.


def success_and_distance(
    attack: ATGANAttack, model: nn.Module, target: int | None = None, n: int = 500
) -> tuple[float, float, float]:
    """(success of G_attack, success of G_orig on the same (z, y_s), mean ℓ2 between them)."""
    sources, z = fresh_samples(attack.generator, n)
    adversarial, reference = attack.generate(sources, z=z, target=target, with_reference=True)
    fooled = (
        (lambda images: predict(model, images) != sources)
        if target is None
        else (lambda images: predict(model, images) == target)
    )
    distance = (adversarial - reference).flatten(1).norm(dim=1).mean().item()
    return fooled(adversarial).float().mean().item(), fooled(reference).float().mean().item(), distance


def test_fit_raises_success_on_fresh_samples(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **STRONG)
    attack.fit()
    success, baseline, l2 = success_and_distance(attack, tiny_target)
    assert baseline < 0.3  # the target recognises most of the generator's images
    assert success > baseline + 0.5
    assert l2 < 8.0
    history = attack.fit().history
    assert history[-1]["step"] == STRONG["config"].steps and history[-1]["success"] > history[0]["success"]


def test_pretrained_generator_fit_raises_success(pretrained_generator: nn.Module, tiny_target: nn.Module) -> None:
    # A short fit (small batches, a larger step) of the paper's loss: the shipped generator's images are
    # recognised by the target at first, and fool it after. (Its guards slow a fit this short down; the
    # default fit's test is the slow one below.)
    attack = ATGANAttack(
        tiny_target, generator=pretrained_generator, guard=None, steps=30, batch_size=16, lr=3e-4, progress=False
    )
    attack.fit()
    success, baseline, _ = success_and_distance(attack, tiny_target)
    assert baseline < 0.4
    assert success > baseline + 0.3


@pytest.mark.slow
def test_pretrained_generator_fit_raises_success_and_stays_close(
    pretrained_generator: nn.Module, tiny_target: nn.Module
) -> None:
    # The one-line default: the realistic preset (the generator's guards, the schedule, the shrink).
    attack = ATGANAttack(tiny_target, generator=pretrained_generator, progress=False)
    attack.fit()
    success, baseline, l2 = success_and_distance(attack, tiny_target)
    assert success > max(baseline + 0.3, 0.6)
    assert l2 < 6.0


# ------------------------------------------------------------------------------------------------
# generate().


def test_generate_returns_g_attack_and_g_orig_on_the_same_latents(
    tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    attack.fit()
    sources, z = fresh_samples(tiny_generator, 20)
    adversarial, reference = attack.generate(sources, z=z, with_reference=True)
    with torch.no_grad():
        assert torch.equal(reference, tiny_generator(z, sources))
    assert adversarial.shape == (20, 1, 28, 28) and 0 <= adversarial.min() and adversarial.max() <= 1
    assert not torch.equal(adversarial, reference)  # the fit changed the generator
    assert torch.equal(attack.generate(sources, z=z), adversarial)


def test_generate_fits_on_first_use(
    tiny_generator: nn.Module, tiny_target: nn.Module, fit_calls: list[int | None]
) -> None:
    # generate() runs under no_grad; the fit it triggers must still be able to take gradients.
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    images = attack.generate(torch.arange(10), target=3)
    assert images.shape == (10, 1, 28, 28)
    assert fit_calls == [3]


# ------------------------------------------------------------------------------------------------
# Caching, saving and loading fits.


def test_fit_is_cached_per_model_and_target(
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    attack = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    first = attack.fit()
    assert attack.fit() is first
    attack.perturb(x, y)
    attack(x, y)
    assert fit_calls == [None]
    assert attack.fit(target=3) is not first
    assert fit_calls == [None, 3]
    twin = copy.deepcopy(tiny_target)  # equal weights, but another model
    assert attack.fit(twin) is not first
    assert fit_calls == [None, 3, None]


def _add_in_place(model: nn.Module) -> None:
    with torch.no_grad():
        next(model.parameters()).add_(0.01)


def _optimiser_step(model: nn.Module) -> None:
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    optimiser.step()


def _load_state_dict(model: nn.Module) -> None:
    state = {k: v + 0.01 for k, v in model.state_dict().items()}
    model.load_state_dict(state)


@pytest.mark.parametrize("face", ["advertorch", "foolbox"])
@pytest.mark.parametrize(
    "change", [_add_in_place, _optimiser_step, _load_state_dict], ids=["add_", "optimizer", "load_state_dict"]
)
def test_cache_is_invalidated_when_the_weights_change_in_place(
    face: str,
    change: Callable[[nn.Module], None],
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
) -> None:
    module = copy.deepcopy(tiny_target)
    model = module if face == "advertorch" else fb.PyTorchModel(module, bounds=(0, 1), device="cpu")
    attack = ATGANAttack(generator=tiny_generator, **FAST)
    first = attack.fit(model)
    change(module)
    second = attack.fit(model)
    assert second is not first
    assert attack.fit(model) is second  # cached again until the next change
    assert fit_calls == [None, None]


@pytest.mark.parametrize("target", [None, 3])
def test_save_fit_and_load_fit_round_trip(
    tmp_path: Path,
    target: int | None,
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    path = tmp_path / "fit.safetensors"
    original = ATGANAttack(
        tiny_target, generator=tiny_generator, config=replace(FAST["config"], kappa=3.0), progress=False
    )
    original.save_fit(path, target=target)
    assert read_checkpoint_kind(path) == "atgan.fitted_generator"

    restored = ATGANAttack(tiny_target, generator=copy.deepcopy(tiny_generator), **FAST)  # default κ, 2
    fit = restored.load_fit(path)
    assert fit.target == target
    assert fit.config.kappa == 3.0
    assert restored.fit(target=target) is fit
    sources, z = fresh_samples(tiny_generator, 16)
    if target is not None:
        sources = torch.where(sources == target, (sources + 1) % 10, sources)
    assert torch.equal(restored.generate(sources, z=z, target=target), original.generate(sources, z=z, target=target))
    if target is None:
        assert torch.equal(restored.perturb(x, y), original.perturb(x, y))
    assert fit_calls == [target]  # the restored attack never fitted


# ------------------------------------------------------------------------------------------------
# Seeds and latent modes.


@pytest.mark.parametrize("face", ["advertorch", "foolbox"])
def test_seed_makes_results_reproducible(
    face: str,
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fmodel: fb.PyTorchModel,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch

    def run(seed: int) -> torch.Tensor:
        if face == "advertorch":
            return ATGANAttack(tiny_target, generator=tiny_generator, seed=seed, **FAST).perturb(x, y)
        raw, _, _ = ATGANAttack(generator=tiny_generator, seed=seed, **FAST)(fmodel, x, y, epsilons=None)
        return raw  # type: ignore[no-any-return]

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_random_latents_are_fresh_on_every_call(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    adversary = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    assert not torch.equal(adversary.perturb(x, y), adversary.perturb(x, y))


def _mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).flatten(1).norm(dim=1).mean().item()


# (generator, inversion steps, required ratio of mean ℓ2 to the inputs, invert / random). The
# class-mean generator can only move 8 latent directions (measured ratio ~0.92); a trained GAN
# reconstructs far better.
INVERT_CASES = [("tiny_generator", 200, 0.97), ("pretrained_generator", 60, 0.8)]


@pytest.mark.parametrize("which, invert_steps, ratio", INVERT_CASES, ids=[c[0] for c in INVERT_CASES])
def test_invert_mode_stays_closer_to_the_inputs(
    request: pytest.FixtureRequest,
    which: str,
    invert_steps: int,
    ratio: float,
    tiny_target: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    generator = request.getfixturevalue(which)
    x, y = batch
    common = dict(steps=5, batch_size=16, progress=False)
    random_mode = ATGANAttack(tiny_target, generator=generator, **common).perturb(x, y)
    invert_mode = ATGANAttack(
        tiny_target, generator=generator, latent="invert", invert_steps=invert_steps, **common
    ).perturb(x, y)
    assert _mean_distance(invert_mode, x) < ratio * _mean_distance(random_mode, x)


def test_the_defaults_are_the_realistic_preset_and_the_paper_is_one_word(
    tiny_generator: nn.Module, tiny_guard: nn.Module
) -> None:
    for guard in ("auto", tiny_guard, [tiny_guard]):
        assert ATGANAttack(generator=tiny_generator, guard=guard, progress=False).config == TransferConfig.realistic()
    assert ATGANAttack(generator=tiny_generator, config="paper", progress=False).config == TransferConfig.paper()
    mine = TransferConfig.realistic(steps=7, alpha=2.5)
    assert ATGANAttack(generator=tiny_generator, config=mine, seed=3, progress=False).config == replace(mine, seed=3)
    # No default changes with another argument: guard=None with a config keeps that config.
    unguarded = ATGANAttack(generator=tiny_generator, config="realistic", guard=None, progress=False).config
    assert unguarded == TransferConfig.realistic()
    with pytest.raises(
        ValueError, match=r"config must be a TransferConfig or one of the presets \['paper', 'realistic'\]"
    ):
        ATGANAttack(generator=tiny_generator, config="fast")


# The keywords before presets: each still works for one release, with a warning that says the new spelling.
# fmt: off
OLD_KEYWORDS: list[tuple[dict[str, Any], str, Callable[[ATGANAttack], Any], Any]] = [
    ({"steps": 7}, r"config=TransferConfig.realistic\(steps=7\)", lambda a: a.config.steps, 7),
    ({"alpha": 2.5}, r"config=TransferConfig.realistic\(alpha=2.5\)", lambda a: a.config.alpha, 2.5),
    ({"search_steps": 0}, r"config=TransferConfig.realistic\(search_steps=0\)", lambda a: a.search_steps, 0),
    ({"precision": "bf16"}, r"options=AttackOptions\(precision='bf16'\)", lambda a: a.options.precision, "bf16"),
    ({"joint_batch_size": None}, r"options=AttackOptions\(joint_batch_size=None\)", lambda a: a.options.joint_batch_size, None),
    ({"guard_cache_dir": "x"}, r"options=AttackOptions\(guard_cache_dir='x'\)", lambda a: a.options.guard_cache_dir, "x"),
    ({"guard": None}, r"write config='paper' for the paper's attack", lambda a: (a.config.alpha, a.config.steps, a.search_steps), (2.0, 1000, TransferConfig.realistic().search_steps)),
    ({"guard": None, "search_steps": 0, "steps": 1000}, r"search_steps=0", lambda a: a.config, TransferConfig.paper()),
]
# fmt: on


@pytest.mark.parametrize(("keywords", "message", "read", "expected"), OLD_KEYWORDS)
def test_the_old_keywords_still_work_with_a_warning(
    tiny_generator: nn.Module, keywords: dict[str, Any], message: str, read: Callable[[ATGANAttack], Any], expected: Any
) -> None:
    with pytest.warns(DeprecationWarning, match=message):
        attack = ATGANAttack(generator=tiny_generator, progress=False, **keywords)
    assert read(attack) == expected

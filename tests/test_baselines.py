"""FGSM, PGD and R+FGSM through the toolkits: our wrappers give exactly what Foolbox and AdverTorch give.

Each case runs our wrapper and the toolkit called directly on the same images (the tiny target,
64 test images), with the same seed, and asks for equal outputs; R+FGSM, which neither toolkit
ships, must equal the composition written out by hand and stay within ε.
"""

from __future__ import annotations

import copy

import foolbox as fb
import pytest
import torch
from torch import nn

from atgan_plugin.attack._advertorch_compat import advertorch
from atgan_plugin.data import TensorDataset
from atgan_plugin.paper import baselines

EPS, STEP, STEPS = 0.1, 0.01, 20  # Fashion-MNIST, appendix Table 6


@pytest.fixture(scope="module")
def model(tiny_target: nn.Module) -> nn.Module:
    """A private copy: the direct toolkit calls below leave gradients in the model's parameters."""
    return copy.deepcopy(tiny_target).eval()


@pytest.fixture(scope="module")
def batch(fashion_test: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return fashion_test.images[:64], fashion_test.labels[:64]


def _foolbox(
    model: nn.Module, attack: fb.attacks.base.Attack, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    _, clipped, _ = attack(fb.PyTorchModel(model, bounds=(0, 1), device="cpu"), x, y, epsilons=eps)
    return clipped  # type: ignore[no-any-return]


# (name, our wrapper, the toolkit called directly); PGD's random start is drawn from seed 3 in both.
def _seeded(seed: int, run):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return run()


CASES = [
    (
        "fgsm-foolbox",
        lambda m, x, y: baselines.fgsm(m, x, y, epsilon=EPS, toolkit="foolbox"),
        lambda m, x, y: _foolbox(m, fb.attacks.FGSM(), x, y, EPS),
    ),
    (
        "fgsm-advertorch",
        lambda m, x, y: baselines.fgsm(m, x, y, epsilon=EPS, toolkit="advertorch"),
        lambda m, x, y: advertorch.attacks.GradientSignAttack(m, eps=EPS).perturb(x, y),
    ),
    (
        "pgd-foolbox",
        lambda m, x, y: baselines.pgd(m, x, y, epsilon=EPS, step_size=STEP, steps=STEPS, toolkit="foolbox", seed=3),
        lambda m, x, y: _seeded(3, lambda: _foolbox(m, fb.attacks.LinfPGD(abs_stepsize=STEP, steps=STEPS), x, y, EPS)),
    ),
    (
        "pgd-advertorch",
        lambda m, x, y: baselines.pgd(m, x, y, epsilon=EPS, step_size=STEP, steps=STEPS, toolkit="advertorch", seed=3),
        lambda m, x, y: _seeded(
            3, lambda: advertorch.attacks.LinfPGDAttack(m, eps=EPS, nb_iter=STEPS, eps_iter=STEP).perturb(x, y)
        ),
    ),
    (
        "rfgsm-advertorch",  # neither toolkit ships R+FGSM: the composition written out by hand
        lambda m, x, y: baselines.rfgsm(m, x, y, epsilon=0.2, alpha=0.1, toolkit="advertorch", seed=4),
        lambda m, x, y: advertorch.attacks.GradientSignAttack(m, eps=0.1).perturb(
            (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4)).sign()).clamp(0, 1), y
        ),
    ),
    (
        "rfgsm-foolbox",
        lambda m, x, y: baselines.rfgsm(m, x, y, epsilon=0.2, alpha=0.1, toolkit="foolbox", seed=4),
        lambda m, x, y: _foolbox(
            m,
            fb.attacks.FGSM(),
            (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4)).sign()).clamp(0, 1),
            y,
            0.1,
        ),
    ),
]


@pytest.mark.parametrize(("name", "ours", "direct"), CASES, ids=[case[0] for case in CASES])
def test_wrapper_equals_the_toolkit(name, ours, direct, model, batch) -> None:  # type: ignore[no-untyped-def]
    x, y = batch
    ours_out = ours(model, x, y)
    direct_out = direct(model, x, y)
    assert torch.equal(ours_out, direct_out), name
    bound = 0.2 if name.startswith("rfgsm") else EPS
    assert (ours_out - x).abs().max() <= bound + 1e-6  # the ℓ∞ budget holds (R+FGSM: α + (ε − α))
    assert ours_out.min() >= 0 and ours_out.max() <= 1
    with torch.no_grad():
        assert (model(ours_out).argmax(1) != y).float().mean() > (model(x).argmax(1) != y).float().mean()


def test_the_two_toolkits_agree(model, batch) -> None:  # type: ignore[no-untyped-def]
    x, y = batch
    fgsm = [baselines.fgsm(model, x, y, epsilon=EPS, toolkit=t) for t in baselines.TOOLKITS]
    assert torch.equal(fgsm[0], fgsm[1])
    # Without a random start PGD is deterministic; the toolkits then differ only by float rounding.
    pgd = [
        baselines.pgd(model, x, y, epsilon=EPS, step_size=STEP, steps=STEPS, random_start=False, toolkit=t)
        for t in baselines.TOOLKITS
    ]
    torch.testing.assert_close(pgd[0], pgd[1], atol=1e-6, rtol=0)


def test_baselines_leave_the_model_and_the_random_state_alone(tiny_target: nn.Module, batch) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(tiny_target).train()  # a caller's model in training mode
    model[3].eval()  # with one submodule in its own mode
    flags = [m.training for m in model.modules()]
    before = copy.deepcopy(model.state_dict())
    x, y = batch
    state = torch.random.get_rng_state()
    for name in baselines.BASELINES:
        for toolkit in baselines.TOOLKITS:
            baselines.run_baseline(name, model, x, y, toolkit=toolkit)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_run_baseline_uses_table_6(model, batch) -> None:  # type: ignore[no-untyped-def]
    x, y = batch
    s = baselines.SETTINGS["fashion-mnist"]
    assert (s.fgsm_epsilon, s.pgd_epsilon, s.pgd_step_size, s.pgd_steps, s.rfgsm_epsilon, s.rfgsm_alpha) == (
        0.1,
        0.1,
        0.01,
        20,
        0.2,
        0.1,
    )
    assert torch.equal(baselines.run_baseline("fgsm", model, x, y), baselines.fgsm(model, x, y, epsilon=0.1))
    assert torch.equal(
        baselines.run_baseline("pgd", model, x, y, seed=2),
        baselines.pgd(model, x, y, epsilon=0.1, step_size=0.01, steps=20, seed=2),
    )
    assert torch.equal(
        baselines.run_baseline("rfgsm", model, x, y, seed=2),
        baselines.rfgsm(model, x, y, epsilon=0.2, alpha=0.1, seed=2),
    )
    mnist = baselines.run_baseline("fgsm", model, x, y, dataset="mnist")
    assert (mnist - x).abs().max() > 0.29  # MNIST's ε = 0.3


ERRORS = [
    (lambda m, x, y: baselines.fgsm(m, x, y, epsilon=EPS, toolkit="cleverhans"), "unknown toolkit 'cleverhans'"),
    (lambda m, x, y: baselines.run_baseline("cw", m, x, y), "unknown baseline 'cw'"),
    (
        lambda m, x, y: baselines.run_baseline("fgsm", m, x, y, dataset="svhn"),
        "no baseline settings for dataset 'svhn'",
    ),
    (lambda m, x, y: baselines.run_baseline("rfgsm", m, x, y, dataset="cifar10"), "no R\\+FGSM setting for 'cifar10'"),
    (lambda m, x, y: baselines.rfgsm(m, x, y, epsilon=0.1, alpha=0.1), "0 <= alpha < epsilon"),
    (lambda m, x, y: baselines.pgd(m, x, y, epsilon=EPS, step_size=STEP, steps=0), "at least one step"),
    (lambda m, x, y: baselines.fgsm(m, x * 2, y, epsilon=EPS), "within bounds"),
    (lambda m, x, y: baselines.fgsm(m, x, y[:3], epsilon=EPS), "labels \\(N,\\)"),
]


@pytest.mark.parametrize(("call", "message"), ERRORS, ids=[e[1][:30] for e in ERRORS])
def test_errors_name_the_problem(call, message, model, batch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call(model, *batch)

"""The attack never changes the caller's model or generator.

The model comes in the hardest state to preserve: in train mode with one batch norm left in eval
mode (a mixed state), a frozen layer among trainable ones, and ``.grad`` tensors already on some
parameters. After every way of using the attack, its parameters, buffers (batch-norm running
statistics), ``requires_grad`` flags, per-submodule train/eval modes and existing gradients
must be exactly what they were. The same holds for the generator, which also arrives in train mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import foolbox as fb
import pytest
import torch
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.data import TensorDataset
from atgan_plugin.paper.evaluation import evaluate_attack, save_difference_grid


def _torchattacks(model: nn.Module, G: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> None:
    from atgan_plugin.torchattacks import ATGAN

    atk = ATGAN(model, generator=G, **FAST)
    if targeted:
        atk.set_mode_targeted_by_label(quiet=True)
    atk(x, TARGETS if targeted else y)


def _art(model: nn.Module, G: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> None:
    from art.estimators.classification import PyTorchClassifier

    from atgan_plugin.art import ATGAN

    estimator = PyTorchClassifier(
        model, nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0, 1)
    )
    ATGAN(estimator, generator=G, targeted=targeted, **FAST).generate(x.numpy(), (TARGETS if targeted else y).numpy())


FAST: dict[str, Any] = dict(steps=2, batch_size=8, progress=False)
TARGETS = torch.tensor([3, 7]).repeat(4)  # for the 8 inputs: two targets, two fits


def make_model() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),  # 0: frozen
            nn.BatchNorm2d(4),  # 1: training; would update its running statistics
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(4 * 28 * 28, 32),  # 5
            nn.BatchNorm1d(32),  # 6: left in eval mode inside a training model
            nn.ReLU(),
            nn.Linear(32, 10),  # 8
        )
        model.train()
        model[6].eval()
        model[0].requires_grad_(False)
        model[8].bias.requires_grad_(False)
        for module in (model[0], model[5]):
            module.weight.grad = torch.randn_like(module.weight)
    return model


def snapshot(module: nn.Module) -> dict[str, Any]:
    return {
        "parameters": {n: p.detach().clone() for n, p in module.named_parameters()},
        "buffers": {n: b.clone() for n, b in module.named_buffers()},
        "requires_grad": {n: p.requires_grad for n, p in module.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()},
        "modes": {n: m.training for n, m in module.named_modules()},
        "devices": {n: p.device for n, p in module.named_parameters()},
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for field in ("requires_grad", "modes", "devices"):
        assert after[field] == before[field], field
    for field in ("parameters", "buffers"):
        changed = [n for n, t in before[field].items() if not torch.equal(t, after[field][n])]
        assert changed == [], f"{field} changed: {changed}"
    changed = [
        n
        for n, g in before["grads"].items()
        if (g is None) != (after["grads"][n] is None) or (g is not None and not torch.equal(g, after["grads"][n]))
    ]
    assert changed == [], f".grad changed: {changed}"


def _fmodel(model: nn.Module) -> fb.PyTorchModel:
    if not model.training:
        return fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    with pytest.warns(UserWarning, match="training mode"):  # Foolbox warns; train mode is the point here
        return fb.PyTorchModel(model, bounds=(0, 1), device="cpu")


def _save_and_load_fit(model: nn.Module, G: nn.Module, x: torch.Tensor, y: torch.Tensor, tmp: Path) -> None:
    ATGANAttack(model, generator=G, **FAST).save_fit(tmp / "fit.safetensors")
    restored = ATGANAttack(model, generator=G, **FAST)
    restored.load_fit(tmp / "fit.safetensors")
    restored.perturb(x, y)


def _difference_grid(model: nn.Module, G: nn.Module, x: torch.Tensor, y: torch.Tensor, tmp: Path) -> None:
    attack = ATGANAttack(model, generator=G, **FAST)
    attack.fit()
    save_difference_grid(attack, model, tmp / "grid.png")


Use = Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor, Path], Any]
USES: dict[str, Use] = {
    "fit": lambda m, G, x, y, tmp: ATGANAttack(m, generator=G, **FAST).fit(),
    "fit targeted": lambda m, G, x, y, tmp: ATGANAttack(m, generator=G, **FAST).fit(target=3),
    "perturb": lambda m, G, x, y, tmp: ATGANAttack(m, generator=G, **FAST).perturb(x, y),
    "perturb y=None": lambda m, G, x, y, tmp: ATGANAttack(m, generator=G, **FAST)(x),
    "perturb targeted": lambda m, G, x, y, tmp: ATGANAttack(m, generator=G, targeted=True, **FAST).perturb(x, TARGETS),
    "perturb invert": lambda m, G, x, y, tmp: ATGANAttack(
        m, generator=G, latent="invert", invert_steps=5, **FAST
    ).perturb(x, y),
    "save and load fit": _save_and_load_fit,
    "evaluate_attack": lambda m, G, x, y, tmp: evaluate_attack(
        ATGANAttack(m, generator=G, **FAST), m, m, n=16, targets=[2], batch_size=8
    ),
    "difference grid": _difference_grid,
    "foolbox fit": lambda m, G, x, y, tmp: ATGANAttack(generator=G, **FAST).fit(_fmodel(m)),
    "foolbox": lambda m, G, x, y, tmp: ATGANAttack(generator=G, **FAST)(_fmodel(m), x, y, epsilons=None),
    "foolbox epsilons": lambda m, G, x, y, tmp: ATGANAttack(generator=G, **FAST)(
        _fmodel(m), x, y, epsilons=[None, 0.5, 2.0]
    ),
    "foolbox targeted": lambda m, G, x, y, tmp: ATGANAttack(generator=G, **FAST)(
        _fmodel(m), x, fb.criteria.TargetedMisclassification(TARGETS), epsilons=None
    ),
    "torchattacks": lambda m, G, x, y, tmp: _torchattacks(m, G, x, y, targeted=False),
    "torchattacks targeted": lambda m, G, x, y, tmp: _torchattacks(m, G, x, y, targeted=True),
    "art": lambda m, G, x, y, tmp: _art(m, G, x, y, targeted=False),
    "art targeted": lambda m, G, x, y, tmp: _art(m, G, x, y, targeted=True),
}


@pytest.mark.parametrize("use", list(USES.values()), ids=list(USES))
def test_model_is_never_mutated(
    use: Use, tiny_generator: nn.Module, fashion_test: TensorDataset, tmp_path: Path
) -> None:
    model = make_model()
    model_before = snapshot(model)
    x, y = fashion_test.images[:8], fashion_test.labels[:8]
    grad_enabled = torch.is_grad_enabled()
    use(model, tiny_generator, x, y, tmp_path)
    assert torch.is_grad_enabled() == grad_enabled
    assert_unchanged(model_before, snapshot(model))


@pytest.mark.parametrize(
    "use", [USES["fit"], USES["perturb invert"], USES["foolbox"]], ids=["fit", "perturb invert", "foolbox"]
)
def test_generator_is_never_mutated(
    use: Use, random_generator: nn.Module, tiny_target: nn.Module, fashion_test: TensorDataset, tmp_path: Path
) -> None:
    G = random_generator.train()  # batch norms in training mode: a forward pass would update them
    G.network.fc[0].requires_grad_(False)
    G.network.deconv[0].weight.grad = torch.randn_like(G.network.deconv[0].weight)
    before = snapshot(G)
    use(tiny_target, G, fashion_test.images[:8], fashion_test.labels[:8], tmp_path)
    assert_unchanged(before, snapshot(G))

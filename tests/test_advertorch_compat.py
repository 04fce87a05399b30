"""atgan_plugin.attack._advertorch_compat: AdverTorch 0.2.3 imports and works on current torch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from torch import nn

from atgan_plugin.attack._advertorch_compat import _zero_gradients, install_zero_gradients_shim

# advertorch itself is imported inside the tests, after atgan_plugin has installed the shim.

FRESH_INTERPRETER = """
import sys
try:
    import advertorch.attacks
    print("plain: ok")
except ImportError as error:
    print("plain: ImportError", error)
for name in [m for m in sys.modules if m.startswith("advertorch")]:
    del sys.modules[name]
import atgan_plugin
import advertorch.attacks
print("after atgan_plugin: ok")
"""


def test_advertorch_needs_the_shim_and_imports_with_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FRESH_INTERPRETER],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plain: ImportError") and "zero_gradients" in lines[0]  # why the shim exists
    assert lines[-1] == "after atgan_plugin: ok"


def test_shim_is_on_the_module_object() -> None:
    module = sys.modules["torch.autograd.gradcheck"]
    installed = getattr(module, "zero_gradients", None)
    assert callable(installed)
    install_zero_gradients_shim()  # idempotent: an existing function is kept
    assert module.zero_gradients is installed


def test_zero_gradients_handles_tensors_and_iterables() -> None:
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    (a.sum() * 2 + b.sum() * 3).backward()
    _zero_gradients(a)
    assert torch.equal(a.grad, torch.zeros(3))
    _zero_gradients([b, torch.zeros(1)])
    assert torch.equal(b.grad, torch.zeros(2))


def test_advertorchs_own_attacks_still_work(tiny_target: nn.Module, fashion_test) -> None:  # type: ignore[no-untyped-def]
    import advertorch.attacks

    x, y = fashion_test.images[:16], fashion_test.labels[:16]
    pgd = advertorch.attacks.LinfPGDAttack(tiny_target, eps=0.1, nb_iter=3, eps_iter=0.05, rand_init=False)
    adv = pgd.perturb(x, y)
    assert 0.05 < (adv - x).abs().max() <= 0.1 + 1e-6
    assert 0 <= adv.min() and adv.max() <= 1
    with torch.no_grad():
        assert (tiny_target(adv).argmax(1) != y).sum() >= (tiny_target(x).argmax(1) != y).sum()

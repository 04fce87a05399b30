"""The attack on inputs a Foolbox or AdverTorch user passes without thinking twice: float64 images
and float64 models work (computed in the model's dtype, returned in the inputs'), and the fit cache follows the model,
not the wrapper: a fresh ``fb.PyTorchModel`` around the same module reuses the fit, a replaced or
changed parameter, other bounds or other preprocessing refit. Error cases are in test_errors.py."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import foolbox as fb
import pytest
import torch
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.data import TensorDataset

FAST: dict[str, Any] = dict(steps=2, batch_size=8, progress=False)


@pytest.fixture
def batch(fashion_test: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return fashion_test.images[:8].clone(), fashion_test.labels[:8].clone()


def test_foolbox_face_takes_float64_images_and_returns_float64(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    fmodel = fb.PyTorchModel(tiny_target, bounds=(0, 1), device="cpu")
    outputs = {}
    for dtype in (torch.float32, torch.float64):
        attack = ATGANAttack(generator=tiny_generator, seed=0, **FAST)
        raw, clipped, success = attack(fmodel, x.to(dtype), y, epsilons=None)
        assert raw.dtype == clipped.dtype == dtype and success.shape == (8,)
        outputs[dtype] = raw
    assert torch.equal(outputs[torch.float64].float(), outputs[torch.float32])  # computed alike, cast at the end
    assert next(tiny_target.parameters()).dtype == torch.float32  # the model was not converted


def test_advertorch_face_takes_float64_images_and_predicts_in_the_models_dtype(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = batch
    adv = ATGANAttack(tiny_target, generator=tiny_generator, **FAST).perturb(x.double())  # sources predicted
    assert adv.dtype == torch.float64 and adv.shape == x.shape


@pytest.mark.parametrize("inputs", [torch.float32, torch.float64])
def test_a_float64_model_is_attacked_in_its_own_dtype_and_left_as_it_was(
    inputs: torch.dtype, tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The fit's float32 images are cast to the model's float64 on the way in (the gradient flows through the
    cast); the shrink and Foolbox's success check call it the same way. The model is never converted."""
    x, y = batch
    model = copy.deepcopy(tiny_target).double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adv = ATGANAttack(model, generator=tiny_generator, search_steps=2, **FAST).perturb(x.to(inputs), y)
    assert adv.dtype == inputs and adv.shape == x.shape and bool(torch.isfinite(adv).all())
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    raw, _, success = ATGANAttack(generator=tiny_generator, **FAST)(fmodel, x.to(inputs), y, epsilons=None)
    assert raw.dtype == inputs and success.shape == (8,)
    images = ATGANAttack(model, generator=tiny_generator, **FAST).generate(y)
    assert isinstance(images, torch.Tensor) and images.dtype == torch.float32 and images.shape == x.shape
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------------
# The fit cache.


def _wrap(module: nn.Module, **kwargs: Any) -> fb.PyTorchModel:
    return fb.PyTorchModel(module, bounds=kwargs.pop("bounds", (0, 1)), device="cpu", **kwargs)


def test_a_fresh_foolbox_wrapper_of_the_same_module_reuses_the_fit(
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    attack = ATGANAttack(generator=tiny_generator, **FAST)
    for _ in range(3):
        attack(_wrap(tiny_target), x, y, epsilons=None)
    assert fit_calls == [None]
    adversary = ATGANAttack(tiny_target, generator=tiny_generator, **FAST)
    first = adversary.fit()
    assert adversary.fit(_wrap(tiny_target)) is first  # the AdverTorch model and a wrapper of it: one fit
    assert fit_calls == [None, None]


def _replace_data(module: nn.Module) -> None:
    p = next(module.parameters())
    p.data = p.data + 0.01  # the same Parameter object, new storage, no version bump


def _new_parameter(module: nn.Module) -> None:
    layer = next(m for m in module.modules() if isinstance(m, nn.Linear))
    layer.weight = nn.Parameter(layer.weight.detach() + 0.01)


def _reshaped_view(module: nn.Module) -> None:
    p = next(p for p in module.parameters() if p.ndim == 2)
    p.data = p.data.view(-1).view(p.shape[1], p.shape[0]).t()  # same storage and shape, other layout


@pytest.mark.parametrize("face", ["advertorch", "foolbox"])
@pytest.mark.parametrize(
    "change", [_replace_data, _new_parameter, _reshaped_view], ids=["p.data =", "new Parameter", "other layout"]
)
def test_a_replaced_parameter_refits(
    face: str,
    change: Callable[[nn.Module], None],
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
) -> None:
    module = copy.deepcopy(tiny_target)
    model = module if face == "advertorch" else _wrap(module)
    attack = ATGANAttack(generator=tiny_generator, **FAST)
    first = attack.fit(model)
    change(module)
    second = attack.fit(model if face == "advertorch" else _wrap(module))
    assert second is not first
    assert attack.fit(model) is second
    assert fit_calls == [None, None]


@pytest.mark.parametrize(
    "other",
    [dict(bounds=(-1, 1)), dict(preprocessing=dict(mean=0.5, std=0.5))],
    ids=["other bounds", "other preprocessing"],
)
def test_a_wrapper_that_changes_what_the_model_sees_refits(
    other: dict[str, Any], tiny_generator: nn.Module, tiny_target: nn.Module, fit_calls: list[int | None]
) -> None:
    attack = ATGANAttack(generator=tiny_generator, **FAST)
    first = attack.fit(_wrap(tiny_target))
    assert attack.fit(_wrap(tiny_target, **other)) is not first
    assert attack.fit(_wrap(tiny_target)) is first
    assert fit_calls == [None, None]


def test_a_cache_entry_goes_with_its_module(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    import gc

    attack = ATGANAttack(generator=tiny_generator, **FAST)
    module = copy.deepcopy(tiny_target)
    attack.fit(module)
    assert len(attack._cache.fits()) == 1
    del module
    gc.collect()
    assert attack._cache.fits() == []

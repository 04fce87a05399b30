"""atgan_plugin.utils: device choice, seeding, the eval-mode guard."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from atgan_plugin.utils import eval_mode, model_device, resolve_device, seed_everything


def mixed_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Sequential(nn.Dropout(), nn.Linear(2, 2))).train()
    model[1].eval()
    return model


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_restores_each_submodule() -> None:
    model, other = mixed_model(), nn.Linear(1, 1).train()
    before = modes(model)
    with eval_mode(model, None, other):
        assert not any(modes(model)) and not other.training
    assert modes(model) == before and other.training


def test_eval_mode_restores_after_an_exception() -> None:
    model = mixed_model()
    before = modes(model)
    with pytest.raises(KeyError):
        with eval_mode(model):
            raise KeyError("boom")
    assert modes(model) == before


def test_resolve_device() -> None:
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_seed_everything_seeds_every_generator() -> None:
    def draw() -> tuple[float, float, float, float]:
        g = seed_everything(5)
        return random.random(), float(np.random.rand()), torch.rand(1).item(), torch.rand(1, generator=g).item()

    assert draw() == draw()


def test_model_device(device: torch.device) -> None:
    assert model_device(nn.Linear(2, 2).to(device)).type == device.type
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_device(nn.ReLU(), default=torch.device("meta")) == torch.device("meta")

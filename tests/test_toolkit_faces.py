"""The torchattacks and ART faces, used through each toolkit's own entry points on Fashion-MNIST.

``atgan_plugin.torchattacks.ATGAN`` is a ``torchattacks.Attack`` (``atk(images, labels)``, the
targeted modes, ``set_normalization_used``, ``MultiAttack``, ``save``); ``atgan_plugin.art.ATGAN``
is an ART ``EvasionAttack`` on a ``PyTorchClassifier`` (``generate`` on NumPy, ``targeted``,
``clip_values``, preprocessing). Both hand the work to ``ATGANAttack``: the last test proves that
one saved fit gives the same images through all four toolkits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import foolbox as fb
import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.attack import EvasionAttack
from art.estimators.classification import PyTorchClassifier
from art.exceptions import EstimatorError
from torch import nn
from torchattacks.attack import Attack as TorchattacksAttack

from atgan_plugin import ATGANAttack
from atgan_plugin.art import ATGAN as ArtATGAN
from atgan_plugin.data import TensorDataset
from atgan_plugin.torchattacks import ATGAN as TorchATGAN

# As in test_attack.py: enough for the class-mean generator to fool the tiny target almost always.
STRONG: dict[str, Any] = dict(steps=40, batch_size=32, lr=0.05, progress=False)
TARGETED: dict[str, Any] = dict(steps=60, batch_size=32, lr=0.1, progress=False)
FAST: dict[str, Any] = dict(steps=2, batch_size=8, progress=False)
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's


class Normalized(nn.Module):
    """``model`` for inputs normalised with (MEAN, STD), as torchvision-style pipelines feed it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * STD + MEAN)


class Rescaled(nn.Module):
    """``model`` for inputs in [-1, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x + 1) / 2)


@pytest.fixture
def batch(fashion_test: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return fashion_test.images[:12].clone(), fashion_test.labels[:12].clone()


def predict(model: nn.Module, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(x)).argmax(1)


def classifier(model: nn.Module, **kwargs: Any) -> PyTorchClassifier:
    kwargs.setdefault("clip_values", (0.0, 1.0))
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, **kwargs)


# ------------------------------------------------------------------------------------------------
# torchattacks.


def test_torchattacks_face_is_a_torchattacks_attack_that_fools(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    atk = TorchATGAN(tiny_target, generator=tiny_generator, **STRONG)
    assert isinstance(atk, TorchattacksAttack) and atk.get_mode() == "default"
    assert atk.device == torch.device("cpu") and "ATGAN(" in repr(atk)
    adv = atk(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype and 0 <= adv.min() and adv.max() <= 1
    assert (predict(tiny_target, adv) != y).float().mean() >= 0.7  # labels are the source classes


def test_torchattacks_targeted_by_label_and_by_function(
    tiny_generator: nn.Module, tiny_target: nn.Module, fit_calls: list[int | None]
) -> None:
    x = torch.rand(12, 1, 28, 28)
    sources = torch.tensor([0, 3] * 6)
    atk = TorchATGAN(tiny_target, generator=tiny_generator, **TARGETED)
    atk.set_mode_targeted_by_label(quiet=True)
    targets = (sources + 1) % 10
    adv = atk(x, targets, source_labels=sources)
    assert (predict(tiny_target, adv) == targets).float().mean() >= 0.75
    # by_function: labels are the sources, the function gives the same targets: the fits are reused.
    atk.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10, quiet=True)
    adv = atk(x, sources)
    assert (predict(tiny_target, adv) == targets).float().mean() >= 0.75
    assert sorted(fit_calls) == [1, 4]


def test_torchattacks_targeted_random_picks_other_classes(
    tiny_generator: nn.Module,
    tiny_target: nn.Module,
    fit_calls: list[int | None],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch[0][:4], torch.full((4,), 2)
    atk = TorchATGAN(tiny_target, generator=tiny_generator, **FAST)
    atk.set_mode_targeted_random(quiet=True)
    assert atk(x, y).shape == x.shape
    assert fit_calls and 2 not in fit_calls and None not in fit_calls


def test_torchattacks_normalization_used(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The model takes normalised inputs: the caller passes and gets normalised images."""
    x, y = batch
    model = Normalized(tiny_target).eval()
    atk = TorchATGAN(model, generator=tiny_generator, **STRONG)
    atk.set_normalization_used(mean=[MEAN], std=[STD])
    adv = atk((x - MEAN) / STD, y)
    unit = adv * STD + MEAN
    assert -1e-5 <= unit.min() and unit.max() <= 1 + 1e-5
    assert (predict(model, adv) != y).float().mean() >= 0.7


def test_torchattacks_multiattack_and_robust_accuracy(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    atgan = TorchATGAN(tiny_target, generator=tiny_generator, **STRONG)
    multi = torchattacks.MultiAttack([torchattacks.FGSM(tiny_target, eps=0.01), atgan])
    adv = multi(x, y)
    assert adv.shape == x.shape
    assert (predict(tiny_target, adv) != y).float().mean() >= 0.7
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    robust_accuracy, _, _ = atgan.save(loader, verbose=False, return_verbose=True)
    assert robust_accuracy <= 30.0


def test_torchattacks_face_refuses_what_torchattacks_sets_itself(
    tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    with pytest.raises(TypeError, match="torchattacks face sets 'targeted'"):
        TorchATGAN(tiny_target, generator=tiny_generator, targeted=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'stepz'"):
        TorchATGAN(tiny_target, generator=tiny_generator, stepz=3)
    atk = TorchATGAN(tiny_target, generator=tiny_generator, **FAST)
    atk.set_mode_targeted_by_label(quiet=True)
    with pytest.raises(ValueError, match="needs the target labels"):
        atk(torch.rand(2, 1, 28, 28))


# ------------------------------------------------------------------------------------------------
# ART.


def test_art_face_is_an_evasion_attack_on_numpy(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    x, y = (t.numpy() for t in batch)
    attack = ArtATGAN(classifier(tiny_target), generator=tiny_generator, **STRONG)
    assert isinstance(attack, EvasionAttack) and attack.targeted is False
    adv = attack.generate(x, y)
    assert isinstance(adv, np.ndarray) and adv.shape == x.shape and adv.dtype == np.float32
    assert 0 <= adv.min() and adv.max() <= 1
    assert (predict(tiny_target, adv) != batch[1]).float().mean() >= 0.7
    # One-hot labels mean the same as indices (same fit, same seed).
    attack.save_fit(tmp_path / "fit.safetensors")
    again = ArtATGAN(classifier(tiny_target), generator=tiny_generator, **STRONG)
    again.load_fit(tmp_path / "fit.safetensors")
    assert np.array_equal(again.generate(x, np.eye(10, dtype=np.float32)[y]), adv)


def test_art_targeted(tiny_generator: nn.Module, tiny_target: nn.Module, fit_calls: list[int | None]) -> None:
    x = np.random.default_rng(0).random((12, 1, 28, 28), dtype=np.float32)
    sources = np.array([0, 3] * 6)
    targets = (sources + 1) % 10
    attack = ArtATGAN(classifier(tiny_target), generator=tiny_generator, targeted=True, **TARGETED)
    adv = attack.generate(x, targets, source_labels=sources)
    assert (predict(tiny_target, adv).numpy() == targets).mean() >= 0.75
    assert sorted(fit_calls) == [1, 4]
    with pytest.raises(ValueError, match="needs the target labels"):
        attack.generate(x)
    attack.set_params(targeted=False)
    assert attack.targeted is False


def test_art_preprocessing_and_clip_values(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    # The estimator normalises: the fit reads the model through ART's own preprocessing.
    normalized = Normalized(tiny_target).eval()
    attack = ArtATGAN(classifier(normalized, preprocessing=(MEAN, STD)), generator=tiny_generator, **STRONG)
    adv = attack.generate(x.numpy(), y.numpy())
    assert (predict(tiny_target, adv) != y).float().mean() >= 0.7
    # Another input range: the images land in clip_values.
    rescaled = Rescaled(tiny_target).eval()
    attack = ArtATGAN(classifier(rescaled, clip_values=(-1.0, 1.0)), generator=tiny_generator, **STRONG)
    adv = attack.generate((x * 2 - 1).numpy(), y.numpy())
    assert -1 <= adv.min() < 0 and adv.max() <= 1
    assert (predict(rescaled, adv) != y).float().mean() >= 0.7


@pytest.mark.parametrize(
    "estimator_kwargs, error, message",
    [
        (dict(clip_values=None), ValueError, "needs the estimator's clip_values"),
        (dict(channels_first=False), ValueError, "channels-first"),
    ],
)
def test_art_face_errors_name_the_problem(
    tiny_generator: nn.Module, tiny_target: nn.Module, estimator_kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        ArtATGAN(classifier(tiny_target, **estimator_kwargs), generator=tiny_generator)


def test_art_face_refuses_other_estimators_and_arguments(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    with pytest.raises(EstimatorError):
        ArtATGAN(tiny_target, generator=tiny_generator)
    with pytest.raises(TypeError, match="ART face sets 'clip_min'"):
        ArtATGAN(classifier(tiny_target), generator=tiny_generator, clip_min=0.0)
    attack = ArtATGAN(classifier(tiny_target), generator=tiny_generator, **FAST)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        attack.generate(np.zeros((1, 1, 28, 28), np.float32), eps=0.3)
    with pytest.raises(TypeError, match="integer class indices or one-hot"):
        attack.generate(np.zeros((1, 1, 28, 28), np.float32), np.array([0.5]))


# ------------------------------------------------------------------------------------------------
# One implementation behind four faces.


def test_one_fit_gives_the_same_images_through_all_four_toolkits(
    tiny_generator: nn.Module, tiny_target: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    x, y = batch
    fit = tmp_path / "g_attack.safetensors"
    ATGANAttack(tiny_target, generator=tiny_generator, **STRONG).save_fit(fit)
    settings: dict[str, Any] = dict(latent="random", seed=7, progress=False)

    fmodel = fb.PyTorchModel(tiny_target, bounds=(0, 1), device="cpu")
    foolbox_attack = ATGANAttack(generator=tiny_generator, **settings)
    foolbox_attack.load_fit(fit, model=fmodel)
    raw, _, success = foolbox_attack(fmodel, x, fb.criteria.Misclassification(y), epsilons=None)

    adversary = ATGANAttack(tiny_target, generator=tiny_generator, **settings)
    adversary.load_fit(fit)
    from_advertorch = adversary.perturb(x, y)

    atk = TorchATGAN(tiny_target, generator=tiny_generator, **settings)
    atk.load_fit(fit)
    from_torchattacks = atk(x, y)

    art_attack = ArtATGAN(classifier(tiny_target), generator=tiny_generator, **settings)
    art_attack.load_fit(fit)
    from_art = torch.from_numpy(art_attack.generate(x.numpy(), y.numpy()))

    assert success.float().mean() >= 0.7
    for images in (from_advertorch, from_torchattacks, from_art):
        assert torch.equal(images, raw)

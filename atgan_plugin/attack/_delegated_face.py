"""What the torchattacks and ART faces share: the toolkit's classifier as a plain ``images -> logits``
module, and the one :class:`~atgan_plugin.attack.atgan.ATGANAttack` behind it that fits and generates.

Neither face re-implements anything: each translates its toolkit's conventions (labels, modes,
normalisation, NumPy) into one call of ``ATGANAttack.perturb`` on a :class:`ClassifierView`, and
its ``fit``/``save_fit``/``load_fit`` are ``ATGANAttack``'s on that same view, so a fit saved
through one face loads through any other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.fit import FitResult

__all__ = ["ClassifierView", "DelegatedFace", "make_atgan"]

# ATGANAttack's arguments that a toolkit face sets itself, and how the toolkit says them instead.
_SET_BY_THE_FACE = {
    "model": "the toolkit's own model argument",
    "targeted": "the toolkit's own targeting",
    "clip_min": "the toolkit's input range",
    "clip_max": "the toolkit's input range",
    "distance": "nothing (Foolbox only)",
}


class ClassifierView(nn.Module):
    """``model(transform(images))``: the toolkit's classifier on images in the attack's range.

    ``transform`` is the toolkit's input preprocessing (torchattacks' normalisation, ART's
    preprocessing chain), differentiable; ``None`` for none. The model is held, never copied or
    moved, so the fit sees the caller's weights and ``ATGANAttack``'s cache notices when they change.
    """

    def __init__(self, model: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.transform = transform

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(images if self.transform is None else self.transform(images))
        return logits


def make_atgan(
    view: ClassifierView, generator: nn.Module, bounds: tuple[float, float], hyper: dict[str, Any], toolkit: str
) -> ATGANAttack:
    """The ``ATGANAttack`` behind a face: ``hyper`` are its keyword arguments, less those the face sets."""
    for name, instead in _SET_BY_THE_FACE.items():
        if name in hyper:
            raise TypeError(f"the {toolkit} face sets {name!r} from {instead}; leave it out of ATGAN(...)")
    return ATGANAttack(view, generator=generator, clip_min=bounds[0], clip_max=bounds[1], **hyper)


class DelegatedFace:
    """Mixin: ``self.atgan`` (the ``ATGANAttack``) and ``self._view()`` (the classifier it attacks)."""

    atgan: ATGANAttack

    def _view(self) -> ClassifierView:
        raise NotImplementedError

    def fit(self, target: int | None = None) -> FitResult:
        """Fits (or returns the cached) G_attack for this face's classifier and ``target``."""
        return self.atgan.fit(self._view(), target)

    def save_fit(self, path: str | Path, *, target: int | None = None) -> None:
        """Writes the fitted G_attack for ``target`` (``ATGANAttack.save_fit``'s file)."""
        self.atgan.save_fit(path, target=target, model=self._view())

    def load_fit(self, path: str | Path) -> FitResult:
        """Loads a G_attack saved by any face (or ``atgan attack``/``demo``) for this face's classifier."""
        return self.atgan.load_fit(path, model=self._view())

    def _perturb(
        self, images: torch.Tensor, sources: torch.Tensor | None, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """AdverTorch's ``perturb`` on the view: ``sources`` ``None`` -> the classifier's predictions."""
        atgan = self.atgan
        atgan.predict = self._view()
        atgan.targeted = targets is not None
        if targets is None:
            return atgan.perturb(images, sources)
        return atgan.perturb(images, targets, source_labels=sources)

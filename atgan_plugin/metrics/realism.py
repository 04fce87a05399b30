"""Realism measures beyond the oracle: a Fréchet distance in robust features, and an artefact measure.

Three ways to judge whether AT-GAN's images still look like their class (never one alone):

1. **oracle agreement** (:mod:`atgan_plugin.metrics.counting`): an independent, adversarially trained
   classifier still gives the source class;
2. **robust-feature Fréchet distance** (:class:`RobustFrechetDistance`): the Fréchet distance between
   Gaussians fitted to the penultimate features of an *adversarially trained* classifier of the
   dataset, for G_orig's and for G_attack's images against the real test images. No Inception
   weights can be downloaded here, and robust features follow shape and texture as people see them
   far more than a plain network's do. The statistics are torchmetrics' ``FrechetInceptionDistance``
   with our feature extractor (:class:`PenultimateFeatures`);
3. **people**, through ``atgan human-eval`` (:mod:`atgan_plugin.human_eval`).

Plus an artefact measure that tracks what the image grids show (:func:`added_edges`): the total
variation of the change ``G_attack − G_orig`` relative to the total variation of G_orig's image.
Stripes, blotch borders and speckle all add edges the image did not have; a smooth change of
brightness or shape adds few. (A plain high-frequency energy share of the images did not see the
stripes: the fit trades some of G_orig's own edges for new ones.)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from atgan_plugin.imaging import total_variation

__all__ = ["PenultimateFeatures", "RobustFrechetDistance", "added_edges"]


class PenultimateFeatures(nn.Module):
    """The input of a classifier's last ``nn.Linear`` layer, as features ``(N, D)``.

    Works for any classifier whose logits come from a final linear layer (all of this package's);
    the classifier is only read (eval mode, no gradient).
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(classifier).__name__} has no nn.Linear layer whose input could serve as features")
        self.classifier = classifier.eval().requires_grad_(False)
        self._head = linears[-1]
        self.num_features = int(self._head.in_features)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = self._head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
        try:
            self.classifier(images)
        finally:
            handle.remove()
        return captured[-1].flatten(1)


class RobustFrechetDistance:
    """Fréchet distances to one set of real images, in a robust classifier's penultimate features.

    The real statistics are computed once, at construction; :meth:`__call__` then measures any
    number of generated sets against them (torchmetrics' ``FrechetInceptionDistance`` with our
    feature extractor, statistics in float64).

    Shape: ``real`` and every generated set are iterables of image batches ``(B, C, H, W)`` in [0, 1].
    """

    def __init__(self, classifier: nn.Module, real: Iterable[torch.Tensor]):
        self.features = PenultimateFeatures(classifier)
        self.device = next(self.features.parameters()).device
        # sync_on_compute=False: under torchrun only rank 0 evaluates; the metric must not wait for the others.
        metric = FrechetInceptionDistance(
            feature=self.features, normalize=True, reset_real_features=False, sync_on_compute=False
        )
        self._metric = metric.to(self.device)
        with torch.no_grad():
            for batch in real:
                self._metric.update(batch.to(self.device), real=True)

    @torch.no_grad()
    def __call__(self, generated: Iterable[torch.Tensor]) -> float:
        self._metric.reset()  # the generated statistics only: reset_real_features=False keeps the real ones
        for batch in generated:
            self._metric.update(batch.to(self.device), real=False)
        return float(self._metric.compute())


def added_edges(attack_images: torch.Tensor, original_images: torch.Tensor) -> tuple[float, float]:
    """Sums over a batch of ``TV(G_attack − G_orig)`` and ``TV(G_orig)`` (to be divided after all batches).

    Shape: both ``(N, C, H, W)``; the artefact measure is the ratio of the two sums: 0 for an
    unchanged image, about 0.5 when the change holds half as many edges as the image itself.
    """
    return float(total_variation(attack_images - original_images).sum()), float(total_variation(original_images).sum())

"""Counting what an attack did to a set of examples, batch by batch: the one place that predicts and counts.

Every measure here compares an adversarial image with its *reference* (the image it was made from:
``G_orig(z, y_s)`` for AT-GAN and Song et al., the clean test image for FGSM, PGD and R+FGSM) and with
its source class ``y_s``. The words (see :mod:`atgan_plugin.metrics`):

- **success** (also "fooled"): the target model misclassifies (untargeted) or outputs the target class;
- **realistic success**: success *and* the oracle still gives the source class;
- **rejected**: success, but the oracle no longer gives the source class (never counted as a success);
- **oracle agreement**: the oracle gives the source class, on the adversarial or the reference images;
- **reference error**: the target model is already wrong on the reference image;
- **per class**: the examples, successes and realistic successes of each source class (:class:`ClassCounts`);
- **distances**: ℓ2 and ℓ∞ of ``adversarial − reference`` per image, in [0, 1] pixel units;
- **added edges**: total variation of the change over that of the reference
  (:func:`~atgan_plugin.metrics.realism.added_edges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from atgan_plugin.imaging import to_bounds
from atgan_plugin.metrics.realism import added_edges
from atgan_plugin.utils import model_device

__all__ = ["ClassCounts", "Outcome", "Tally", "predict_classes", "safe_ratio"]

UNIT_BOUNDS = (0.0, 1.0)


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with the denominator kept away from zero (an empty set gives 0, not NaN)."""
    return numerator / max(denominator, 1e-12)


@torch.no_grad()
def predict_classes(
    model: nn.Module,
    images: torch.Tensor,
    *,
    bounds: tuple[float, float] = UNIT_BOUNDS,
    batch_size: int | None = None,
) -> torch.Tensor:
    """The model's predicted classes ``(N,)``, on ``images``' device.

    ``images`` ``(N, C, H, W)`` are in [0, 1] and are mapped to the model's input range ``bounds``; they are
    fed in batches of ``batch_size`` (all at once when None) on the model's device.
    """
    device = model_device(model, images.device)
    size = batch_size or max(len(images), 1)
    chunks = [
        model(to_bounds(images[i : i + size].to(device), bounds)).argmax(1).to(images.device)
        for i in range(0, len(images), size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long, device=images.device)


@dataclass
class ClassCounts:
    """The examples of one source class: how many, how many fooled the model, how many of those the oracle accepts."""

    source: int
    n: int = 0
    fooled: int = 0  # success
    realistic: int = 0  # success and the oracle gives the source class

    @property
    def rejected(self) -> int:
        return self.fooled - self.realistic

    @property
    def success_rate(self) -> float:
        return self.fooled / self.n if self.n else 0.0

    @property
    def realistic_success_rate(self) -> float:
        return self.realistic / self.n if self.n else 0.0


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Tally.add` found for each example of one batch, all ``(N,)`` on the images' device."""

    success: torch.Tensor  # bool: the model was fooled
    rejected: torch.Tensor  # bool: fooled, but the oracle no longer gives the source class
    oracle_classes: torch.Tensor  # long: the oracle's class for the adversarial image


@dataclass
class Tally:
    """Counts and sums over examples, added batch by batch, so that the rates do not depend on the batch size.

    The rates are over all ``n`` examples (not only those the model got right on the references).
    """

    n: int = 0
    fooled: int = 0  # success
    realistic: int = 0  # success and the oracle gives the source class
    oracle_agrees: int = 0  # on the adversarial images
    oracle_agrees_reference: int = 0  # on the reference images
    reference_wrong: int = 0  # counted only with count_reference_error
    reference_counted: int = 0  # the examples whose reference the model classified (count_reference_error)
    sum_l2: float = 0.0
    sum_linf: float = 0.0
    change_edges: float = 0.0  # Σ TV(adversarial − reference)
    reference_edges: float = 0.0  # Σ TV(reference)
    by_class: dict[int, ClassCounts] = field(default_factory=dict)  # source class → its counts

    def add(
        self,
        model: nn.Module,
        oracle: nn.Module,
        adversarial: torch.Tensor,
        reference: torch.Tensor,
        sources: torch.Tensor,
        *,
        target: int | None = None,
        bounds: tuple[float, float] = UNIT_BOUNDS,
        batch_size: int | None = None,
        count_reference_error: bool = False,
    ) -> Outcome:
        """Counts one batch: ``adversarial`` and ``reference`` ``(N, C, H, W)`` in [0, 1], ``sources`` ``(N,)``.

        ``model`` takes images in ``bounds``, the oracle in [0, 1]. ``target`` None: untargeted (success is any
        class but the source). Both models must be in eval mode (the caller's ``eval_mode``). Returns what each
        example of the batch came to (the per-class counts and :attr:`by_class` are updated too).
        """
        sources = sources.to(adversarial.device)
        predicted = predict_classes(model, adversarial, bounds=bounds, batch_size=batch_size)
        success = predicted != sources if target is None else predicted == target
        oracle_classes = predict_classes(oracle, adversarial, batch_size=batch_size)
        agrees = oracle_classes == sources
        agrees_reference = predict_classes(oracle, reference, batch_size=batch_size) == sources
        if count_reference_error:
            wrong = predict_classes(model, reference, bounds=bounds, batch_size=batch_size) != sources
            self.reference_wrong += int(wrong.sum().item())
            self.reference_counted += len(sources)
        difference = (adversarial - reference).flatten(1)
        change_edges, reference_edges = added_edges(adversarial, reference)
        self.n += len(sources)
        self.fooled += int(success.sum().item())
        self.realistic += int((success & agrees).sum().item())
        self.oracle_agrees += int(agrees.sum().item())
        self.oracle_agrees_reference += int(agrees_reference.sum().item())
        self.sum_l2 += difference.norm(dim=1).sum().item()
        self.sum_linf += difference.abs().amax(dim=1).sum().item()
        self.change_edges += change_edges
        self.reference_edges += reference_edges
        self._add_per_class(sources, success, success & agrees)
        return Outcome(success=success, rejected=success & ~agrees, oracle_classes=oracle_classes)

    def _add_per_class(self, sources: torch.Tensor, success: torch.Tensor, realistic: torch.Tensor) -> None:
        """Adds one batch to :attr:`by_class`: ``sources`` ``(N,)`` long, the two masks ``(N,)`` bool."""
        if not len(sources):
            return
        size = int(sources.max().item()) + 1
        subsets = (sources, sources[success], sources[realistic])
        counts = [torch.bincount(subset, minlength=size).tolist() for subset in subsets]
        for k, (n, fooled, real) in enumerate(zip(*counts, strict=True)):
            if n:
                row = self.by_class.setdefault(k, ClassCounts(k))
                row.n, row.fooled, row.realistic = row.n + n, row.fooled + fooled, row.realistic + real

    def rate(self, count: float) -> float:
        """``count`` over the number of examples (0 for none)."""
        return count / self.n if self.n else 0.0

    @property
    def success_rate(self) -> float:
        return self.rate(self.fooled)

    @property
    def realistic_success_rate(self) -> float:
        return self.rate(self.realistic)

    @property
    def rejected_rate(self) -> float:
        return self.rate(self.fooled - self.realistic)

    @property
    def oracle_agreement(self) -> float:
        return self.rate(self.oracle_agrees)

    @property
    def oracle_agreement_reference(self) -> float:
        return self.rate(self.oracle_agrees_reference)

    @property
    def agreement_ratio(self) -> float:
        """Oracle agreement on the adversarial images over that on the references (1: realism kept)."""
        return safe_ratio(self.oracle_agreement, self.oracle_agreement_reference)

    @property
    def reference_error(self) -> float:
        """The model's error rate on the references, over the examples counted (0 when none were)."""
        return self.reference_wrong / self.reference_counted if self.reference_counted else 0.0

    @property
    def mean_l2(self) -> float:
        return self.rate(self.sum_l2)

    @property
    def mean_linf(self) -> float:
        return self.rate(self.sum_linf)

    @property
    def added_edges(self) -> float:
        return safe_ratio(self.change_edges, self.reference_edges)

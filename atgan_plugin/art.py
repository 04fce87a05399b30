"""``ATGAN``: AT-GAN as an IBM ART evasion attack (adversarial-robustness-toolbox 1.20).

Paper: Wang et al., "AT-GAN: An Adversarial Generator Model for Non-constrained Adversarial
Examples" (arXiv:1904.07793). Distance: non-constrained; each output is a new image
``G_attack(z, y_s)`` of source class ``y_s``, not an Lp-bounded change of the input.

An ART ``EvasionAttack`` on a ``PyTorchClassifier``: ``generate(x, y=None)`` on NumPy arrays,
``targeted``, ``set_params``; the outputs are mapped onto the estimator's ``clip_values`` and the
classifier is read through the estimator's own preprocessing. The work is done by
:class:`atgan_plugin.attack.atgan.ATGANAttack` (the same fit and cache as the other faces; see
:mod:`atgan_plugin.attack._delegated_face`).

Labels, ART's way (index labels ``(N,)`` or one-hot ``(N, K)``):
    - untargeted: ``y`` are the true classes, the **source classes** of the new images
      (``None``: the classifier's predictions);
    - ``targeted=True``: ``y`` are the **targets** (required); sources from
      ``generate(x, y, source_labels=...)`` or the classifier's predictions.

Arguments:
    estimator: an ``art.estimators.classification.PyTorchClassifier`` (channels first) with
        ``clip_values`` (the input range that the generator's [0, 1] is mapped onto).
    generator: a :class:`~atgan_plugin.adapters.ConditionalGenerator` (G_orig); never modified.
    targeted (bool): whether ``y`` are targets (default ``False``).
    **hyper: :class:`~atgan_plugin.attack.atgan.ATGANAttack`'s keyword arguments (``config=``, ``guard=``,
        ``latent=``, ``device=``, ``seed=``, ``progress=``, ``options=``; their defaults and meaning are documented
        there once), except ``clip_min``/``clip_max`` (from ``clip_values``) and ``distance``.

Shape:
    - x: ``(N, C, H, W)`` within ``clip_values``, ``(C, H, W)`` = ``generator.image_shape``.
    - output: same shape and dtype as ``x``, within ``clip_values``.

Example::
    classifier = PyTorchClassifier(model, loss, input_shape=(1, 28, 28), nb_classes=10, clip_values=(0, 1))
    attack = ATGAN(classifier, generator=G)
    x_adv = attack.generate(x, y)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

try:
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier
    from art.utils import check_and_transform_label_format
except ImportError as error:  # an optional extra
    raise ImportError("atgan_plugin.art needs IBM ART: pip install 'atgan-plugin[art]'") from error

from atgan_plugin.attack._delegated_face import ClassifierView, DelegatedFace, make_atgan

__all__ = ["ATGAN"]


def _one_value(bound: Any, name: str) -> float:
    values = np.unique(np.asarray(bound, dtype=np.float64))
    if values.size != 1:
        raise ValueError(
            f"ATGAN maps its images onto one range; the estimator's clip_values {name} differs per feature"
        )
    return float(values[0])


class ATGAN(DelegatedFace, EvasionAttack):  # type: ignore[misc]  # ART: untyped
    """AT-GAN for IBM ART (see the module docstring)."""

    attack_params = EvasionAttack.attack_params + ["targeted"]
    _estimator_requirements = (PyTorchClassifier,)

    def __init__(self, estimator: PyTorchClassifier, *, generator: nn.Module, targeted: bool = False, **hyper: Any):
        super().__init__(estimator=estimator)
        if estimator.clip_values is None:
            raise ValueError(
                "ATGAN needs the estimator's clip_values, the input range its images are mapped onto: "
                "PyTorchClassifier(..., clip_values=(0, 1))"
            )
        if not estimator.channels_first:
            raise ValueError(
                "ATGAN needs a channels-first PyTorchClassifier (channels_first=True), like the generator's images"
            )
        self.targeted = targeted
        self._check_params()
        low, high = (_one_value(bound, name) for bound, name in zip(estimator.clip_values, ("min", "max"), strict=True))
        self._classifier = ClassifierView(estimator.model, self._preprocess)
        self.atgan = make_atgan(self._classifier, generator, (low, high), hyper, "ART")

    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The estimator's preprocessing chain, differentiable (what ART's own PyTorch attacks use)."""
        processed: torch.Tensor
        processed, _ = self.estimator._apply_preprocessing(images, None, fit=False, no_grad=False)
        return processed

    def _view(self) -> ClassifierView:
        return self._classifier

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.targeted, bool):
            raise ValueError(f"targeted must be a bool, got {self.targeted!r}")

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial images for ``x`` (see the module docstring for ``y`` and ``source_labels``)."""
        source_labels = kwargs.pop("source_labels", None)
        if kwargs:
            raise TypeError(
                f"unexpected keyword arguments {sorted(kwargs)}; ATGAN.generate takes x, y and source_labels"
            )
        x = np.asarray(x)
        if self.targeted and y is None:
            raise ValueError("a targeted attack needs the target labels: generate(x, y=targets)")
        labels = self._indices(y)
        sources = self._indices(source_labels) if self.targeted else labels
        images = torch.as_tensor(x, dtype=torch.float32, device=self.estimator.device)
        adversarial = self._perturb(images, sources, labels if self.targeted else None)
        return adversarial.cpu().numpy().astype(x.dtype, copy=False)

    def _indices(self, labels: np.ndarray | None) -> torch.Tensor | None:
        """Index labels ``(N,)`` from ART's index or one-hot labels."""
        if labels is None:
            return None
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iub" and not (labels.ndim == 2 and labels.shape[1] > 1):
            raise TypeError(f"labels must be integer class indices or one-hot rows, got dtype {labels.dtype}")
        one_hot = check_and_transform_label_format(labels, nb_classes=self.estimator.nb_classes, return_one_hot=True)
        return torch.as_tensor(np.argmax(one_hot, axis=1), dtype=torch.long, device=self.estimator.device)

"""Realism measures: robust-feature Fréchet distance (torchmetrics with our features) and added edges."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atgan_plugin.metrics.realism import PenultimateFeatures, RobustFrechetDistance, added_edges
from atgan_plugin.models import build_classifier


def batches(images: torch.Tensor, size: int = 100) -> list[torch.Tensor]:
    return [images[i : i + size] for i in range(0, len(images), size)]


def test_penultimate_features_are_the_input_of_the_last_linear_layer() -> None:
    classifier = build_classifier("oracle")
    features = PenultimateFeatures(classifier)
    x = torch.rand(3, 1, 28, 28)
    captured = features(x)
    assert captured.shape == (3, features.num_features) == (3, 256)
    torch.testing.assert_close(classifier[-1](captured), classifier(x))  # the head applied to them gives the logits
    with pytest.raises(ValueError, match="no nn.Linear"):
        PenultimateFeatures(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_frechet_distance_is_zero_for_the_real_set_and_grows_with_a_shift(fashion_test: object) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        classifier = build_classifier("oracle").eval()
    real = fashion_test.images[:600]  # type: ignore[attr-defined]
    distance = RobustFrechetDistance(classifier, batches(real))
    assert distance(batches(real)) == pytest.approx(0.0, abs=1e-3)
    other_real = fashion_test.images[600:1000]  # type: ignore[attr-defined]
    noisy = (other_real + 0.3 * torch.randn_like(other_real)).clamp(0, 1)
    same_kind, shifted = distance(batches(other_real)), distance(batches(noisy))
    assert 0 < same_kind < shifted
    assert distance(batches(other_real)) == pytest.approx(same_kind)  # the real statistics are kept between calls


def test_added_edges_of_an_unchanged_image_is_zero_and_stripes_add_more_than_a_smooth_change() -> None:
    reference = torch.zeros(2, 1, 8, 8)
    reference[:, :, 2:6, 2:6] = 1.0
    edges, own = added_edges(reference, reference)
    assert edges == 0 and own > 0
    smooth = reference + 0.1  # brighter everywhere: no new edge
    stripes = reference.clone()
    stripes[..., ::2] += 0.1  # vertical stripes of the same amplitude
    assert added_edges(smooth, reference)[0] == pytest.approx(0.0, abs=1e-5)
    assert added_edges(stripes, reference)[0] > 10 * added_edges(smooth, reference)[0] + 1.0

"""atgan_plugin.vendored.stylegan2_ada.ops: the primitives, checked against closed forms and reference definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from atgan_plugin.vendored.stylegan2_ada.ops import (
    bias_act,
    fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upfirdn2d,
    upsample2d,
)


def test_fir_filter_is_the_normalised_outer_product() -> None:
    f = fir_filter([1, 3, 3, 1])
    expected = torch.tensor([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]], dtype=torch.float32) / 64
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.equal(f, expected)
    assert f.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "up, down, pad, size",
    [(1, 1, (0, 0, 0, 0), 5), (2, 1, (2, 1, 2, 1), 16), (1, 2, (1, 1, 1, 1), 4), (2, 1, (-1, -1, 0, 0), 11)],
)
def test_upfirdn2d_output_size(up: int, down: int, pad: tuple[int, int, int, int], size: int) -> None:
    x = torch.randn(2, 3, 8, 8)
    y = upfirdn2d(x, fir_filter(), up=up, down=down, pad=pad)
    height = (8 * up + pad[2] + pad[3] - 4) // down + 1
    width = (8 * up + pad[0] + pad[1] - 4) // down + 1
    assert y.shape == (2, 3, height, width)
    assert width == size


def test_upsample2d_keeps_a_constant_image_constant_inside() -> None:
    # Each of the 4 output phases sums a quarter of the normalised filter's taps, times gain 4.
    x = torch.full((1, 2, 6, 6), 0.7)
    y = upsample2d(x, fir_filter())
    assert y.shape == (1, 2, 12, 12)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full((1, 2, 8, 8), 0.7))


def test_upfirdn2d_filter_is_a_true_convolution() -> None:
    # An impulse reproduces the filter flipped back, i.e. the filter itself (convolution, not correlation).
    f = torch.arange(1.0, 17.0).reshape(4, 4)
    x = torch.zeros(1, 1, 1, 1)
    x[0, 0, 0, 0] = 1
    y = upfirdn2d(x, f, pad=(3, 3, 3, 3))
    assert torch.equal(y[0, 0], f)


def test_bias_act_order_gain_and_clamp() -> None:
    x = torch.tensor([[-2.0, 1.0, 300.0]]).reshape(1, 3, 1, 1)
    b = torch.tensor([1.0, -2.0, 0.0])
    y = bias_act(x, b, "lrelu", clamp=256).flatten()
    s2 = math.sqrt(2)
    torch.testing.assert_close(y, torch.tensor([-0.2 * s2, -0.2 * s2, 256.0]))
    assert torch.equal(bias_act(x, b, "linear").flatten(), torch.tensor([-1.0, -1.0, 300.0]))
    with pytest.raises(ValueError, match=r"bias has shape \(2,\), expected \(3,\)"):
        bias_act(x, b[:2])


def test_normalize_2nd_moment_gives_unit_mean_square() -> None:
    z = torch.randn(5, 7) * 30
    assert torch.allclose(normalize_2nd_moment(z).square().mean(1), torch.ones(5), atol=1e-5)


def test_demodulation_gives_unit_norm_weights_per_output_channel() -> None:
    # A 1×1 conv over a 1×I image whose pixel i is the one-hot e_i reads out w''[n, o, i] at pixel i,
    # so the squared outputs summed over pixels are ‖w''[n, o]‖² = 1 for every sample and channel.
    n, i, o = 3, 6, 4
    x = torch.eye(i).reshape(1, i, 1, i).repeat(n, 1, 1, 1)
    y = modulated_conv2d(x, torch.randn(o, i, 1, 1), torch.randn(n, i) * 5, demodulate=True)
    torch.testing.assert_close(y.square().sum(dim=[2, 3]), torch.ones(n, o))


def test_modulated_conv_is_scale_invariant_with_demodulation() -> None:
    x, w, s = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    torch.testing.assert_close(modulated_conv2d(x, w * 7, s * 0.1), modulated_conv2d(x, w, s), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("demodulate", [True, False])
def test_grouped_form_equals_the_per_sample_form(demodulate: bool) -> None:
    # Non-fused form: scale x by s, convolve with the raw weight, multiply by the demodulation d.
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    y = modulated_conv2d(x, w, s, demodulate=demodulate)
    reference = F.conv2d(x * s[:, :, None, None], w, padding=1)
    if demodulate:
        d = ((w[None] * s[:, None, :, None, None]).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        reference = reference * d[:, :, None, None]
    torch.testing.assert_close(y, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kernel", [3, 1])
def test_upsampling_conv_equals_the_reference_definition(kernel: int) -> None:
    # Reference (spec §2.5): zero-insert and FIR with pad (p+2, p+1), gain 4, then a valid
    # convolution with the kernel flipped (a true convolution with the stored kernel).
    x, w, s = torch.randn(2, 4, 5, 5), torch.randn(3, 4, kernel, kernel), torch.randn(2, 4)
    f = fir_filter()
    y = modulated_conv2d(x, w, s, demodulate=False, up=2, resample_filter=f)
    p = kernel // 2
    u = upfirdn2d(x * s[:, :, None, None], f, up=2, pad=(p + 2, p + 1, p + 2, p + 1), gain=4)
    reference = F.conv2d(u, w.flip([2, 3]))
    assert y.shape == reference.shape == (2, 3, 10, 10)
    torch.testing.assert_close(y, reference, atol=1e-5, rtol=1e-4)


def test_modulated_conv_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="weight expects 4 input channels, input has 5"):
        modulated_conv2d(torch.randn(1, 5, 4, 4), torch.randn(3, 4, 3, 3), torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"styles have shape \(2, 4\), expected \(1, 4\)"):
        modulated_conv2d(torch.randn(1, 4, 4, 4), torch.randn(3, 4, 3, 3), torch.randn(2, 4))

"""The StyleGAN2-ADA discriminator (``vendored/stylegan2_ada/discriminator.py``) and what it needs around it:
NVIDIA's names and shapes (the training specification's table, §1.3), the forward pass against an
independent float64 re-derivation of §1.4-1.5, snapshots that hold G, D and G_ema (read back by our
whitelist reader, nothing executed), the non-fused modulated convolution, and the augmentation pipe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.augment import AdaptiveAugment, AugmentPipe, translate
from atgan_plugin.vendored.stylegan2_ada.discriminator import Discriminator, MinibatchStdLayer
from atgan_plugin.vendored.stylegan2_ada.ops import downsample_conv2d, fir_filter, modulated_conv2d, upfirdn2d
from atgan_plugin.vendored.stylegan2_ada.snapshot import (
    load_discriminator_pickle,
    load_generator_pickle,
    read_snapshot,
)
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import write_snapshot

# ------------------------------------------------------------------------------------------------
# Names, shapes, order (spec §1.3: 'resnet', 32x32, RGB, c_dim 10, every width 512).


def cifar_sized(architecture: str = "resnet") -> Discriminator:
    with torch.device("meta"):  # shapes only: no memory, no time
        return Discriminator(
            c_dim=10,
            img_resolution=32,
            img_channels=3,
            architecture=architecture,
            channel_base=16384,
            channel_max=512,
            num_fp16_res=4,
            conv_clamp=256,
            epilogue_kwargs={"mbstd_group_size": 4},
        )


def expected_state_dict(architecture: str) -> list[tuple[str, tuple[int, ...]]]:
    """The table of spec §1.3, in registration order: b32, b16, b8, mapping, b4."""
    rows: list[tuple[str, tuple[int, ...]]] = []
    for r in (32, 16, 8):
        rows.append((f"b{r}.resample_filter", (4, 4)))
        if r == 32:
            rows += [("b32.fromrgb.weight", (512, 3, 1, 1)), ("b32.fromrgb.bias", (512,))]
            rows.append(("b32.fromrgb.resample_filter", (4, 4)))
        for conv in ("conv0", "conv1"):
            rows += [(f"b{r}.{conv}.weight", (512, 512, 3, 3)), (f"b{r}.{conv}.bias", (512,))]
            rows.append((f"b{r}.{conv}.resample_filter", (4, 4)))
        if architecture == "resnet":
            rows += [(f"b{r}.skip.weight", (512, 512, 1, 1)), (f"b{r}.skip.resample_filter", (4, 4))]
    rows += [("mapping.embed.weight", (512, 10)), ("mapping.embed.bias", (512,))]
    for i in range(8):
        rows += [(f"mapping.fc{i}.weight", (512, 512)), (f"mapping.fc{i}.bias", (512,))]
    rows += [("b4.conv.weight", (512, 513, 3, 3)), ("b4.conv.bias", (512,)), ("b4.conv.resample_filter", (4, 4))]
    rows += [("b4.fc.weight", (512, 8192)), ("b4.fc.bias", (512,))]
    rows += [("b4.out.weight", (512, 512)), ("b4.out.bias", (512,))]
    return rows


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
def test_names_shapes_and_order_follow_the_specification(architecture: str) -> None:
    D = cifar_sized(architecture)
    assert [(k, tuple(v.shape)) for k, v in D.state_dict().items()] == expected_state_dict(architecture)
    buffers = {name for name, _ in D.named_buffers()}
    assert buffers == {k for k, _ in expected_state_dict(architecture) if k.endswith("resample_filter")}


def test_the_cifar_discriminator_has_23_1_million_parameters() -> None:
    # Spec §1.5 (generator spec): "the cifar D has 23.1 M" ('orig', 8 mapping layers).
    assert round(sum(p.numel() for p in cifar_sized("orig").parameters()) / 1e6, 1) == 23.1


def test_fp16_blocks_gains_and_clamps_follow_the_specification() -> None:
    D = cifar_sized()
    assert [b.use_fp16 for b in D.blocks()] == [True, True, True]  # num_fp16_res 4 at 32 px: threshold 8
    assert D.b32.fromrgb.weight_gain == pytest.approx(1 / math.sqrt(3))
    assert D.b4.conv.weight_gain == pytest.approx(1 / math.sqrt(513 * 9))
    assert D.b32.skip.bias is None and D.b32.skip.activation == "linear" and D.b32.skip.conv_clamp is None
    assert not hasattr(D.b4.fc, "conv_clamp")  # FC layers never clamp
    assert D.mapping.fc0.weight_gain == pytest.approx(0.01 / math.sqrt(512)) and D.mapping.num_layers == 8
    assert not hasattr(D.mapping, "w_avg")


def test_unconditional_has_no_mapping_and_one_output() -> None:
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=64, channel_max=8)
    assert not hasattr(D, "mapping") and D.b4.out.weight.shape == (1, 8)
    assert D(torch.randn(4, 1, 8, 8), None).shape == (4, 1)


# ------------------------------------------------------------------------------------------------
# The forward pass, against a float64 re-derivation of spec §1.1, §1.4, §1.5 (loops where it helps).


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)


def _fc(p: dict[str, torch.Tensor], name: str, x: torch.Tensor, lr: float = 1.0, act: bool = False) -> torch.Tensor:
    w, b = p[f"{name}.weight"], p[f"{name}.bias"]
    y = x @ (w * lr / math.sqrt(w.shape[1])).t() + b * lr
    return _lrelu(y) if act else y


def _fir(x: torch.Tensor, pad: int, down: int) -> torch.Tensor:
    f = fir_filter().double()  # symmetric: a correlation equals the true convolution
    x = F.pad(x, [pad] * 4)
    y = F.conv2d(x, f[None, None].expand(x.shape[1], 1, 4, 4), groups=x.shape[1])
    return y[:, :, ::down, ::down]


def _conv(
    p: dict[str, torch.Tensor],
    name: str,
    x: torch.Tensor,
    *,
    down: bool = False,
    act: bool = True,
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    w = p[f"{name}.weight"]
    w = w / math.sqrt(w[0].numel())
    k = w.shape[2]
    if down and k == 3:  # spec §1.1: pad 2, FIR, 3x3 stride 2 without padding
        y = F.conv2d(_fir(x, 2, 1), w, stride=2)
    elif down:  # k = 1: FIR + decimation with 1 px padding, then the 1x1 conv
        y = F.conv2d(_fir(x, 1, 2), w)
    else:
        y = F.conv2d(x, w, padding=k // 2)
    if f"{name}.bias" in p:
        y = y + p[f"{name}.bias"][None, :, None, None]
    y = (_lrelu(y) if act else y) * gain
    return y.clamp(-clamp * gain, clamp * gain) if clamp is not None else y


def _mbstd(x: torch.Tensor, group: int) -> torch.Tensor:
    n = x.shape[0]
    g = min(group, n)
    stds = torch.empty(n, dtype=x.dtype)
    for j in range(n // g):
        members = torch.stack([x[i * (n // g) + j] for i in range(g)])  # strided: i·(N/G) + j
        var = ((members - members.mean(0)) ** 2).mean(0)  # population variance
        for i in range(g):
            stds[i * (n // g) + j] = (var + 1e-8).sqrt().mean()
    return torch.cat([x, stds[:, None, None, None].expand(n, 1, *x.shape[2:])], dim=1)


def reference_forward(
    D: Discriminator, x: torch.Tensor, c: torch.Tensor, clamp: float | None, group: int
) -> torch.Tensor:
    p = {k: v.double() for k, v in D.state_dict().items()}
    x = x.double()
    for r in D.block_resolutions:
        if r == D.img_resolution:
            x = _conv(p, f"b{r}.fromrgb", x, clamp=clamp)
        if hasattr(getattr(D, f"b{r}"), "skip"):
            y = _conv(p, f"b{r}.skip", x, down=True, act=False, gain=math.sqrt(0.5))
            h = _conv(p, f"b{r}.conv0", x, clamp=clamp)
            x = y + _conv(p, f"b{r}.conv1", h, down=True, gain=math.sqrt(0.5), clamp=clamp)
        else:
            x = _conv(p, f"b{r}.conv1", _conv(p, f"b{r}.conv0", x, clamp=clamp), down=True, clamp=clamp)
    e = _fc(p, "mapping.embed", c.double())
    cmap = e / (e.square().mean(1, keepdim=True) + 1e-8).sqrt()
    for i in range(D.mapping.num_layers):
        cmap = _fc(p, f"mapping.fc{i}", cmap, lr=0.01, act=True)
    x = _conv(p, "b4.conv", _mbstd(x, group), clamp=clamp)
    x = _fc(p, "b4.out", _fc(p, "b4.fc", x.flatten(1), act=True))
    return (x * cmap).sum(1, keepdim=True) / math.sqrt(cmap.shape[1])


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
@pytest.mark.parametrize("clamp", [None, 0.3], ids=["no clamp", "clamped"])
def test_forward_matches_a_float64_re_derivation(architecture: str, clamp: float | None) -> None:
    torch.manual_seed(0)
    D = Discriminator(
        c_dim=3,
        img_resolution=16,
        img_channels=2,
        architecture=architecture,
        channel_base=128,
        channel_max=8,
        conv_clamp=clamp,
        mapping_kwargs={"num_layers": 3},
        epilogue_kwargs={"mbstd_group_size": 2},
    )
    with torch.no_grad():  # biases off zero, so that every term of the sum shows
        for name, value in D.named_parameters():
            if name.endswith("bias"):
                value.normal_(0, 0.3)
    x, c = torch.randn(6, 2, 16, 16), F.one_hot(torch.tensor([0, 1, 2, 2, 1, 0]), 3).float()
    expected = reference_forward(D, x, c, clamp, group=2)
    assert torch.allclose(D(x, c).double(), expected, rtol=1e-4, atol=1e-5)


def test_minibatch_std_uses_strided_groups_and_names_a_bad_batch() -> None:
    layer = MinibatchStdLayer(group_size=2)
    x = torch.zeros(4, 1, 1, 1)
    x[0] = 1.0  # group of sample 0 is {0, 2}: population std 0.5; samples 1 and 3 see 0
    out = layer(x)[:, 1].flatten()
    assert torch.allclose(out, torch.tensor([0.5, 1e-4, 0.5, 1e-4]), atol=1e-6)
    with pytest.raises(ValueError, match=r"the batch \(6\) must be a multiple of the group size \(4\)"):
        MinibatchStdLayer(group_size=4)(torch.zeros(6, 1, 2, 2))


def test_shape_errors_name_both_sizes() -> None:
    D = Discriminator(c_dim=2, img_resolution=8, img_channels=1, channel_base=32, channel_max=4)
    with pytest.raises(ValueError, match=r"D expects images \(N, 1, 8, 8\), got \(2, 3, 8, 8\)"):
        D(torch.zeros(2, 3, 8, 8), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"c must have shape \(2, 2\), got \(2, 5\)"):
        D(torch.zeros(2, 1, 8, 8), torch.zeros(2, 5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(architecture="skip"), r"architecture must be one of \('resnet', 'orig'\), got 'skip'"),
        (dict(block_kwargs={"freeze_layers": 2}), r"Freeze-D \(freeze_layers=2\) is not supported"),
        (dict(img_resolution=12), r"img_resolution must be a power of 2 and at least 8, got 12"),
    ],
    ids=["skip", "freeze", "resolution"],
)
def test_unsupported_configurations_are_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Discriminator(**{**dict(c_dim=2, img_resolution=8, img_channels=1, channel_base=32, channel_max=4), **kwargs})


# ------------------------------------------------------------------------------------------------
# Snapshots: G, D and G_ema the way NVIDIA's hold them, read back without executing anything.


def tiny_pair() -> tuple[Generator, Discriminator]:
    torch.manual_seed(1)
    G = Generator(
        z_dim=8,
        c_dim=3,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 64, "channel_max": 16},
    )
    D = Discriminator(
        c_dim=3,
        img_resolution=16,
        img_channels=1,
        channel_base=64,
        channel_max=16,
        epilogue_kwargs={"mbstd_group_size": 2},
    )
    return G, D


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_snapshot_holds_g_d_and_g_ema(tmp_path: Path, protocol: int) -> None:
    G, D = tiny_pair()
    G_ema = Generator(**G.init_kwargs)
    path = tmp_path / "network-snapshot-000000.pkl"
    poison = "import os\nos.environ['ATGAN_POISONED'] = '1'\nraise SystemExit('executed')\n"
    write_snapshot(path, G_ema, G=G, D=D, protocol=protocol, module_src=poison, training_set_kwargs={"resolution": 16})

    data = read_snapshot(path)
    assert list(data) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert data["D"].class_name == "Discriminator" and data["D"].init_kwargs == D.init_kwargs
    assert {r.class_name for r in data["D"].children.values()} == {
        "DiscriminatorBlock",
        "MappingNetwork",
        "DiscriminatorEpilogue",
    }

    z, c = torch.randn(4, 8), F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    x = torch.randn(4, 1, 16, 16)
    loaded_D = load_discriminator_pickle(path)
    assert torch.equal(loaded_D(x, c), D(x, c)) and not loaded_D.training
    assert torch.equal(load_generator_pickle(path, which="G")(z, c), G(z, c))
    assert torch.equal(load_generator_pickle(path)(z, c), G_ema(z, c))
    assert "ATGAN_POISONED" not in __import__("os").environ  # the embedded source was never run


def test_a_snapshot_without_a_real_discriminator_is_named(tmp_path: Path) -> None:
    G, _ = tiny_pair()
    write_snapshot(tmp_path / "g.pkl", G)  # the stand-in D record of the generator-only writer
    with pytest.raises(CheckpointError, match=r"g\.pkl:D: .*"):
        load_discriminator_pickle(tmp_path / "g.pkl")


# ------------------------------------------------------------------------------------------------
# The primitives the discriminator and the trainer add.


def test_downsample_conv_matches_its_definitions() -> None:
    torch.manual_seed(2)
    x, f = torch.randn(2, 3, 8, 8).double(), fir_filter().double()
    w3, w1 = torch.randn(4, 3, 3, 3).double(), torch.randn(4, 3, 1, 1).double()
    # k = 3: pad 2, FIR, stride-2 conv; k = 1: FIR filtered with decimation (pad 1), then the 1x1 conv.
    expected3 = F.conv2d(upfirdn2d(x, f, pad=(2, 2, 2, 2)), w3, stride=2)
    expected1 = F.conv2d(upfirdn2d(x, f, down=2, pad=(1, 1, 1, 1)), w1)
    assert torch.allclose(downsample_conv2d(x, w3, f), expected3) and expected3.shape == (2, 4, 4, 4)
    assert torch.allclose(downsample_conv2d(x, w1, f), expected1) and expected1.shape == (2, 4, 4, 4)
    # The two orders of the 1x1 case agree (they commute).
    assert torch.allclose(expected1, F.conv2d(upfirdn2d(x, f, pad=(1, 1, 1, 1)), w1, stride=2))


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_the_non_fused_modulated_convolution_equals_the_fused_one(up: int, demodulate: bool) -> None:
    torch.manual_seed(3)
    x, w, s = torch.randn(3, 5, 8, 8), torch.randn(6, 5, 3, 3), torch.randn(3, 5)
    f, noise = fir_filter(), torch.randn(3, 1, 8 * up, 8 * up)
    kwargs = dict(demodulate=demodulate, up=up, resample_filter=f, noise=noise)
    fused, unfused = modulated_conv2d(x, w, s, **kwargs), modulated_conv2d(x, w, s, fused=False, **kwargs)  # type: ignore[arg-type]
    assert torch.allclose(fused, unfused, atol=1e-5)


def test_the_generator_runs_either_form() -> None:
    G, _ = tiny_pair()
    z, c = torch.randn(4, 8), F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    ws = G.mapping(z, c)
    assert torch.allclose(G.synthesis(ws), G.synthesis(ws, fused_modconv=False), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Augmentation and the ADA heuristic.


def test_the_pipe_is_the_identity_at_p_zero_and_draws_nothing() -> None:
    x, rng = torch.randn(4, 1, 8, 8), torch.Generator().manual_seed(0)
    state = rng.get_state()
    assert AugmentPipe(p=0.0)(x, generator=rng) is x
    assert torch.equal(rng.get_state(), state)


def test_translate_moves_each_image_by_its_shift_with_a_reflected_border() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(2, 1, 1, 1)
    moved = translate(x, torch.tensor([[1, 0], [0, -1]]))
    assert torch.equal(moved[0, 0, :, 1:], x[0, 0, :, :3]) and torch.equal(moved[0, 0, :, 0], x[0, 0, :, 1])
    assert torch.equal(moved[1, 0, :3], x[1, 0, 1:]) and torch.equal(moved[1, 0, 3], x[1, 0, 2])


def test_at_p_one_every_image_is_flipped_or_shifted_and_gradients_flow() -> None:
    x = torch.randn(8, 1, 16, 16, requires_grad=True)
    rng = torch.Generator().manual_seed(0)
    assert torch.equal(AugmentPipe(p=1.0, xint=False)(x, generator=rng), x.flip(3))
    shifted = AugmentPipe(p=1.0, xflip=False)(x, generator=rng)
    assert not torch.equal(shifted, x)
    for k in range(8):  # each is x moved by some (dx, dy) within 0.125 of 16 px = 2 px
        shifts = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)]
        assert any(torch.equal(shifted[k], translate(x[k : k + 1], torch.tensor([s]))[0]) for s in shifts)
    y = AugmentPipe(p=1.0)(x, generator=rng)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert y.shape == x.shape and grad.abs().sum() > 0


def test_ada_moves_p_towards_the_target_sign() -> None:
    ada = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1.0)  # p moves by batch·4/1000 per update
    for _ in range(4):
        ada.observe(torch.ones(10, 1))  # r_t = 1 > 0.6: D is too sure of the reals
        ada.step(batch_size=50)
    assert ada.p == pytest.approx(0.2) and ada.last_rt == 1.0 and ada.sign_count == 0
    for _ in range(8):
        ada.observe(-torch.ones(10, 1))  # r_t = -1 < 0.6
        ada.step(batch_size=50)
    assert ada.p == 0.0  # never below zero

"""atgan_plugin.paper.stylegan2_training: a tiny conditional StyleGAN2-ADA trained for a few steps on a real
Fashion-MNIST slice (the losses move the right way, D tells real from fake), the files it writes, bit-exact
resuming, the NaN guard, and the rules of each step (EMA, lazy regularisation, padding).

The networks are tiny (8 to 32 channels, z = w = 16), so a step costs about a tenth of a second.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from atgan_plugin.adapters import StyleGAN2ADAGenerator, load_generator
from atgan_plugin.checkpoints import load_checkpoint, load_training_state
from atgan_plugin.data import TensorDataset
from atgan_plugin.paper import stylegan2_loss, stylegan2_training
from atgan_plugin.paper.gan_training import ResumeMismatchError, TrainingDivergedError
from atgan_plugin.paper.stylegan2_training import (
    StyleGAN2TrainingConfig,
    is_finished,
    pad_images,
    train_stylegan2_ada,
)
from atgan_plugin.runs import is_complete
from atgan_plugin.vendored.stylegan2_ada.snapshot import load_discriminator_pickle, load_generator_pickle

CPU = torch.device("cpu")
TINY = dict(
    batch_size=8, z_dim=16, w_dim=16, channel_base=256, channel_max=32, sample_every=1000, checkpoint_every=1000
)


def train(data: TensorDataset, out: Path, steps: int, **overrides: Any) -> dict[str, float]:
    config = StyleGAN2TrainingConfig(steps=steps, **{**TINY, **overrides})  # type: ignore[arg-type]
    return train_stylegan2_ada(data, out, config, device=CPU, progress=False, extra_metadata={"dataset": "test-slice"})


def log_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def slice512(fashion_train: TensorDataset) -> TensorDataset:
    return fashion_train.subset(512)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, slice512: TensorDataset) -> Path:
    """40 steps of batch 16 on 512 real images, every step logged."""
    out = tmp_path_factory.mktemp("stylegan") / "run"
    train(slice512, out, steps=40, batch_size=16, log_every=1, sample_every=20)
    return out


# ------------------------------------------------------------------------------------------------
# It learns.


def test_the_losses_move_the_right_way(learned: Path) -> None:
    lines = log_lines(learned)
    assert [line["step"] for line in lines] == list(range(1, 41))

    def late(name: str) -> float:  # the mean over the last 20 steps: one step's value is noisy
        return sum(line[name] for line in lines[20:]) / 20

    # D gets ahead of chance (2·ln 2 for its two softplus terms, ln 2 for G's), and of where it started.
    assert late("loss_D") < min(lines[0]["loss_D"], 2 * math.log(2) - 0.05)
    assert late("loss_G") > math.log(2) + 0.05
    assert late("d_accuracy") > 0.6 and late("logits_real") > late("logits_fake")


def test_d_tells_real_from_fake_better_than_chance(learned: Path, fashion_train: TensorDataset) -> None:
    """On images it never saw: reals from another part of the slice, fresh fakes of G (the snapshot's)."""
    snapshot = learned / "network-snapshot.pkl"
    D, G = load_discriminator_pickle(snapshot), load_generator_pickle(snapshot, which="G")
    held_out = fashion_train.images[4000:4128]
    labels = F.one_hot(fashion_train.labels[4000:4128], 10).float()
    z = torch.randn(128, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        real = D(pad_images(held_out, 32), labels)
        fake = D(G(z, labels, noise_mode="random"), labels)
    accuracy = ((real > 0).float().mean() + (fake < 0).float().mean()) / 2
    assert accuracy > 0.58, f"D's accuracy on held-out reals and fresh fakes: {accuracy:.2f}"


def test_g_ema_averages_g_and_w_avg_follows_the_mapping(learned: Path) -> None:
    G = load_generator_pickle(learned / "network-snapshot.pkl", which="G")
    G_ema = load_generator_pickle(learned / "network-snapshot.pkl")
    differ = [
        name for name, p in G.named_parameters() if not torch.equal(p, G_ema.get_submodule("").get_parameter(name))
    ]
    assert differ, "G_ema is a copy of G: the moving average never averaged"
    assert torch.equal(G.mapping.w_avg, G_ema.mapping.w_avg) and G.mapping.w_avg.abs().sum() > 0


def test_writes_every_file(learned: Path) -> None:
    assert {p.name for p in learned.iterdir()} == {
        "state.pt",
        "generator.safetensors",
        "network-snapshot.pkl",
        "samples",
        "log.jsonl",
        "complete.json",
    }
    assert is_finished(learned, 40) and not is_finished(learned, 41)
    # Samples every 20 steps and at the end: 8 per class in rows of 8, 32x32 tiles with 2-pixel padding.
    assert sorted(p.name for p in (learned / "samples").iterdir()) == ["step_000020.png", "step_000040.png"]
    with Image.open(learned / "samples" / "step_000040.png") as image:
        assert image.size == (8 * 32 + 9 * 2, 10 * 32 + 11 * 2)
    state = load_training_state(learned / "state.pt")
    assert state["step"] == 40 and state["cur_nimg"] == 640 and state["arch"] == "stylegan2-ada"

    generator = load_generator(learned / "generator.safetensors")
    assert isinstance(generator, StyleGAN2ADAGenerator) and not generator.training
    assert generator.num_classes == 10 and generator.image_shape == (1, 32, 32)
    with torch.no_grad():
        images = generator(generator.sample_z(4, generator=torch.Generator().manual_seed(0)), torch.arange(4))
    assert images.shape == (4, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    training = load_checkpoint(learned / "generator.safetensors").training
    assert training["step"] == 40 and training["arch"] == "stylegan2-ada" and training["dataset"] == "test-slice"
    assert training["config"]["channel_base"] == 256 and set(training["metrics"]) >= {"loss_G", "loss_D"}
    # The exported generator is G_ema.
    G_ema = load_generator_pickle(learned / "network-snapshot.pkl")
    for name, tensor in G_ema.state_dict().items():
        assert torch.equal(generator.network.state_dict()[name], tensor), name


# ------------------------------------------------------------------------------------------------
# Resuming, and the NaN guard.

# R1 and ADA updates every other step, and an ADA target that the first steps exceed: a resume has to
# restore the optimiser moments, the random streams, G_ema, w_avg and the augmentation state to match.
RESUME = dict(d_reg_interval=2, ada_interval=2, ada_kimg=0.1, ada_target=0.05, checkpoint_every=3)


def test_a_killed_run_resumes_bit_exactly(
    tmp_path: Path, slice512: TensorDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(slice512, tmp_path / "straight", steps=6, **RESUME)
    calls: list[int] = []
    original = stylegan2_loss.generator_loss

    def dies_at_step_5(*args: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # stands in for a kill: nothing after this line runs
        return original(*args)

    with monkeypatch.context() as patch:
        patch.setattr(stylegan2_loss, "generator_loss", dies_at_step_5)
        with pytest.raises(KeyboardInterrupt):
            train(slice512, tmp_path / "resumed", steps=6, **RESUME)
    assert load_training_state(tmp_path / "resumed" / "state.pt")["step"] == 3 and not is_complete(tmp_path / "resumed")
    train(slice512, tmp_path / "resumed", steps=6, **RESUME)

    straight, resumed = (load_training_state(tmp_path / name / "state.pt") for name in ("straight", "resumed"))
    assert straight["ada"]["p"] > 0, "the augmentation never ran: the test would not cover it"
    assert straight["ada"] == resumed["ada"] and straight["cur_nimg"] == resumed["cur_nimg"] == 48
    for network in ("G", "D", "G_ema"):
        for name, tensor in straight[network].items():
            assert torch.equal(tensor, resumed[network][name]), f"{network}.{name}"
    for optimiser in ("opt_G", "opt_D"):
        for index, moments in straight[optimiser]["state"].items():
            for key, value in moments.items():
                assert torch.equal(value, resumed[optimiser]["state"][index][key]), f"{optimiser} {index} {key}"
    assert log_lines(tmp_path / "straight") == log_lines(tmp_path / "resumed")


def test_a_new_learning_rate_is_applied_with_the_lazy_ratios(tmp_path: Path, slice512: TensorDataset) -> None:
    train(slice512, tmp_path, steps=1)
    train(slice512, tmp_path, steps=2, lr=0.001)
    state = load_training_state(tmp_path / "state.pt")
    [g_group], [d_group] = state["opt_G"]["param_groups"], state["opt_D"]["param_groups"]
    assert g_group["lr"] == pytest.approx(0.001 * 4 / 5) and d_group["lr"] == pytest.approx(0.001 * 16 / 17)
    assert g_group["betas"] == pytest.approx((0.0, 0.99**0.8)) and d_group["betas"] == pytest.approx(
        (0.0, 0.99 ** (16 / 17))
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_divergence_stops_training_and_keeps_the_last_good_state(
    tmp_path: Path, slice512: TensorDataset, monkeypatch: pytest.MonkeyPatch, bad: float
) -> None:
    calls: list[int] = []
    original = stylegan2_loss.discriminator_loss

    def poisoned(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        calls.append(1)
        loss, fake, real = original(*args)
        return (loss * bad if len(calls) == 2 else loss), fake, real

    monkeypatch.setattr(stylegan2_loss, "discriminator_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=rf"diverged at step 2: loss_D is {bad}; the last good state is in"):
        train(slice512, tmp_path, steps=4, checkpoint_every=1)
    assert load_training_state(tmp_path / "state.pt")["step"] == 1
    assert load_checkpoint(tmp_path / "generator.safetensors").training["step"] == 1
    assert not is_complete(tmp_path)


def test_nan_in_the_data_is_caught(tmp_path: Path, slice512: TensorDataset) -> None:
    poisoned = TensorDataset(torch.full_like(slice512.images, float("nan")), slice512.labels)
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 1: loss_D is nan"):
        train(poisoned, tmp_path, steps=2, checkpoint_every=1)
    assert not (tmp_path / "state.pt").exists()


def test_seed_makes_training_reproducible(tmp_path: Path, slice512: TensorDataset) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(slice512, tmp_path / name, steps=1, seed=seed)
    a, b, c = (load_checkpoint(tmp_path / n / "generator.safetensors").tensors for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# The rules of a step.


def test_the_first_ema_step_copies_and_the_half_life_is_ema_kimg() -> None:
    assert stylegan2_loss.ema_beta(32, cur_nimg=0, ema_kimg=10, rampup=0.05) == 0.0
    # Past the ramp-up, ema_kimg·1000 images of updates leave half of the old average.
    beta = stylegan2_loss.ema_beta(32, cur_nimg=10**7, ema_kimg=10, rampup=0.05)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    # During it, the half-life is 5 % of the images shown so far.
    assert stylegan2_loss.ema_beta(32, cur_nimg=64_000, ema_kimg=10, rampup=0.05) == pytest.approx(0.5 ** (32 / 3200))


def test_lazy_regularisation_scales_lr_and_betas() -> None:
    lr, betas = stylegan2_loss.lazy_regularisation(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17) and betas == pytest.approx((0.0, 0.99 ** (16 / 17)))


def test_r1_is_the_gradient_norm_of_the_unaugmented_reals() -> None:
    from atgan_plugin.vendored.stylegan2_ada.discriminator import Discriminator

    D = Discriminator(c_dim=2, img_resolution=8, img_channels=1, channel_base=32, channel_max=4)
    x, c = torch.randn(4, 1, 8, 8), F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    loss, norms, _ = stylegan2_loss.r1_penalty(D, x, c, lambda images: images.flip(3), gamma=2.0)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(xg.flip(3), c).sum(), xg)
    assert torch.allclose(norms, grad.square().sum(dim=[1, 2, 3])) and torch.allclose(loss, norms.mean())


def test_pad_images_centres_them_on_the_background() -> None:
    images = torch.ones(2, 1, 28, 28)
    padded = pad_images(images, 32)
    assert padded.shape == (2, 1, 32, 32)
    assert (padded[:, :, 2:30, 2:30] == 1).all() and padded.sum() == 2 * (28 * 28 - (32 * 32 - 28 * 28))
    with pytest.raises(ValueError, match=r"images of 28x28 do not fit in 16x16"):
        pad_images(images, 16)


def test_network_args_follow_the_data(slice512: TensorDataset) -> None:
    keep = slice512.labels < 4
    args = stylegan2_training.network_args(
        TensorDataset(slice512.images[keep], slice512.labels[keep]), StyleGAN2TrainingConfig()
    )
    assert args["G"]["c_dim"] == args["D"]["c_dim"] == 4
    assert args["G"]["img_resolution"] == args["D"]["img_resolution"] == 32
    assert args["D"]["epilogue_kwargs"] == {"mbstd_group_size": 4} and args["D"]["architecture"] == "resnet"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(batch_size=6), r"batch_size \(6\) must be a multiple of the minibatch-std group \(4\)"),
        (dict(r1_gamma=-1.0), r"r1_gamma must be a finite number >= 0, got -1\.0"),
        (dict(lr=float("nan")), r"lr must be a positive finite number, got nan"),
        (dict(steps=0), r"steps must be >= 1, got 0"),
        (dict(ada_target=1.0), r"ada_target must be in \(0, 1\), got 1\.0"),
        (dict(ema_rampup=0.0), r"ema_rampup must be a positive finite number or None, got 0\.0"),
    ],
    ids=["batch vs mbstd", "r1_gamma", "lr nan", "steps 0", "ada_target", "ema_rampup"],
)
def test_bad_training_settings_are_named(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StyleGAN2TrainingConfig(**overrides)


def test_a_resume_on_other_data_names_what_differs(tmp_path: Path, slice512: TensorDataset) -> None:
    train(slice512, tmp_path, steps=1)
    keep = slice512.labels < 4
    with pytest.raises(ResumeMismatchError, match=r"trained with c_dim 10 \(now 4\); it cannot be resumed"):
        train(TensorDataset(slice512.images[keep], slice512.labels[keep]), tmp_path, steps=2)

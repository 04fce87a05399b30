"""StyleGAN2ADAGenerator: the protocol, truncation and noise options, files, and AT-GAN with it.

A tiny conditional StyleGAN2-ADA (16×16, 4 classes) and a tiny CIFAR-shaped CNN trained in a
few seconds to recognise the generator's classes stand in for NVIDIA's cifar10.pkl and a
CIFAR-10 model, so the attack starts from a low success rate.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import foolbox as fb
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.adapters import ConditionalGenerator, StyleGAN2ADAGenerator, check_generator, load_generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.paper.cifar import SmallCifarCNN
from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import write_snapshot

NUM_CLASSES = 4


def tiny_network(c_dim: int = NUM_CLASSES, seed: int = 0) -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = Generator(
            z_dim=8,
            c_dim=c_dim,
            w_dim=16,
            img_resolution=16,
            img_channels=3,
            mapping_kwargs={"num_layers": 2},
            synthesis_kwargs={"channel_base": 128, "channel_max": 16, "num_fp16_res": 2, "conv_clamp": 256},
        )
        with torch.no_grad():
            for block in network.synthesis.blocks():
                block.torgb.weight.mul_(0.2)  # keep random-init images inside [-1, 1], unsaturated
            for name, p in network.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.3)
            network.mapping.w_avg.normal_()
    return network.eval()


@pytest.fixture
def generator() -> StyleGAN2ADAGenerator:
    return StyleGAN2ADAGenerator(tiny_network()).eval()


def latents(generator: nn.Module, n: int, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return generator.sample_z(n, generator=torch.Generator().manual_seed(seed)), torch.arange(n) % NUM_CLASSES


def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return generator(z, y)


@pytest.fixture(scope="module")
def cifar_like_target() -> nn.Module:
    """A small CNN trained on G_orig's own images (accuracy ~0.95): the attack has to earn its success."""
    G = StyleGAN2ADAGenerator(tiny_network()).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCifarCNN(num_classes=NUM_CLASSES, width=8, image_size=16)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        rng = torch.Generator().manual_seed(1)
        for _ in range(80):
            z = G.sample_z(64, generator=rng)
            y = torch.randint(NUM_CLASSES, (64,), generator=rng)
            loss = F.cross_entropy(model(generate(G, z, y)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


# ------------------------------------------------------------------------------------------------
# The protocol and the options.


def test_satisfies_the_protocol(generator: StyleGAN2ADAGenerator) -> None:
    assert isinstance(generator, ConditionalGenerator)
    check_generator(generator)
    assert (generator.z_dim, generator.num_classes, generator.image_shape) == (8, NUM_CLASSES, (3, 16, 16))
    z, y = latents(generator, 6)
    assert z.shape == (6, 8)
    images = generate(generator, z, y)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1


def test_output_is_the_network_image_mapped_to_the_unit_interval(generator: StyleGAN2ADAGenerator) -> None:
    z, y = latents(generator, 4)
    generator.network.synthesis.b16.torgb.bias.data += 2.0  # push some pixels outside [-1, 1]
    with torch.no_grad():
        raw = generator.network(z, F.one_hot(y, NUM_CLASSES).float())
    assert raw.max() > 1
    assert torch.equal(generate(generator, z, y), ((raw + 1) / 2).clamp(0, 1))


def test_same_latent_and_class_give_the_same_image(generator: StyleGAN2ADAGenerator) -> None:
    z, y = latents(generator, 4)
    assert torch.equal(generate(generator, z, y), generate(generator, z, y))
    assert torch.equal(generate(generator, z, y), generate(copy.deepcopy(generator), z, y))
    assert not torch.equal(generate(generator, z, y), generate(generator, z, (y + 1) % NUM_CLASSES))
    generator.noise_mode = "random"
    assert not torch.equal(generate(generator, z, y), generate(generator, z, y))


def test_truncation_psi_zero_gives_the_class_mean_image(generator: StyleGAN2ADAGenerator) -> None:
    generator.truncation_psi = 0.0
    y = torch.tensor([0, 0, 0, 2, 2])
    z = generator.sample_z(5, generator=torch.Generator().manual_seed(3))
    images = generate(generator, z, y)
    torch.testing.assert_close(images[1:3], images[:1].expand(2, -1, -1, -1))  # same class, any z
    torch.testing.assert_close(images[4], images[3])
    assert (images[0] - images[3]).abs().max() > 1e-3  # another class, another mean
    # The class mean: the image of the class's mean w (estimated from 256 fixed latents) ...
    with torch.no_grad():
        centre_image = generator.network.synthesis(
            generator.class_w_avg[:1, None].expand(1, generator.network.num_ws, -1)
        )
    torch.testing.assert_close(images[0], ((centre_image[0] + 1) / 2).clamp(0, 1))
    # ... which is close to the mean w over many fresh latents of that class (error << spread of w).
    with torch.no_grad():
        z_many = torch.randn(4096, 8, generator=torch.Generator().manual_seed(11))
        w_many = generator.network.mapping(z_many, F.one_hot(torch.zeros(4096, dtype=torch.long), NUM_CLASSES).float())[
            :, 0
        ]
    spread = (w_many - w_many.mean(0)).norm(dim=1).mean()
    assert (generator.class_w_avg[0] - w_many.mean(0)).norm() < 0.3 * spread  # other classes: > 1.6


def test_global_truncation_centre_is_nvidias_w_avg(generator: StyleGAN2ADAGenerator) -> None:
    global_ = StyleGAN2ADAGenerator(generator.network, truncation_psi=0.0, truncation_center="global")
    z, y = latents(generator, 4)
    images = generate(global_, z, y)
    torch.testing.assert_close(images, images[:1].expand(4, -1, -1, -1))  # every class and z alike
    with torch.no_grad():
        expected = generator.network(z, F.one_hot(y, NUM_CLASSES).float(), truncation_psi=0.0)
    torch.testing.assert_close(images, ((expected + 1) / 2).clamp(0, 1))


def test_truncation_with_psi_below_one_moves_towards_the_centre(generator: StyleGAN2ADAGenerator) -> None:
    z, y = latents(generator, 8)
    ws = generator.ws(z, y)
    generator.truncation_psi = 0.5
    centre = generator.class_w_avg[y][:, None]
    torch.testing.assert_close(generator.ws(z, y) - centre, 0.5 * (ws - centre))


@pytest.mark.parametrize("fine_tune, prefixes", [("synthesis", {"synthesis"}), ("all", {"synthesis", "mapping"})])
def test_fine_tune_chooses_the_attack_parameters(fine_tune: str, prefixes: set[str]) -> None:
    generator = StyleGAN2ADAGenerator(tiny_network(), fine_tune=fine_tune)
    chosen = {id(p) for p in generator.attack_parameters()}
    names = {name.split(".")[1] for name, p in generator.named_parameters() if id(p) in chosen}
    assert names == prefixes
    assert len(chosen) == sum(1 for name, _ in generator.named_parameters() if name.split(".")[1] in prefixes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_mode": "fixed"}, "noise_mode must be one of"),
        ({"fine_tune": "mapping"}, "fine_tune must be one of"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"truncation_center": "median"}, "truncation_center must be one of"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StyleGAN2ADAGenerator(tiny_network(), **kwargs)


def test_unconditional_network_is_refused() -> None:
    with pytest.raises(CheckpointError, match="unconditional"):
        StyleGAN2ADAGenerator(tiny_network(c_dim=0))


def test_input_checks_name_both_sizes(generator: StyleGAN2ADAGenerator) -> None:
    with pytest.raises(ValueError, match=r"y must have shape \(3,\) to match z \(3, 8\), got \(2,\)"):
        generator(torch.randn(3, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 4\)"):
        generator(torch.randn(1, 8), torch.tensor([4]))


# ------------------------------------------------------------------------------------------------
# Files: NVIDIA pickles and our safetensors, through load_generator.


def test_load_generator_reads_an_nvidia_layout_pickle(tmp_path: Path, generator: StyleGAN2ADAGenerator) -> None:
    path = tmp_path / "cifar10"  # sniffed by content, not by extension
    write_snapshot(path, generator.network)
    loaded = load_generator(path)
    assert isinstance(loaded, StyleGAN2ADAGenerator) and not loaded.training
    z, y = latents(generator, 6)
    assert torch.equal(generate(loaded, z, y), generate(generator, z, y))
    options = StyleGAN2ADAGenerator.from_pickle(path, truncation_psi=0.5, noise_mode="none").options()
    assert options["truncation_psi"] == 0.5 and options["noise_mode"] == "none"


def test_load_generator_refuses_an_unconditional_pickle(tmp_path: Path) -> None:
    path = tmp_path / "uncond.pkl"
    write_snapshot(path, tiny_network(c_dim=0))
    with pytest.raises(
        CheckpointError, match=r"unconditional \(c_dim = 0\); a class-conditional generator is required"
    ):
        load_generator(path)


@pytest.mark.parametrize("half", [False, True], ids=["float32", "half"])
def test_safetensors_round_trip(tmp_path: Path, half: bool) -> None:
    generator = StyleGAN2ADAGenerator(tiny_network(), truncation_psi=0.7, fine_tune="all", noise_mode="none")
    path = tmp_path / "g.safetensors"
    generator.save(path, training={"source": "test"}, half=half)
    loaded = load_generator(path)
    assert isinstance(loaded, StyleGAN2ADAGenerator)
    assert loaded.options() == generator.options()
    assert loaded.network.init_kwargs == generator.network.init_kwargs
    z, y = latents(generator, 4)
    expected, got = generate(generator, z, y), generate(loaded, z, y)
    if half:
        torch.testing.assert_close(got, expected, atol=0.02, rtol=0)
    else:
        assert torch.equal(got, expected)
        assert torch.equal(loaded.class_w_avg, generator.class_w_avg)


# ------------------------------------------------------------------------------------------------
# AT-GAN with a StyleGAN2-ADA generator.


def success(model: nn.Module, images: torch.Tensor, sources: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(1) != sources).float().mean().item()


def test_fit_raises_success_and_stays_close(generator: StyleGAN2ADAGenerator, cifar_like_target: nn.Module) -> None:
    config = TransferConfig(alpha=3, beta=2, steps=30, lr=0.01, batch_size=32)
    fit = fit_attack_generator(generator, cifar_like_target, config=config, progress=False)
    z, y = latents(generator, 400, seed=123)
    reference, adversarial = generate(generator, z, y), generate(fit.generator, z, y)
    before, after = success(cifar_like_target, reference, y), success(cifar_like_target, adversarial, y)
    assert before < 0.2  # the target recognises G_orig's classes
    assert after > before + 0.5
    l2 = (adversarial - reference).flatten(1).norm(dim=1)
    assert l2.mean() < 4.0  # of a possible ~27 (16×16×3 pixels in [0, 1])
    # G_orig untouched, the mapping network frozen (the default fine_tune="synthesis").
    assert torch.equal(generate(generator, z, y), reference)
    for (name, p), q in zip(generator.network.named_parameters(), fit.generator.network.parameters(), strict=True):
        assert torch.equal(p, q) == name.startswith("mapping."), name


def test_both_faces_work_with_the_adapter(generator: StyleGAN2ADAGenerator, cifar_like_target: nn.Module) -> None:
    settings: dict[str, Any] = dict(alpha=3, beta=2, steps=20, lr=0.01, batch_size=32, progress=False)
    z, y = latents(generator, 12, seed=7)
    x = generate(generator, z, y)  # inputs give count, shape and device (latent="random")
    adv = ATGANAttack(cifar_like_target, generator=generator, **settings).perturb(x, y)
    fmodel = fb.PyTorchModel(cifar_like_target, bounds=(0, 1), device="cpu")
    raw, clipped, is_adv = ATGANAttack(generator=generator, **settings)(fmodel, x, y, epsilons=None)
    assert torch.equal(adv, raw)  # same seed and settings: the two faces agree
    assert adv.shape == x.shape and 0 <= adv.min() and adv.max() <= 1
    assert is_adv.shape == (12,) and is_adv.float().mean() > 0.5
    assert success(cifar_like_target, adv, y) > 0.5


def test_a_joint_fit_stacks_the_synthesis_only_and_equals_separate_fits(
    generator: StyleGAN2ADAGenerator, cifar_like_target: nn.Module
) -> None:
    from atgan_plugin.attack.fit import fit_attack_generators
    from atgan_plugin.attack.stacked import StackedGenerator

    stack = StackedGenerator(generator, list(generator.attack_parameters()), 2)
    assert stack.stacked and all(name.startswith("network.synthesis.") for name in stack.stacked)
    assert any(name.startswith("network.mapping.") for name in stack.shared)  # shared, not copied
    config = TransferConfig(alpha=3, beta=2, steps=3, lr=0.01, batch_size=8)
    joint = fit_attack_generators(generator, cifar_like_target, [1, 3], config=config, progress=False)
    alone = fit_attack_generator(generator, cifar_like_target, target=3, config=config, progress=False)
    for p, q in zip(joint[3].generator.parameters(), alone.generator.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=0)


@pytest.mark.gpu
def test_mixed_precision_on_cuda(generator: StyleGAN2ADAGenerator, cifar_like_target: nn.Module) -> None:
    # precision="auto": fp16 autocast in the fp16 blocks on CUDA; close to float32, and the fit runs.
    device = torch.device("cuda")
    G = copy.deepcopy(generator).to(device)
    z, y = latents(G, 16)
    z, y = z.to(device), y.to(device)
    fp32 = generate(StyleGAN2ADAGenerator(G.network, precision="fp32"), z, y)
    mixed = generate(G, z, y)
    assert mixed.dtype == torch.float32
    assert (mixed - fp32).abs().max() < 0.05
    target = copy.deepcopy(cifar_like_target).to(device)
    fit = fit_attack_generator(G, target, config=TransferConfig(steps=5, lr=0.01, batch_size=16), progress=False)
    assert all(torch.isfinite(p).all() for p in fit.generator.parameters())
    assert fit.history[-1]["step"] == 5


# ------------------------------------------------------------------------------------------------
# guard="auto" with a generator that carries no guard: a distilled one.


def test_gets_a_distilled_guard_that_holds_the_source_class_while_the_fit_raises_success(
    cifar_like_target: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atgan_plugin.attack import guards
    from atgan_plugin.attack.guards import DistillConfig, is_distilled_guard

    generator = StyleGAN2ADAGenerator(tiny_network()).eval()
    assert generator.default_guards == ()  # as NVIDIA's pickles: nothing to guard with but a distilled guard
    # This toy GAN's four classes differ little: a small ε keeps the guard well above chance (0.25).
    monkeypatch.setattr(guards, "DEFAULT_DISTILL", DistillConfig(steps=150, batch_size=32, width=8, epsilon=0.01))
    attack = ATGANAttack(
        cifar_like_target, generator=generator, steps=40, batch_size=16, lr=1e-3, search_steps=0, progress=False
    )
    (guard,) = attack.prepare_guard()
    assert is_distilled_guard(guard)
    z, y = latents(generator, 200, seed=9)
    with torch.no_grad():
        adversarial = attack.generate(y, z=z)
        reference = generate(generator, z, y)
        before = (cifar_like_target(reference).argmax(1) != y).float().mean()
        after = (cifar_like_target(adversarial).argmax(1) != y).float().mean()
        guard_orig = (guard(reference).argmax(1) == y).float().mean()
        guard_attack = (guard(adversarial).argmax(1) == y).float().mean()
    assert guard_orig > 0.5, guard_orig  # a guard that knows the classes, or the next line proves nothing
    assert after > before + 0.3, (before, after)
    assert guard_attack >= guard_orig - 0.1, (guard_orig, guard_attack)

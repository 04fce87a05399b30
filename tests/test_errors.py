"""Every bad input to the attack fails with a clear message, and input mistakes fail before the
expensive fit. One table per face; each row: (id, action, exception, message pattern, before fit)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import foolbox as fb
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.attack.losses import sample_rho
from atgan_plugin.checkpoints import Checkpoint, CheckpointError, save_checkpoint
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import build_classifier

FAST: dict[str, Any] = dict(steps=2, batch_size=8, progress=False)
Case = tuple[str, Callable[[SimpleNamespace], Any], type[Exception], str, bool]


@pytest.fixture
def ctx(
    tiny_generator: nn.Module,
    make_tiny_generator: Callable[..., nn.Module],
    tiny_target: nn.Module,
    fashion_test: TensorDataset,
    tmp_path: Path,
) -> SimpleNamespace:
    seven_classes = copy.deepcopy(tiny_target)
    seven_classes[-1] = nn.Linear(300, 7)
    return SimpleNamespace(
        G=tiny_generator,
        make_G=make_tiny_generator,
        model=tiny_target,
        model7=seven_classes.eval(),
        fmodel=fb.PyTorchModel(tiny_target, bounds=(0, 1), device="cpu"),
        fmodel7=fb.PyTorchModel(seven_classes.eval(), bounds=(0, 1), device="cpu"),
        x=fashion_test.images[:12].clone(),
        y=fashion_test.labels[:12].clone(),
        tmp=tmp_path,
    )


def adversary(c: SimpleNamespace, **kwargs: Any) -> ATGANAttack:
    return ATGANAttack(kwargs.pop("model", c.model), generator=kwargs.pop("generator", c.G), **{**FAST, **kwargs})


def foolbox(c: SimpleNamespace, **kwargs: Any) -> ATGANAttack:
    return ATGANAttack(generator=c.G, **{**FAST, **kwargs})


def with_value(y: torch.Tensor, index: int, value: int) -> torch.Tensor:
    y = y.clone()
    y[index] = value
    return y


class UnknownCriterion(fb.criteria.Criterion):
    def __repr__(self) -> str:
        return "UnknownCriterion()"

    def __call__(self, perturbed: Any, outputs: Any) -> Any:
        return outputs.argmax(axis=-1) == 0


def with_pixel(x: torch.Tensor, value: float) -> torch.Tensor:
    x = x.clone()
    x[1, 0, 3, 4] = value
    return x


class LogitsAndFeatures(nn.Module):
    """A model that returns a tuple ``(logits, images)``, as some research code does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x), x


def with_latent(c: SimpleNamespace, value: float) -> torch.Tensor:
    z = torch.zeros(len(c.y), 8)
    z[2, 1] = value
    return z


TUPLE = r"the model must return a tensor of logits \(N, classes\), got tuple; neither Foolbox nor AdverTorch"


class FirstLogit(nn.Module):
    """A model whose output is 1-D ``(N,)``: the first logit only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, 0]


IN_RANGE = r"must lie in \[0, 10\) \(the generator's classes\)"

# ------------------------------------------------------------------------------------------------
# Labels.

# A table, one case per line: formatted, each case would spread over six or more lines.
# fmt: off
LABELS: list[Case] = [
    ("label 10", lambda c: adversary(c).perturb(c.x, with_value(c.y, 3, 10)), ValueError, r"source labels " + IN_RANGE + r", got \d\.\.10", True),
    ("label -1", lambda c: adversary(c).perturb(c.x, with_value(c.y, 0, -1)), ValueError, r"source labels " + IN_RANGE + r", got -1\.\.", True),
    ("labels (N, 1)", lambda c: adversary(c).perturb(c.x, c.y[:, None]), ValueError, r"source labels must have shape \(12,\) to match the inputs, got \(12, 1\)", True),
    ("labels too few", lambda c: adversary(c).perturb(c.x, c.y[:5]), ValueError, r"source labels must have shape \(12,\) to match the inputs, got \(5,\)", True),
    ("labels scalar", lambda c: adversary(c).perturb(c.x, c.y[0]), ValueError, r"source labels must have shape \(12,\)", True),
    ("float labels", lambda c: adversary(c).perturb(c.x, c.y.float()), TypeError, r"source labels must be integer class indices, got dtype torch\.float32", True),
    ("bool labels", lambda c: adversary(c).perturb(c.x, c.y > 4), TypeError, r"source labels must be integer class indices, got dtype torch\.bool", True),
    ("target 10", lambda c: adversary(c, targeted=True).perturb(c.x, torch.full((12,), 10)), ValueError, r"target labels " + IN_RANGE, True),
    ("float targets", lambda c: adversary(c, targeted=True).perturb(c.x, c.y.double()), TypeError, r"target labels must be integer class indices, got dtype torch\.float64", True),
    ("targets too few", lambda c: adversary(c, targeted=True).perturb(c.x, c.y[:3]), ValueError, r"target labels must have shape \(12,\)", True),
    ("targeted source 11", lambda c: adversary(c, targeted=True).perturb(c.x, c.y, source_labels=with_value(c.y, 0, 11)), ValueError, r"source labels " + IN_RANGE, True),
    ("fb label 10", lambda c: foolbox(c)(c.fmodel, c.x, with_value(c.y, 2, 10), epsilons=None), ValueError, r"source labels " + IN_RANGE, True),
    ("fb float labels", lambda c: foolbox(c)(c.fmodel, c.x, fb.criteria.Misclassification(c.y.float()), epsilons=None), TypeError, r"source labels must be integer class indices", True),
    ("fb labels too few", lambda c: foolbox(c)(c.fmodel, c.x, c.y[:4], epsilons=None), ValueError, r"source labels must have shape \(12,\)", True),
    ("fb target -3", lambda c: foolbox(c)(c.fmodel, c.x, fb.criteria.TargetedMisclassification(with_value(c.y, 0, -3)), epsilons=None), ValueError, r"target labels " + IN_RANGE, True),
    ("fb source labels 10", lambda c: foolbox(c)(c.fmodel, c.x, fb.criteria.TargetedMisclassification(c.y), epsilons=None, source_labels=with_value(c.y, 1, 10)), ValueError, r"source labels " + IN_RANGE, True),
]
# fmt: on

# ------------------------------------------------------------------------------------------------
# Images.

# A table, one case per line: formatted, each case would spread over six or more lines.
# fmt: off
IMAGES: list[Case] = [
    ("images (N, H, W)", lambda c: adversary(c).perturb(c.x[:, 0], c.y), ValueError, r"inputs must have shape \(N, 1, 28, 28\) to match the generator, got \(12, 28, 28\)", True),
    ("3 channels", lambda c: adversary(c).perturb(c.x.repeat(1, 3, 1, 1), c.y), ValueError, r"inputs must have shape \(N, 1, 28, 28\) to match the generator, got \(12, 3, 28, 28\)", True),
    ("32x32", lambda c: adversary(c).perturb(F.pad(c.x, (2, 2, 2, 2)), c.y), ValueError, r"the model fails on inputs of shape \(N, 1, 32, 32\): mat1 and mat2", True),
    ("numpy", lambda c: adversary(c).perturb(c.x.numpy(), c.y), TypeError, r"inputs must be a torch\.Tensor, got ndarray", True),
    ("above 1", lambda c: adversary(c).perturb(c.x * 2 + 0.5, c.y), ValueError, r"inputs must lie within the model's bounds \[0\.0, 1\.0\], found values in \[0\.5, 2\.5\]", True),
    ("below 0", lambda c: adversary(c).perturb(c.x - 0.25, c.y), ValueError, r"inputs must lie within the model's bounds \[0\.0, 1\.0\], found values in \[-0\.25", True),
    ("outside clip range", lambda c: adversary(c, clip_min=-1.0, clip_max=0.5).perturb(c.x, c.y), ValueError, r"bounds \[-1\.0, 0\.5\], found values in \[0, 1\]", True),
    ("fb above 1", lambda c: foolbox(c)(c.fmodel, c.x + 1, c.y, epsilons=None), ValueError, r"inputs must lie within the model's bounds \[0, 1\]", True),
    ("fb 3 channels", lambda c: foolbox(c)(c.fmodel, c.x.repeat(1, 3, 1, 1), c.y, epsilons=None), ValueError, r"inputs must have shape \(N, 1, 28, 28\)", True),
    ("NaN pixel", lambda c: adversary(c).perturb(with_pixel(c.x, float("nan")), c.y), ValueError, r"inputs contain 1 NaN or infinite values", True),
    ("inf pixel", lambda c: adversary(c).perturb(with_pixel(c.x, float("inf")), c.y), ValueError, r"inputs contain 1 NaN or infinite values", True),
    ("NaN pixel, sources predicted", lambda c: adversary(c).perturb(with_pixel(c.x, float("nan"))), ValueError, r"inputs contain 1 NaN", True),
    ("NaN pixel, invert", lambda c: adversary(c, latent="invert").perturb(with_pixel(c.x, float("nan")), c.y), ValueError, r"inputs contain 1 NaN", True),
    ("fb NaN pixel", lambda c: foolbox(c)(c.fmodel, with_pixel(c.x, float("nan")), c.y, epsilons=None), ValueError, r"inputs contain 1 NaN", True),
    ("fb -inf pixel", lambda c: foolbox(c)(c.fmodel, with_pixel(c.x, -float("inf")), c.y, epsilons=None), ValueError, r"inputs contain 1 NaN", True),
    ("uint8 images", lambda c: adversary(c).perturb((c.x * 255).to(torch.uint8), c.y), TypeError, r"inputs must be floating-point images, got dtype torch\.uint8", True),
    ("fb uint8 images", lambda c: foolbox(c)(c.fmodel, c.x.round().to(torch.uint8), c.y, epsilons=None), TypeError, r"inputs must be floating-point images, got dtype torch\.uint8", True),
    ("fb int64 images", lambda c: foolbox(c)(c.fmodel, c.x.round().long(), c.y, epsilons=None), TypeError, r"got dtype torch\.int64", True),
    ("fb empty batch", lambda c: foolbox(c)(c.fmodel, c.x[:0], c.y[:0], epsilons=None), ValueError, r"inputs hold no images \(a batch of 0\): Foolbox's attack call cannot judge an empty batch", True),
]
# fmt: on

# ------------------------------------------------------------------------------------------------
# Models, generators and configuration.

# A table, one case per line: formatted, each case would spread over six or more lines.
# fmt: off
SETUP: list[Case] = [
    ("model has 7 classes", lambda c: adversary(c, model=c.model7).perturb(c.x, c.y), ValueError, r"the generator has 10 classes but the model returns logits of shape \(8, 7\); they must agree", False),
    ("fb model has 7 classes", lambda c: foolbox(c)(c.fmodel7, c.x, c.y, epsilons=None), ValueError, r"the generator has 10 classes but the model returns logits", False),
    ("targeted without y", lambda c: adversary(c, targeted=True).perturb(c.x), ValueError, r"a targeted attack needs the target labels: perturb\(x, y=targets\)", True),
    ("targeted y=None", lambda c: adversary(c, targeted=True)(c.x, None), ValueError, r"a targeted attack needs the target labels", True),
    ("no model to perturb", lambda c: foolbox(c).perturb(c.x, c.y), ValueError, r"no model: for the AdverTorch face pass it first, ATGANAttack\(model, generator=G\)", True),
    ("no model to fit", lambda c: foolbox(c).fit(), ValueError, r"no model given: pass one to fit\(\)/generate\(\), or to ATGANAttack\(model, \.\.\.\)", True),
    ("no model to generate", lambda c: foolbox(c).generate(c.y), ValueError, r"no model given", True),
    ("unknown latent mode", lambda c: ATGANAttack(generator=c.G, latent="nearest"), ValueError, r"latent must be one of \('random', 'invert'\), got 'nearest'", True),
    ("clip_min above clip_max", lambda c: ATGANAttack(c.model, generator=c.G, clip_min=1.0, clip_max=0.0), ValueError, r"clip_min \(1\.0\) must be below clip_max \(0\.0\)", True),
    ("not a generator", lambda c: ATGANAttack(generator=nn.Linear(2, 2)), TypeError, r"Linear is not a ConditionalGenerator: it lacks z_dim", True),
    ("generator is a function", lambda c: ATGANAttack(generator=lambda z, y: z), TypeError, r"must be a torch\.nn\.Module, got function", True),
    ("fit target 10", lambda c: adversary(c).fit(target=10), ValueError, r"target class 10 is outside \[0, 10\)", False),
    ("steps 0", lambda c: ATGANAttack(generator=c.G, steps=0), ValueError, r"steps must be >= 1, got 0", True),
    ("batch_size 0", lambda c: ATGANAttack(generator=c.G, batch_size=0), ValueError, r"batch_size must be >= 1, got 0", True),
    ("lr 0", lambda c: ATGANAttack(generator=c.G, lr=0.0), ValueError, r"lr must be positive, got 0\.0", True),
    ("alpha -1", lambda c: ATGANAttack(generator=c.G, alpha=-1.0), ValueError, r"alpha must be positive, got -1\.0", True),
    ("kappa -1", lambda c: ATGANAttack(generator=c.G, kappa=-1.0), ValueError, r"kappa must be positive, got -1\.0", True),
    ("gamma -1", lambda c: ATGANAttack(generator=c.G, gamma=-1.0), ValueError, r"gamma must be positive, got -1\.0", True),
    ("guard is a function", lambda c: ATGANAttack(generator=c.G, guard=lambda x: x), TypeError, r"guard must be 'auto', None, a torch\.nn\.Module classifier", True),
    ("second guard is a function", lambda c: ATGANAttack(generator=c.G, guard=[c.model, lambda x: x]), TypeError, r"or a sequence of them, got function", True),
    ("rho_l0 too large", lambda c: adversary(c, rho_l0=785).fit(), ValueError, r"rho_l0 must be in \[0, 784\] for images of 784 values, got 785", False),
    ("rho_linf negative", lambda c: adversary(c, rho_linf=-0.5).fit(), ValueError, r"rho_linf must be >= 0, got -0\.5", False),
    ("fb unsupported criterion", lambda c: foolbox(c)(c.fmodel, c.x, UnknownCriterion(), epsilons=None), ValueError, r"unsupported criterion UnknownCriterion: use Misclassification or TargetedMisclassification", True),
    ("fb unexpected keyword", lambda c: foolbox(c)(c.fmodel, c.x, c.y, epsilons=None, steps=3), TypeError, r"attack got an unexpected keyword argument 'steps'", True),
    ("1-D model output, sources predicted", lambda c: adversary(c, model=FirstLogit(c.model)).perturb(c.x), ValueError, r"the model must return logits of shape \(N, classes\) = \(12, 10\), got \(12,\)", True),
    ("1-D model output, targeted", lambda c: adversary(c, model=FirstLogit(c.model), targeted=True).perturb(c.x, c.y), ValueError, r"got \(12,\)", True),
    ("1-D model output, fit", lambda c: adversary(c, model=FirstLogit(c.model)).fit(), ValueError, r"the model must return logits of shape \(N, classes\) = \(1, 10\), got \(1,\)", True),
    ("model returns a tuple, fit", lambda c: adversary(c, model=LogitsAndFeatures(c.model)).perturb(c.x, c.y), TypeError, TUPLE, False),
    ("model returns a tuple, sources predicted", lambda c: adversary(c, model=LogitsAndFeatures(c.model)).perturb(c.x), TypeError, TUPLE, True),
    ("model returns a tuple, generate", lambda c: adversary(c, model=LogitsAndFeatures(c.model)).generate(c.y), TypeError, TUPLE, False),
    ("fb model returns a tuple", lambda c: foolbox(c)(fb.PyTorchModel(LogitsAndFeatures(c.model).eval(), bounds=(0, 1), device="cpu"), c.x, c.y, epsilons=None), TypeError, r"the model must return a tensor of logits \(N, classes\), got <class 'tuple'>", False),
    ("generate z NaN", lambda c: adversary(c).generate(c.y, z=with_latent(c, float("nan"))), ValueError, r"z contains 1 NaN or infinite values", True),
    ("generate z inf", lambda c: adversary(c).generate(c.y, z=with_latent(c, float("inf"))), ValueError, r"z contains 1 NaN or infinite values", True),
    ("generate z of another z_dim", lambda c: adversary(c).generate(c.y, z=torch.zeros(12, 16)), ValueError, r"z must have shape \(12, 8\): one latent of the generator's z_dim per source label, got \(12, 16\)", True),
    ("generate z too few", lambda c: adversary(c).generate(c.y, z=torch.zeros(3, 8)), ValueError, r"z must have shape \(12, 8\)", True),
    ("generate z int", lambda c: adversary(c).generate(c.y, z=torch.zeros(12, 8, dtype=torch.long)), TypeError, r"z must be floating-point latents, got dtype torch\.int64", True),
    ("generate z numpy", lambda c: adversary(c).generate(c.y, z=torch.zeros(12, 8).numpy()), TypeError, r"z must be a torch\.Tensor of latents \(N, z_dim\), got ndarray", True),
    ("target 2.5", lambda c: adversary(c).generate(c.y, target=2.5), TypeError, r"target must be an integer class index or None, got 2\.5 \(float\)", True),
    ("target '3'", lambda c: adversary(c).fit(target="3"), TypeError, r"target must be an integer class index or None, got '3' \(str\)", True),
    ("target True", lambda c: adversary(c).fit(target=True), TypeError, r"got True \(bool\)", True),
    ("source_labels untargeted", lambda c: adversary(c).perturb(c.x, c.y, source_labels=c.y), ValueError, r"source_labels= is for a targeted attack \(targeted=True\); untargeted, y are the source classes", True),
    ("fb source_labels untargeted", lambda c: foolbox(c)(c.fmodel, c.x, c.y, epsilons=None, source_labels=c.y), ValueError, r"source_labels= is for targeted calls \(TargetedMisclassification\)", True),
    ("kappa nan", lambda c: ATGANAttack(generator=c.G, kappa=float("nan")), ValueError, r"kappa must be a finite number, got nan", True),
    ("alpha nan", lambda c: ATGANAttack(generator=c.G, alpha=float("nan")), ValueError, r"alpha must be a finite number, got nan", True),
    ("lr inf", lambda c: ATGANAttack(generator=c.G, lr=float("inf")), ValueError, r"lr must be a finite number, got inf", True),
    ("rho_linf nan", lambda c: ATGANAttack(generator=c.G, rho_linf=float("nan")), ValueError, r"rho_linf must be a finite number, got nan", True),
    ("clip_max nan", lambda c: ATGANAttack(c.model, generator=c.G, clip_max=float("nan")), ValueError, r"clip_max must be a finite number, got nan", True),
    ("invert_lr nan", lambda c: ATGANAttack(generator=c.G, invert_lr=float("nan")), ValueError, r"invert_lr must be a finite number, got nan", True),
    ("invert_steps 0", lambda c: ATGANAttack(generator=c.G, invert_steps=0), ValueError, r"invert_steps must be an int >= 1", True),
    ("device tpu", lambda c: ATGANAttack(generator=c.G, device="tpu"), ValueError, r"device 'tpu' is not a torch device", True),
    ("device cuda:99", lambda c: ATGANAttack(generator=c.G, device="cuda:99"), ValueError, r"device 'cuda:99' was asked for, but (CUDA is not available on this machine|this machine has \d+ CUDA device)", True),
]
if not torch.cuda.is_available():
    SETUP.append(("device cuda without a GPU", lambda c: ATGANAttack(c.model, generator=c.G, device="cuda"), ValueError, r"device 'cuda' was asked for, but CUDA is not available on this machine", True))
# fmt: on


def _load_fit_of_another_generator(c: SimpleNamespace) -> None:
    adversary(c).save_fit(c.tmp / "fit.safetensors")
    adversary(c, generator=c.make_G(z_dim=16)).load_fit(c.tmp / "fit.safetensors")


def _load_fit_of_a_generator_checkpoint(c: SimpleNamespace) -> None:
    from atgan_plugin.adapters import ACWGANGPGenerator
    from atgan_plugin.adapters.acwgan_gp import Generator

    ACWGANGPGenerator(Generator()).save(c.tmp / "generator.safetensors")
    adversary(c).load_fit(c.tmp / "generator.safetensors")


def _load_fit_with_a_nan_weight(c: SimpleNamespace) -> None:
    tensors = {k: v.clone() for k, v in c.G.state_dict().items()}
    next(t for t in tensors.values() if t.is_floating_point()).view(-1)[0] = float("nan")
    save_checkpoint(
        c.tmp / "fit.safetensors", Checkpoint("atgan.fitted_generator", tensors, {}, {"target": None, "config": {}})
    )
    adversary(c).load_fit(c.tmp / "fit.safetensors")


def _load_fit_with_target(target: Any) -> Callable[[SimpleNamespace], None]:
    def load(c: SimpleNamespace) -> None:
        save_checkpoint(
            c.tmp / "fit.safetensors", Checkpoint("atgan.fitted_generator", c.G.state_dict(), {}, {"target": target})
        )
        adversary(c).load_fit(c.tmp / "fit.safetensors")

    return load


# A table, one case per line: formatted, each case would spread over six or more lines.
# fmt: off
FITS: list[Case] = [
    ("load_fit of another generator", _load_fit_of_another_generator, ValueError, r"fit\.safetensors was fitted from a different generator than this attack's", False),
    ("load_fit of a generator checkpoint", _load_fit_of_a_generator_checkpoint, CheckpointError, r"holds a 'acwgan_gp\.generator' checkpoint, expected 'atgan\.fitted_generator'", True),
    ("load_fit of a missing file", lambda c: adversary(c).load_fit(c.tmp / "nothing.safetensors"), CheckpointError, r"nothing\.safetensors does not exist", True),
    ("load_fit with a NaN weight", _load_fit_with_a_nan_weight, CheckpointError, r"fit\.safetensors: tensor '.+' holds 1 NaN or infinite values \(corrupt weights\)", True),
    ("load_fit with target 2.5", _load_fit_with_target(2.5), CheckpointError, r"records an unusable target or fit configuration: target must be an integer", True),
    ("load_fit with target 99", _load_fit_with_target(99), CheckpointError, r"fit\.safetensors records target 99, outside the generator's classes \[0, 10\)", True),
    ("load_fit with target -3", _load_fit_with_target(-3), CheckpointError, r"records target -3, outside the generator's classes \[0, 10\)", True),
    ("load_fit of a directory", lambda c: adversary(c).load_fit(c.tmp), CheckpointError, r"is a directory, not a file", True),
]
# fmt: on

CASES = LABELS + IMAGES + SETUP + FITS


@pytest.mark.parametrize("action, error, match, before_fit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(
    ctx: SimpleNamespace,
    fit_calls: list[int | None],
    action: Callable[[SimpleNamespace], Any],
    error: type[Exception],
    match: str,
    before_fit: bool,
) -> None:
    with pytest.raises(error, match=match):
        action(ctx)
    if before_fit:
        assert fit_calls == []  # refused before any fitting


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(l0=-1, linf=0.5), r"rho_l0 must be in \[0, 784\]"),
        (dict(l0=785, linf=0.5), r"got 785"),
        (dict(l0=10, linf=-1.0), r"rho_linf must be >= 0"),
    ],
)
def test_sample_rho_bad_bounds(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_rho((2, 1, 28, 28), **kwargs)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: build_classifier("E"), r"unknown architecture 'E'; known: \['A', 'B', 'C', 'D', 'guard', 'oracle'\]"),
        (
            lambda: __import__("atgan_plugin.paper.classifier_training", fromlist=["x"]).ClassifierTrainingConfig(
                regime="trades"
            ),
            r"unknown training regime 'trades'",
        ),
        (
            lambda: __import__("atgan_plugin.adapters.acwgan_gp", fromlist=["x"]).Generator(img_resolution=32),
            r"built for 28x28 images, got 32",
        ),
        (
            lambda: __import__("atgan_plugin.pretrained", fromlist=["x"]).pretrained_path("discriminator"),
            r"unknown pretrained checkpoint 'discriminator'",
        ),
    ],
    ids=["architecture", "regime", "resolution", "pretrained name"],
)
def test_bad_configuration(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_fit_stops_when_the_loss_is_not_finite(tiny_generator: nn.Module) -> None:
    from atgan_plugin.attack.config import TransferConfig
    from atgan_plugin.attack.fit import fit_attack_generator

    def broken(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * float("nan")

    with pytest.raises(RuntimeError, match=r"AT-GAN fit diverged at step 0 \(loss nan\); lower lr"):
        fit_attack_generator(tiny_generator, broken, config=TransferConfig(steps=3, batch_size=4), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it() -> None:
    from atgan_plugin.utils import resolve_device

    with pytest.raises(ValueError, match=r"device 'cuda' was asked for, but CUDA is not available on this machine"):
        resolve_device("cuda")


@pytest.mark.gpu
def test_model_and_inputs_on_different_devices(ctx: SimpleNamespace, fit_calls: list[int | None]) -> None:
    model = copy.deepcopy(ctx.model).cuda()
    with pytest.raises(ValueError, match=r"the model is on cuda:0 but the inputs are on cpu; move one of them"):
        ATGANAttack(model, generator=ctx.G, **FAST).perturb(ctx.x, ctx.y)
    with pytest.raises(ValueError, match=r"the model is on cpu but the inputs are on cuda:0; move one of them"):
        ATGANAttack(ctx.model, generator=ctx.G, **FAST).perturb(ctx.x.cuda(), ctx.y.cuda())
    assert fit_calls == []

"""Realism lab for issue 11 (not shipped): held-out models, candidate fit losses, three realism measures.

python lab.py models --out OUT [--device cuda] [--epochs-scale 1]
python lab.py sweep --models OUT --out OUT --configs NAMES --workers 8 --steps 500 --n 5000
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.environ.get("ATGAN_PKG", ""))

from atgan_plugin.adapters import load_generator  # noqa: E402
from atgan_plugin.attack.losses import adversarial_loss, sample_rho  # noqa: E402
from atgan_plugin.attack.transfer import sample_sources  # noqa: E402
from atgan_plugin.data import load_dataset  # noqa: E402
from atgan_plugin.defenses import fgsm_random_start, pgd  # noqa: E402
from atgan_plugin.models import load_classifier, save_classifier  # noqa: E402
from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier  # noqa: E402
from atgan_plugin.pretrained import pretrained_path  # noqa: E402

DATA_DIR = os.environ.get("ATGAN_DATA")


# ----------------------------------------------------------------------------------------------
# Held-out networks (architectures used nowhere in the package).


def user_normal_net() -> nn.Module:  # all-convolutional, global average pooling
    return nn.Sequential(
        nn.Conv2d(1, 48, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(48, 96, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 192, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(192, 10),
    )


def user_pgd_net() -> nn.Module:  # Madry et al.'s MNIST network
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024),
        nn.ReLU(),
        nn.Linear(1024, 10),
    )


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.na = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.nb = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.nb(self.b(F.relu(self.na(self.a(x))))))


class OracleInd(nn.Module):  # small ResNet, 128-d penultimate features
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.body = nn.Sequential(
            _Res(64),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.ReLU(),
            _Res(128),
            nn.Conv2d(128, 128, 3, stride=2, padding=1),
            nn.ReLU(),
            _Res(128),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


HELD_OUT = {"user_normal": user_normal_net, "user_pgd": user_pgd_net, "oracle_ind": OracleInd}


def train_held_out(name: str, out: Path, device: torch.device, scale: float) -> dict:
    torch.manual_seed(100 + len(name))
    train = load_dataset("fashion-mnist", "train", DATA_DIR)
    test = load_dataset("fashion-mnist", "test", DATA_DIR)
    model = HELD_OUT[name]()
    if name == "user_normal":
        config = ClassifierTrainingConfig(epochs=max(1, round(5 * scale)), batch_size=128, lr=1e-3, seed=11)
    elif name == "user_pgd":
        config = ClassifierTrainingConfig(
            epochs=max(1, round(8 * scale)),
            batch_size=256,
            lr=2e-3,
            regime="pgd",
            epsilon=0.1,
            pgd_steps=20,
            pgd_step_size=0.01,
            seed=12,
        )
    else:
        config = ClassifierTrainingConfig(
            epochs=max(1, round(8 * scale)),
            batch_size=256,
            lr=2e-3,
            regime="pgd",
            epsilon=0.1,
            pgd_steps=10,
            pgd_step_size=0.025,
            seed=13,
        )
    if scale < 1:
        train = train.subset(max(2000, int(60000 * scale)))
    start = time.perf_counter()
    history = []
    for epoch in range(config.epochs):  # one epoch at a time, saved after each: a timeout keeps the last one
        result = train_classifier(
            model,
            train,
            test,
            replace(config, epochs=1, seed=config.seed + 1000 * epoch),
            device=device,
            progress=False,
        )
        history.append(result["test_accuracy"])
        torch.save(
            {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, out / f"{name}.pt.tmp"
        )
        os.replace(out / f"{name}.pt.tmp", out / f"{name}.pt")
        info = {
            "name": name,
            "test_accuracy": result["test_accuracy"],
            "history": history,
            "seconds": time.perf_counter() - start,
            "config": asdict(config),
            "epochs_done": epoch + 1,
        }
        (out / f"{name}.json").write_text(json.dumps(info, indent=1))
    return info


def load_target(name: str, models_dir: Path, device: torch.device) -> nn.Module:
    from atgan_plugin.pretrained import pretrained_targets_dir

    if name in HELD_OUT:
        return load_held_out(name, models_dir, device)
    path = pretrained_targets_dir() / f"{name}.safetensors"
    if not path.exists():
        path = Path(name) if "/" in name else pretrained_path(name)
    return load_classifier(path, device).requires_grad_(False)


def load_held_out(name: str, models_dir: Path, device: torch.device) -> nn.Module:
    model = HELD_OUT[name]()
    state = torch.load(models_dir / f"{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval().requires_grad_(False)


def train_features(out: Path, device: torch.device, scale: float) -> dict:
    """What `atgan train-classifier --arch oracle --regime pgd --epsilon 0.1 --pgd-steps 10 --pgd-step-size 0.025
    --epochs 8 --batch-size 256 --lr 2e-3 --seed 3 --half` runs (same calls, same order)."""
    from atgan_plugin.models import build_classifier
    from atgan_plugin.utils import seed_everything

    seed_everything(3)
    train = load_dataset("fashion-mnist", "train", DATA_DIR)
    test = load_dataset("fashion-mnist", "test", DATA_DIR)
    if scale < 1:
        train = train.subset(max(2000, int(60000 * scale)))
    config = ClassifierTrainingConfig(
        epochs=max(1, round(8 * scale)),
        batch_size=256,
        lr=2e-3,
        regime="pgd",
        epsilon=0.1,
        pgd_steps=10,
        pgd_step_size=0.025,
        seed=3,
    )
    model = build_classifier("oracle", num_classes=10, in_channels=1)
    start = time.perf_counter()
    result = train_classifier(model, train, test, config, device=device, progress=False)
    training = {
        **result,
        "dataset": "fashion-mnist",
        "seconds": time.perf_counter() - start,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    save_classifier(
        out / "features.safetensors",
        model,
        {"architecture": "oracle", "num_classes": 10, "in_channels": 1},
        training,
        half=True,
    )
    training["test_accuracy_stored"] = accuracy(
        load_classifier(out / "features.safetensors", device), test, device=device
    )
    (out / "features.json").write_text(json.dumps(training, indent=1))
    return {"name": "features", "test_accuracy": result["test_accuracy"], "seconds": training["seconds"]}


# ----------------------------------------------------------------------------------------------
# Distilled guard: a small classifier adversarially trained on G_orig's own samples.


def small_guard_net(channels: int, classes: int, width: int = 32) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(channels, w, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * w, classes),
    )


DISTILL_RECIPES = {  # name: (width, steps, batch, epsilon)
    "distilled": (32, 1500, 128, 0.1),
    "distilled_s": (16, 1000, 64, 0.1),
    "distilled_e2": (32, 1500, 128, 0.2),
}


def distill_guard(
    generator: nn.Module,
    device: torch.device,
    steps: int,
    epsilon: float,
    batch: int = 128,
    seed: int = 0,
    width: int = 32,
) -> nn.Module:
    g = copy.deepcopy(generator).to(device).eval().requires_grad_(False)
    c = g.image_shape[0]
    k = int(g.num_classes)
    torch.manual_seed(seed)
    net = small_guard_net(c, k, width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = torch.Generator().manual_seed(seed)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in range(steps):
        y = torch.randint(k, (batch,), generator=rng).to(device)
        z = g.sample_z(batch, generator=rng, device=device)
        with torch.no_grad():
            x = g(z, y)
        net.train()
        x_adv = fgsm_random_start(net, x, y, epsilon) if epsilon > 0 else x
        loss = F.cross_entropy(net(x_adv), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Candidate fits.


@dataclass
class Cfg:
    name: str
    alpha: float = 2.0
    beta: float = 1.0
    kappa: float = 2.0
    gamma: float = 50.0
    guards: tuple[str, ...] = ("aux",)
    steps: int = 500
    lr: float = 1e-4
    batch: int = 64
    rho_l0: int = 200
    rho_linf: float = 0.5
    trainable: str = "all"  # all | fc | fc1 | no_last
    tv: float = 0.0  # weight of TV(G_attack - G_orig)
    tv_mode: str = "diff"  # diff | rel
    feat: float = 0.0  # weight of a robust-feature distance (guard features)
    dist: str = "l2"  # l2 | l2sq | none
    lr_decay: bool = False
    sched_kappa: bool = False
    lowpass: int = 0  # blur sigma*10 applied to the delta before adding (0 = none)
    mask_done: bool = False  # stop L_adv per example once adversarial by kappa (already in hinge)


def tv_per_sample(x: torch.Tensor) -> torch.Tensor:
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    return dx + dy


def trainable_params(g_attack: nn.Module, mode: str) -> list[nn.Parameter]:
    net = g_attack.network
    if mode == "all":
        return list(net.parameters())
    if mode == "fc":
        return list(net.fc.parameters())
    if mode == "fc1":
        return list(net.fc[0:3].parameters())
    if mode == "no_last":
        return list(net.fc.parameters()) + list(net.deconv[0:2].parameters())
    if mode == "bn":
        return [p for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for p in m.parameters()]
    raise ValueError(mode)


def fit(
    cfg: Cfg, g_orig: nn.Module, target: nn.Module, guards: dict[str, nn.Module], device: torch.device, seed: int = 0
) -> tuple[nn.Module, list]:
    g_orig = copy.deepcopy(g_orig).to(device).eval().requires_grad_(False)
    g_attack = copy.deepcopy(g_orig)
    params = trainable_params(g_attack, cfg.trainable)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps) if cfg.lr_decay else None
    rng = torch.Generator().manual_seed(seed)
    k = int(g_orig.num_classes)
    gs = [guards[name] for name in cfg.guards] if cfg.gamma > 0 else []
    hist = []
    for step in range(cfg.steps):
        z = g_orig.sample_z(cfg.batch, generator=rng, device=device)
        y = sample_sources(cfg.batch, k, None, rng).to(device)
        with torch.no_grad():
            ref = g_orig(z, y)
        img = g_attack(z, y)
        logits = target(img)
        kappa = cfg.kappa * min(1.0, 2 * (step + 1) / cfg.steps) if cfg.sched_kappa else cfg.kappa
        l_adv = adversarial_loss(logits, y, targeted=False, kappa=kappa)
        rho = sample_rho(img.shape, l0=cfg.rho_l0, linf=cfg.rho_linf, generator=rng, device=device)
        diff = ref + rho - img
        if cfg.dist == "l2":
            l_dist = diff.flatten(1).norm(dim=1)
        elif cfg.dist == "l2sq":
            l_dist = diff.flatten(1).pow(2).sum(1)
        else:
            l_dist = torch.zeros(len(img), device=device)
        loss = cfg.alpha * l_adv.mean() + cfg.beta * l_dist.mean()
        for guard in gs:
            with torch.no_grad():
                ref_logits = guard(ref)
            lost = F.cross_entropy(guard(img), y, reduction="none") - F.cross_entropy(ref_logits, y, reduction="none")
            loss = loss + cfg.gamma * lost.clamp(min=0).mean()
        if cfg.tv > 0:
            if cfg.tv_mode == "diff":
                loss = loss + cfg.tv * tv_per_sample(img - ref).mean()
            else:
                loss = loss + cfg.tv * (tv_per_sample(img) - tv_per_sample(ref)).clamp(min=0).mean()
        if cfg.feat > 0:
            fnet = guards["feat"]
            loss = loss + cfg.feat * (fnet(img) - fnet(ref)).flatten(1).norm(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if step % 50 == 49:
            with torch.no_grad():
                hist.append(
                    {"step": step + 1, "loss": loss.item(), "success": (logits.argmax(1) != y).float().mean().item()}
                )
    return g_attack.requires_grad_(False), hist


# ----------------------------------------------------------------------------------------------
# Measures.


def penultimate(model: nn.Module) -> nn.Module:
    """Features before the last linear layer."""
    if isinstance(model, OracleInd):

        class F_(nn.Module):
            def __init__(self, m: nn.Module):
                super().__init__()
                self.m = m

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.m.features(x)

        return F_(model)
    layers = list(model.children())
    while not isinstance(layers[-1], nn.Linear):
        layers = layers[:-1]
    return nn.Sequential(*layers[:-1])


def gauss_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = feats.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def frechet(s1: tuple, s2: tuple) -> float:
    mu1, c1 = s1
    mu2, c2 = s2
    # tr sqrt(c1 c2) via eigenvalues of sqrt(c1) c2 sqrt(c1)
    e1, v1 = torch.linalg.eigh(c1)
    sq1 = v1 @ torch.diag(e1.clamp(min=0).sqrt()) @ v1.T
    m = sq1 @ c2 @ sq1
    ev = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + c1.trace() + c2.trace() - 2 * ev)


@torch.no_grad()
def features_of(net: nn.Module, images: torch.Tensor, bs: int = 1000) -> torch.Tensor:
    return torch.cat([net(images[i : i + bs]) for i in range(0, len(images), bs)]).float()


def hp(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 16
    k = k.expand(x.shape[1], 1, 3, 3)
    return x - F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def artefacts(adv: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    d = adv - ref
    tv_a, tv_r = tv_per_sample(adv).mean().item(), tv_per_sample(ref).mean().item()
    hp_a, hp_r = hp(adv).pow(2).flatten(1).sum(1).mean().item(), hp(ref).pow(2).flatten(1).sum(1).mean().item()
    dx = (d[..., :, 1:] - d[..., :, :-1]).pow(2).flatten(1).sum(1).mean().item()
    dy = (d[..., 1:, :] - d[..., :-1, :]).pow(2).flatten(1).sum(1).mean().item()
    return {
        "tv_ratio": tv_a / tv_r,
        "hp_ratio": hp_a / hp_r,
        "tv_diff": tv_per_sample(d).mean().item(),
        "hf_share_diff": hp(d).pow(2).sum().item() / max(d.pow(2).sum().item(), 1e-12),
        "grad_x_diff": dx,
        "grad_y_diff": dy,
    }


@dataclass
class Judge:
    oracles: dict[str, nn.Module]
    fd_nets: dict[str, nn.Module]
    real_stats: dict[str, tuple]


def make_judge(models_dir: Path, device: torch.device) -> Judge:
    test = load_dataset("fashion-mnist", "test", DATA_DIR)
    oracles = {"oracle_ship": load_classifier(pretrained_path("oracle"), device).requires_grad_(False)}
    fd_nets = {}
    if (models_dir / "oracle_ind.pt").exists():
        oracles["oracle_ind"] = load_held_out("oracle_ind", models_dir, device)
        fd_nets["fd_ind"] = penultimate(oracles["oracle_ind"]).eval()
    if (models_dir / "features.safetensors").exists():
        fnet = load_classifier(models_dir / "features.safetensors", device).requires_grad_(False)
        oracles["features_net"] = fnet
        fd_nets["fd_feat"] = penultimate(fnet).eval()
    fd_nets["fd_oracle"] = penultimate(oracles["oracle_ship"]).eval()
    x = test.images.to(device)
    real = {name: gauss_stats(features_of(net, x)) for name, net in fd_nets.items()}
    return Judge(oracles, fd_nets, real)


@torch.no_grad()
def blend(
    adv: torch.Tensor, ref: torch.Tensor, target: nn.Module, y: torch.Tensor, steps: int = 8, margin: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, the smallest t in (0, 1] (binary search) with ref + t (adv - ref) still fooling the target."""

    def fooled(x: torch.Tensor) -> torch.Tensor:
        lp = features_of(target, x).log_softmax(1)
        own = lp.gather(1, y[:, None]).squeeze(1)
        other = lp.scatter(1, y[:, None], float("-inf")).amax(1)
        return other - own > margin

    lo = torch.zeros(len(adv), device=adv.device)
    hi = torch.ones(len(adv), device=adv.device)
    ok = fooled(adv)
    for _ in range(steps):
        mid = (lo + hi) / 2
        f = fooled(ref + mid[:, None, None, None] * (adv - ref))
        hi = torch.where(f, mid, hi)
        lo = torch.where(f, lo, mid)
    t = torch.where(ok, hi, torch.ones_like(hi))
    return ref + t[:, None, None, None] * (adv - ref), t


@torch.no_grad()
def measure(
    g: nn.Module,
    g_orig: nn.Module,
    target: nn.Module,
    judge: Judge,
    n: int,
    device: torch.device,
    seed: int = 1,
    blended: bool = False,
) -> dict:
    rng = torch.Generator().manual_seed(seed)
    y = sample_sources(n, int(g_orig.num_classes), None, rng)
    z = g_orig.sample_z(n, generator=rng, device="cpu")
    advs, refs = [], []
    for i in range(0, n, 1000):
        zz, yy = z[i : i + 1000].to(device), y[i : i + 1000].to(device)
        advs.append(g(zz, yy))
        refs.append(g_orig(zz, yy))
    adv, ref, y = torch.cat(advs), torch.cat(refs), y.to(device)
    t = None
    if blended:
        adv, t = blend(adv, ref, target, y)
    fooled = features_of(target, adv).argmax(1) != y
    out = {"success": fooled.float().mean().item()}
    for name, oracle in judge.oracles.items():
        a_adv = features_of(oracle, adv).argmax(1) == y
        a_ref = features_of(oracle, ref).argmax(1) == y
        out[f"{name}_orig"] = a_ref.float().mean().item()
        out[f"{name}_adv"] = a_adv.float().mean().item()
        out[f"{name}_ratio"] = out[f"{name}_adv"] / max(out[f"{name}_orig"], 1e-9)
        out[f"{name}_realistic"] = (fooled & a_adv).float().mean().item()
    for name, net in judge.fd_nets.items():
        fa = frechet(gauss_stats(features_of(net, adv)), judge.real_stats[name])
        fo = frechet(gauss_stats(features_of(net, ref)), judge.real_stats[name])
        out[f"{name}_orig"], out[f"{name}_adv"], out[f"{name}_x"] = fo, fa, fa / max(fo, 1e-9)
    out.update(artefacts(adv, ref))
    out["l2"] = (adv - ref).flatten(1).norm(dim=1).mean().item()
    if t is not None:
        out["t_mean"] = t.mean().item()
    return out


@torch.no_grad()
def pgd_baseline(target: nn.Module, judge: Judge, device: torch.device, n: int = 1000) -> dict:
    test = load_dataset("fashion-mnist", "test", DATA_DIR)
    x, y = test.images[:n].to(device), test.labels[:n].to(device)
    with torch.enable_grad():
        adv = pgd(target, x, y, epsilon=0.1, step_size=0.01, steps=20, generator=torch.Generator().manual_seed(0))
    fooled = target(adv).argmax(1) != y
    out = {"clean_acc": (target(x).argmax(1) == y).float().mean().item(), "pgd_success": fooled.float().mean().item()}
    for name, oracle in judge.oracles.items():
        agree = oracle(adv).argmax(1) == y
        out[f"pgd_{name}_realistic"] = (fooled & agree).float().mean().item()
    return out


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    from torchvision.utils import save_image

    grid = torch.cat(rows).cpu()
    grid = F.interpolate(grid, scale_factor=3, mode="nearest")
    save_image(grid, path, nrow=len(rows[0]), padding=2, pad_value=1.0)


# ----------------------------------------------------------------------------------------------
# Config families.


def configs(steps: int) -> dict[str, Cfg]:
    """Round 2: every row is also measured after the per-example blend towards G_orig."""
    c: dict[str, Cfg] = {}

    def add(name: str, **kw: object) -> None:
        kw.setdefault("steps", steps)
        c[name] = Cfg(name, **kw)  # type: ignore[arg-type]

    A, AD, AR, D, R = ("aux",), ("aux", "distilled"), ("aux", "robust"), ("distilled",), ("robust",)
    ARD, RD = ("aux", "robust", "distilled"), ("robust", "distilled")
    add("paper", gamma=0.0, guards=())
    add("aux", guards=A)
    add("aux_rob_b025", guards=AR, beta=0.25)
    add("aux_rob_b025_tv0.02", guards=AR, beta=0.25, tv=0.02)
    add("aux_rob_b025_tv0.05", guards=AR, beta=0.25, tv=0.05)
    add("aux_rob_b025_tv0.05_lr2e-4", guards=AR, beta=0.25, tv=0.05, lr=2e-4)
    add("aux_rob_b025_k5", guards=AR, beta=0.25, kappa=5.0)
    add("aux_rob", guards=AR)
    add("aux_rob_tv0.05", guards=AR, tv=0.05)
    add("aux_rob_dist", guards=ARD)
    add("aux_rob_dist_b025", guards=ARD, beta=0.25)
    add("aux_rob_dist_b025_tv0.05", guards=ARD, beta=0.25, tv=0.05)
    add("aux_rob_dist_tv0.05", guards=ARD, tv=0.05)
    add("rob_b025", guards=R, beta=0.25)
    add("rob_dist_b025", guards=RD, beta=0.25)
    add("rob_dist_b025_tv0.05", guards=RD, beta=0.25, tv=0.05)
    add("aux_dist", guards=AD)
    add("aux_dist_b025", guards=AD, beta=0.25)
    add("aux_dist_b025_tv0.05", guards=AD, beta=0.25, tv=0.05)
    add("aux_dist_tv0.05", guards=AD, tv=0.05)
    add("aux_dist_tv0.05_lr2e-4", guards=AD, tv=0.05, lr=2e-4)
    add("aux_dist_tv0.05_s1000", guards=AD, tv=0.05, steps=1000)
    add("aux_dist_s1000", guards=AD, steps=1000)
    add("aux_dist_k5", guards=AD, kappa=5.0)
    add("aux_dist_k5_tv0.05", guards=AD, kappa=5.0, tv=0.05)
    add("aux_dist_fc_decay1e-3", guards=AD, trainable="fc", lr_decay=True, lr=1e-3)
    add("aux_dist_no_last_lr3e-4", guards=AD, trainable="no_last", lr=3e-4)
    add("aux_dist_no_last_lr3e-4_tv0.05", guards=AD, trainable="no_last", lr=3e-4, tv=0.05)
    add("dist", guards=D)
    add("dist_b025", guards=D, beta=0.25)
    add("dist_tv0.05", guards=D, tv=0.05)
    add("dist_b025_tv0.05", guards=D, beta=0.25, tv=0.05)
    add("aux_dist_tv0.02_s1000", guards=AD, tv=0.02, steps=1000)
    add("aux_dist_tv0.01_s1000", guards=AD, tv=0.01, steps=1000)
    add("dist_s1000", guards=D, steps=1000)
    return c


# ----------------------------------------------------------------------------------------------
# Stages.


def stage_models(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    for name in args.names.split(","):
        info = (
            train_features(out, device, args.epochs_scale)
            if name == "features"
            else train_held_out(name, out, device, args.epochs_scale)
        )
        print(json.dumps(info), flush=True)


def stage_distill(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    g = load_generator(pretrained_path("generator"), device=device)
    test = load_dataset("fashion-mnist", "test", DATA_DIR)
    for name in args.names.split(","):
        width, steps, batch, eps = DISTILL_RECIPES[name]
        steps = max(5, int(steps * args.epochs_scale))
        start = time.perf_counter()
        net = distill_guard(g, device, steps, eps, batch=batch, width=width)
        secs = time.perf_counter() - start
        torch.save(net.state_dict(), out / f"{name}.pt")
        acc = accuracy(net, test, device=device)
        print(json.dumps({"guard": name, "seconds": secs, "real_test_acc": acc}), flush=True)


def load_guards(models_dir: Path, device: torch.device) -> dict[str, nn.Module]:
    guards = {
        "aux": load_classifier(pretrained_path("aux_classifier"), device).requires_grad_(False),
        "robust": load_classifier(pretrained_path("robust_guard"), device).requires_grad_(False),
    }
    for name, (width, *_rest) in DISTILL_RECIPES.items():
        if (models_dir / f"{name}.pt").exists():
            net = small_guard_net(1, 10, width)
            net.load_state_dict(torch.load(models_dir / f"{name}.pt", map_location="cpu", weights_only=True))
            guards[name] = net.to(device).eval().requires_grad_(False)
    if "distilled" in guards:
        guards["feat"] = penultimate(guards["distilled"])
    return guards


_JUDGE = None


def run_one(cfg: Cfg, args: argparse.Namespace, gpu: bool) -> list[dict]:
    device = torch.device(args.device)
    torch.set_num_threads(1 if gpu else max(1, torch.get_num_threads()))
    models_dir = Path(args.models)
    g = load_generator(pretrained_path("generator"), device=device)
    guards = load_guards(models_dir, device)
    global _JUDGE
    if _JUDGE is None:
        _JUDGE = make_judge(models_dir, device)
    judge = _JUDGE
    rows = []
    for tname in args.targets.split(","):
        target = load_target(tname, models_dir, device)
        start = time.perf_counter()
        try:
            g_att, hist = fit(cfg, g, target, guards, device)
        except Exception as error:  # keep the sweep going
            rows.append({"config": cfg.name, "target": tname, "error": repr(error)})
            continue
        secs = time.perf_counter() - start
        m = measure(g_att, g, target, judge, args.n, device)
        mb = measure(g_att, g, target, judge, args.n, device, blended=True)
        rows.append(
            {
                "config": cfg.name,
                "target": tname,
                "fit_s": secs,
                **m,
                **{f"b_{k}": v for k, v in mb.items()},
                "cfg": asdict(cfg),
            }
        )
        if args.grids and tname in ("user_normal", "user_pgd"):
            with torch.no_grad():
                yy = torch.arange(10, device=device).repeat(2)
                zz = g.sample_z(20, generator=torch.Generator().manual_seed(5), device=device)
                ref, adv = g(zz, yy), g_att(zz, yy)
            save_grid([ref, adv, (0.5 + (adv - ref) / 2).clamp(0, 1)], Path(args.out) / f"grid_{cfg.name}_{tname}.png")
            with torch.no_grad():
                badv, _ = blend(adv, ref, target, yy)
            save_grid(
                [ref, badv, (0.5 + (badv - ref) / 2).clamp(0, 1)], Path(args.out) / f"bgrid_{cfg.name}_{tname}.png"
            )
    return rows


def _worker(payload: tuple) -> list[dict]:
    cfg, args, gpu = payload
    try:
        return run_one(cfg, args, gpu)
    except Exception:
        return [{"config": cfg.name, "error": traceback.format_exc()}]


def replace_targets(args: argparse.Namespace, target: str) -> argparse.Namespace:
    new = argparse.Namespace(**vars(args))
    new.targets = target
    return new


def stage_sweep(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_cfgs = configs(args.steps)
    names = list(all_cfgs) if args.configs == "all" else args.configs.split(",")
    gpu = args.device.startswith("cuda")
    targets = args.targets.split(",")
    payloads = [(all_cfgs[name], replace_targets(args, t), gpu) for t in targets for name in names]
    results_path = out / "sweep.jsonl"
    if args.workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            for rows in pool.imap_unordered(_worker, payloads):
                with open(results_path, "a") as f:
                    for row in rows:
                        f.write(json.dumps(row) + "\n")
                        print(summary_line(row), flush=True)
    else:
        for payload in payloads:
            for row in _worker(payload):
                with open(results_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(summary_line(row), flush=True)


def summary_line(row: dict) -> str:
    if "error" in row:
        return f"{row.get('config')} {row.get('target')} ERROR {row['error'][-300:]}"
    keys = [
        "success",
        "oracle_ship_ratio",
        "oracle_ind_ratio",
        "oracle_ind_realistic",
        "fd_feat_x",
        "fd_ind_x",
        "fd_oracle_x",
        "tv_ratio",
        "hp_ratio",
        "l2",
        "fit_s",
    ]
    vals = " ".join(f"{k}={row[k]:.3f}" for k in keys if k in row)
    return f"{row['config']:<28} {row['target']:<12} {vals}"


def stage_baseline(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    models_dir = Path(args.models)
    judge = make_judge(models_dir, device)
    g = load_generator(pretrained_path("generator"), device=device)
    rows = {}
    for tname in args.targets.split(","):
        target = load_target(tname, models_dir, device)
        rows[tname] = {**pgd_baseline(target, judge, device), "g_orig": measure(g, g, target, judge, args.n, device)}
        print(tname, json.dumps(rows[tname]), flush=True)
    (Path(args.out) / "baseline.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stage")
    p.add_argument("--out", default="lab_out")
    p.add_argument("--models", default="lab_out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--names", default="user_normal,user_pgd,oracle_ind")
    p.add_argument("--epochs-scale", type=float, default=1.0)
    p.add_argument("--configs", default="all")
    p.add_argument("--targets", default="user_normal,user_pgd")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--grids", action="store_true")
    p.add_argument("--distill-steps", type=int, default=1500)
    p.add_argument("--distill-eps", type=float, default=0.1)
    args = p.parse_args()
    {"models": stage_models, "sweep": stage_sweep, "distill": stage_distill, "baseline": stage_baseline}[args.stage](
        args
    )


if __name__ == "__main__":
    main()

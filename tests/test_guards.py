"""Guards by default: where guard="auto" finds them, the distilled guard and its cache, generator files carrying guards.

The distillation recipe is the conftest's tiny one (recipe) and the cache a per-session temp
folder; each test that counts distillations uses a cache folder of its own.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.adapters import ACWGANGPGenerator, SharedGuards, load_generator
from atgan_plugin.attack import guards as guards_module
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.attack.guards import (
    DistillConfig,
    cached_distilled_guard,
    generator_fingerprint,
    is_distilled_guard,
    resolve_guards,
)
from atgan_plugin.attack.losses import adversarial_loss
from atgan_plugin.checkpoints import Checkpoint, save_checkpoint
from atgan_plugin.data import TensorDataset
from atgan_plugin.defenses import pgd
from atgan_plugin.models import GUARD_KIND, build_classifier, build_guard


@pytest.fixture
def recipe() -> DistillConfig:
    """The tiny recipe the conftest makes guard="auto" use."""
    return guards_module.DEFAULT_DISTILL


@pytest.fixture
def distill_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real distillations (cache misses)."""
    calls: list[int] = []
    original = guards_module.distill_guard

    def counting(*args: object, **kwargs: object) -> nn.Module:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(guards_module, "distill_guard", counting)
    return calls


def small_guard(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_guard(width=4).eval()


# ------------------------------------------------------------------------------------------------
# What guard="auto" picks.


def test_auto_uses_the_generators_own_guards_and_distils_nothing_when_one_is_distilled(
    random_generator: ACWGANGPGenerator, distill_calls: list[int], tmp_path: Path
) -> None:
    aux, distilled = build_classifier("A").eval(), small_guard()
    random_generator.default_guards = SharedGuards((aux, distilled))
    assert resolve_guards("auto", random_generator, cache_dir=tmp_path) == (aux, distilled)
    assert distill_calls == []


def test_auto_adds_a_distilled_guard_to_an_auxiliary_classifier(
    random_generator: ACWGANGPGenerator, distill_calls: list[int], tmp_path: Path
) -> None:
    aux = build_classifier("A").eval()
    random_generator.default_guards = SharedGuards((aux,))
    resolved = resolve_guards("auto", random_generator, cache_dir=tmp_path, progress=False)
    assert resolved[0] is aux and len(resolved) == 2 and is_distilled_guard(resolved[1])
    assert distill_calls == [1]


def test_auto_distils_for_a_generator_without_guards(tiny_generator: nn.Module, tmp_path: Path) -> None:
    (guard,) = resolve_guards("auto", tiny_generator, cache_dir=tmp_path, progress=False)
    assert is_distilled_guard(guard) and not guard.training
    assert guard(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_none_and_explicit_guards_are_taken_as_given(tiny_generator: nn.Module, distill_calls: list[int]) -> None:
    mine = small_guard()
    assert resolve_guards(None, tiny_generator) == ()
    assert resolve_guards(mine, tiny_generator) == (mine,)
    assert resolve_guards([mine, mine], tiny_generator) == (mine, mine)
    assert distill_calls == []


def test_the_attack_resolves_auto_at_the_first_fit_not_at_construction(
    tiny_generator: nn.Module, tiny_target: nn.Module, distill_calls: list[int], tmp_path: Path
) -> None:
    attack = ATGANAttack(
        tiny_target, generator=tiny_generator, steps=2, batch_size=8, guard_cache_dir=tmp_path, progress=False
    )
    assert attack.guard == "auto" and distill_calls == []
    assert "guard='auto'" in repr(attack)
    attack.fit()
    assert len(distill_calls) == 1 and len(attack.prepare_guard()) == 1  # trained once...
    attack.fit(target=3)
    assert len(distill_calls) == 1  # ...and reused for every other fit of the attack


def test_prepare_guard_makes_the_distillation_explicit(tiny_generator: nn.Module, tmp_path: Path) -> None:
    attack = ATGANAttack(generator=tiny_generator, guard_cache_dir=tmp_path, progress=False)
    (guard,) = attack.prepare_guard()
    assert is_distilled_guard(guard)
    assert list((tmp_path / "guards").glob("*.safetensors"))


def test_guard_none_reproduces_the_papers_loss_exactly(
    tiny_generator: nn.Module, tiny_target: nn.Module, distill_calls: list[int]
) -> None:
    """guard=None, search_steps=0 is the paper's attack: the fit is fit_attack_generator's without a
    guard (α·L_adv + β·L_dist), step for step, and the outputs are G_attack's images as they are."""
    config = TransferConfig(steps=6, batch_size=8, seed=3)
    attack = ATGANAttack(
        tiny_target, generator=tiny_generator, guard=None, search_steps=0, steps=6, batch_size=8, seed=3, progress=False
    )
    fit = attack.fit()
    direct = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    assert [r["loss"] for r in fit.history] == [r["loss"] for r in direct.history]
    assert all("l_guard" not in r for r in fit.history)
    for a, b in zip(fit.generator.parameters(), direct.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # And the loss of that history is the paper's: α·L_adv + β·L_dist on the logged terms.
    last = fit.history[-1]
    assert last["loss"] == pytest.approx(config.alpha * last["l_adv"] + config.beta * last["l_dist"], rel=1e-5)
    z, y = tiny_generator.sample_z(5), torch.arange(5)
    torch.testing.assert_close(attack.generate(y, z=z), fit.generator(z, y))
    assert distill_calls == []
    assert adversarial_loss is not None  # the paper's L_adv, unchanged by this work


# ------------------------------------------------------------------------------------------------
# The cache.


def test_the_cache_is_reused(
    tiny_generator: nn.Module, distill_calls: list[int], tmp_path: Path, recipe: DistillConfig
) -> None:
    first = cached_distilled_guard(tiny_generator, recipe, cache_dir=tmp_path, progress=False)
    second = cached_distilled_guard(copy.deepcopy(tiny_generator), recipe, cache_dir=tmp_path, progress=False)
    assert distill_calls == [1]
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(first(x), second(x))


def test_the_cache_is_invalidated_when_the_generators_weights_change(
    tiny_generator: nn.Module, distill_calls: list[int], tmp_path: Path, recipe: DistillConfig
) -> None:
    cached_distilled_guard(tiny_generator, recipe, cache_dir=tmp_path, progress=False)
    changed = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        changed.mix.weight[0, 0] += 1e-3
    assert generator_fingerprint(changed) != generator_fingerprint(tiny_generator)
    cached_distilled_guard(changed, recipe, cache_dir=tmp_path, progress=False)
    assert distill_calls == [1, 1]
    assert len(list((tmp_path / "guards").iterdir())) == 2
    # Another recipe is another file too.
    cached_distilled_guard(
        tiny_generator, DistillConfig(steps=5, batch_size=8, width=4), cache_dir=tmp_path, progress=False
    )
    assert len(distill_calls) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another generator's"])
def test_a_corrupt_cache_file_is_rebuilt_with_a_warning_never_loaded(
    damage: str, tiny_generator: nn.Module, distill_calls: list[int], tmp_path: Path, recipe: DistillConfig
) -> None:
    cached_distilled_guard(tiny_generator, recipe, cache_dir=tmp_path, progress=False)
    (path,) = (tmp_path / "guards").iterdir()
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:  # a valid guard file, but it records another generator's fingerprint
        guard = small_guard(seed=7)
        config = {"architecture": "guard", "num_classes": 10, "in_channels": 1, "width": 4}
        save_checkpoint(
            path, Checkpoint("classifier", dict(guard.state_dict()), config, {"generator_sha256": "0" * 64})
        )
    with pytest.warns(UserWarning, match="distilling it again"):
        guard = cached_distilled_guard(tiny_generator, recipe, cache_dir=tmp_path, progress=False)
    assert distill_calls == [1, 1]
    assert is_distilled_guard(guard)
    with warnings.catch_warnings():  # the rebuilt file is a good one again
        warnings.simplefilter("error")
        cached_distilled_guard(tiny_generator, recipe, cache_dir=tmp_path, progress=False)
    assert distill_calls == [1, 1]


# ------------------------------------------------------------------------------------------------
# Generator files carry their guards.


def test_an_acwgan_gp_checkpoint_carries_its_guards(random_generator: ACWGANGPGenerator, tmp_path: Path) -> None:
    aux, distilled = build_classifier("A").eval(), small_guard()
    random_generator.default_guards = SharedGuards((aux, distilled))
    random_generator.save(tmp_path / "g.safetensors")
    loaded = load_generator(tmp_path / "g.safetensors")
    assert [type(g).__name__ for g in loaded.default_guards] == ["Sequential", "Sequential"]
    x = torch.rand(2, 1, 28, 28)
    for mine, theirs in zip((aux, distilled), loaded.default_guards, strict=True):
        torch.testing.assert_close(mine(x), theirs(x))
    assert is_distilled_guard(loaded.default_guards[1]) and not is_distilled_guard(loaded.default_guards[0])
    # The fit copies the generator; the guards are shared, not copied with it.
    assert copy.deepcopy(loaded).default_guards[0] is loaded.default_guards[0]


def test_a_generator_without_guards_loads_with_none(random_generator: ACWGANGPGenerator, tmp_path: Path) -> None:
    random_generator.save(tmp_path / "g.safetensors")
    assert load_generator(tmp_path / "g.safetensors").default_guards == ()


def test_a_guard_that_cannot_be_rebuilt_is_refused_when_saving(
    random_generator: ACWGANGPGenerator, tmp_path: Path
) -> None:
    random_generator.default_guards = SharedGuards((nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),))
    with pytest.raises(TypeError, match="cannot be stored in a checkpoint"):
        random_generator.save(tmp_path / "g.safetensors")


def test_the_shipped_generator_carries_its_auxiliary_distilled_and_pgd_trained_guards(
    pretrained_generator: nn.Module,
) -> None:
    guards = pretrained_generator.default_guards
    assert [g.checkpoint_meta["kind"] for g in guards] == ["acwgan_gp.aux_classifier", GUARD_KIND, "classifier"]
    assert is_distilled_guard(guards[1]) and not is_distilled_guard(guards[2])
    assert guards[2].checkpoint_meta["config"]["architecture"] == "guard"  # the distilled guard's net, real data


def test_the_shipped_pgd_trained_guard_keeps_real_images_class_under_pgd_more_often_than_the_others(
    pretrained_generator: nn.Module, fashion_test: TensorDataset
) -> None:
    # Why the shipped generator carries a third guard: PGD-trained on real images, it still recognises a
    # real image after PGD (ε 0.1) more often than the guard distilled from G_orig with FGSM (0.74 against
    # 0.57 when measured; the auxiliary classifier 0.13), so the fit cannot keep it on the source class
    # with a change that a robust judge would read as another class.
    x, y = fashion_test.images[:300], fashion_test.labels[:300]

    def accuracy_under_pgd(guard: nn.Module) -> float:
        adversarial = pgd(
            guard, x, y, epsilon=0.1, step_size=0.025, steps=10, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            return float((guard(adversarial).argmax(1) == y).float().mean())

    aux, distilled, pgd_trained = (accuracy_under_pgd(g) for g in pretrained_generator.default_guards)
    assert pgd_trained >= 0.65
    assert pgd_trained >= distilled + 0.1 >= aux + 0.1

"""atgan_plugin.defense: adversarial training with AT-GAN's examples, at toy scale on real Fashion-MNIST slices."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from atgan_plugin import ATGANAttack, defense
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.data import TensorDataset as ImageSet
from atgan_plugin.models import build_classifier

# Small fits on the class-mean generator: the first one, refits every 25 steps, and the attack that judges.
TOY = defense.DefenseConfig(
    start_step=20,
    first_fit_steps=60,
    refit_steps=15,
    refit_every=25,
    attack=TransferConfig.realistic(pool=0, settle=0, batch_size=32, lr=0.05),
)
JUDGE = TransferConfig.realistic(steps=80, batch_size=32, lr=0.05, pool=0)
CLI_TOY = dict(start_step=2, first_fit_steps=3, refit_steps=2, refit_every=3, attack=TOY.attack)


def loader(data: ImageSet, n: int = 3000, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    dataset = TensorDataset(data.images[:n], data.labels[:n])
    return DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))


def fresh_model(seed: int = 5) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_classifier("D")


SEEDS = (0, 1, 2)  # the toy's global draws (dropout, FGSM starts): one pair per seed, compared on average


def change_needed(model: nn.Module, generator: nn.Module, n: int = 400) -> tuple[float, float]:
    """A fresh fit against ``model`` (never the defense's G_attack), judged on ``n`` new examples: the share that
    fools it, and the median ℓ2 change from G_orig's image (same latents) of the examples that fool it where
    G_orig's image does not. The toy generator's blurry means have no oracle: a model that learnt the class
    needs a larger change."""
    attack = ATGANAttack(model, generator=generator, config=JUDGE, guard=None, seed=11, progress=False)
    rng = torch.Generator().manual_seed(3)
    sources = torch.randint(10, (n,), generator=rng)
    z = generator.sample_z(n, generator=rng)
    with torch.no_grad():
        adversarial = attack.generate(sources, z=z)  # shrunk towards G_orig's image while it fools the model
        reference = generator(z, sources)
        fooled = model.eval()(adversarial).argmax(1) != sources
        flipped = fooled & (model(reference).argmax(1) == sources)
        change = (adversarial - reference).flatten(1).norm(dim=1)[flipped].median()
    return fooled.float().mean().item(), change.item()


Pairs = tuple[nn.Module, list[tuple[nn.Module, nn.Module]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def trained_pairs(fashion_train: ImageSet, make_tiny_generator: Callable[..., nn.Module]) -> Pairs:
    """Per seed, an undefended and a defended Model D: same initialisation, data order and epochs."""
    generator = make_tiny_generator()
    no_atgan = defense.DefenseConfig(atgan_weight=0.0, pgd_weight=0.0, start_step=10**9)
    pairs, history = [], []
    for seed in SEEDS:
        plain, defended = fresh_model(), fresh_model()
        for model, config in ((plain, no_atgan), (defended, TOY)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # whatever ran before, the same global draws for both
                history = defense.train(
                    model, generator, loader(fashion_train), epochs=2, config=config, guard=None, progress=False
                )
        pairs.append((plain, defended))
    return generator, pairs, history


def test_the_defended_model_resists_a_fresh_fit_its_twin_does_not(trained_pairs: Pairs, fashion_test: ImageSet) -> None:
    generator, pairs, history = trained_pairs
    fits = [fit for epoch in history for fit in epoch["fits"]]
    assert fits[0]["fit_step"] == TOY.start_step and fits[0]["fit_steps"] == TOY.first_fit_steps
    assert all(f["fit_steps"] == TOY.refit_steps for f in fits[1:]) and len(fits) >= 3  # refitted as it trained
    assert all("loss_atgan" in epoch and "loss_pgd" in epoch for epoch in history)
    twins, defended = zip(*[(change_needed(p, generator), change_needed(d, generator)) for p, d in pairs], strict=True)
    assert all(success > 0.6 for success, _ in twins), (
        twins
    )  # the attack works on the twins: the comparison means something
    assert all(d[1] > t[1] for t, d in zip(twins, defended, strict=True)), (twins, defended)
    mean_twin, mean_defended = (sum(c for _, c in group) / len(group) for group in (twins, defended))
    assert mean_defended > 1.15 * mean_twin, (twins, defended)  # it needs a clearly larger change on average
    with torch.no_grad():
        for plain, held in pairs:
            accuracy = [
                (m.eval()(fashion_test.images).argmax(1) == fashion_test.labels).float().mean().item()
                for m in (plain, held)
            ]
            assert accuracy[1] > accuracy[0] - 0.1, accuracy


def test_train_touches_only_the_model_and_restores_its_mode(
    fashion_train: ImageSet, make_tiny_generator: Callable[..., nn.Module]
) -> None:
    generator, model = make_tiny_generator(), fresh_model()
    model.eval()
    generator_before = copy.deepcopy(generator.state_dict())
    model_before = copy.deepcopy(model.state_dict())
    defense.train(model, generator, loader(fashion_train, n=640), epochs=1, config=TOY, guard=None, progress=False)
    assert not model.training  # as it was handed over
    assert all(torch.equal(v, generator_before[k]) for k, v in generator.state_dict().items())
    assert not generator.training and all(p.grad is None for p in generator.parameters())
    assert any(not torch.equal(v, model_before[k]) for k, v in model.state_dict().items())  # it did train


class Killed(RuntimeError):
    pass


def test_a_killed_run_resumes_from_its_checkpoint(
    fashion_train: ImageSet,
    make_tiny_generator: Callable[..., nn.Module],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator, data = make_tiny_generator(), loader(fashion_train, n=1280)  # 20 steps an epoch
    state = tmp_path / "defense.pt"
    calls = {"n": 0}
    original = defense._step

    def dies_at_step_33(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 33:
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(defense, "_step", dies_at_step_33)
    model = fresh_model()
    with pytest.raises(Killed):
        defense.train(
            model,
            generator,
            data,
            epochs=3,
            config=TOY,
            guard=None,
            checkpoint=state,
            checkpoint_every=5,
            progress=False,
        )
    assert state.exists()
    monkeypatch.setattr(defense, "_step", original)
    resumed_model = fresh_model(seed=99)  # another start: the checkpoint must bring the weights back
    optimizer = torch.optim.Adam(resumed_model.parameters(), lr=1e-3)
    history = defense.train(
        resumed_model,
        generator,
        data,
        epochs=3,
        optimizer=optimizer,
        config=TOY,
        guard=None,
        checkpoint=state,
        progress=False,
    )
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["step"] == 60
    assert optimizer.state  # the optimiser's state came back with the weights
    again = defense.train(
        resumed_model, generator, data, epochs=3, config=TOY, guard=None, checkpoint=state, progress=False
    )
    assert again == history  # a finished run is left as it is


# fmt: off
BAD_INPUT: list[tuple[str, Callable[[Any], Any], type[Exception], str]] = [
    ("generator of 5 classes", lambda c: defense.train(c.model, c.make(num_classes=5), c.data, epochs=1, guard=None, progress=False), defense.DefenseError, r"the data has labels up to 9 but the generator has 5 classes"),
    ("model of 7 classes", lambda c: defense.train(nn.Sequential(nn.Flatten(), nn.Linear(784, 7)), c.make(), c.data, epochs=1, guard=None, progress=False), defense.DefenseError, r"the generator has 10 classes but the model returns logits of shape \(2, 7\)"),
    ("images of another size", lambda c: defense.train(c.model, c.make(), c.small, epochs=1, guard=None, progress=False), defense.DefenseError, r"the generator makes images of shape \(1, 28, 28\) but the data holds \(1, 14, 14\)"),
    ("epochs 0", lambda c: defense.train(c.model, c.make(), c.data, epochs=0, progress=False), ValueError, r"epochs must be an integer >= 1, got 0"),
    ("weights above 1", lambda c: defense.DefenseConfig(atgan_weight=0.7, pgd_weight=0.5), ValueError, r"atgan_weight \+ pgd_weight must be at most 1"),
    ("not a generator", lambda c: defense.train(c.model, nn.Linear(2, 2), c.data, epochs=1, progress=False), TypeError, r"Linear is not a ConditionalGenerator"),
    ("a foreign checkpoint", lambda c: defense.train(c.model, c.make(), c.data, epochs=1, guard=None, checkpoint=c.foreign, progress=False), CheckpointError, r"is not a defense training state of this model and generator"),
]
# fmt: on


@pytest.mark.parametrize(("name", "call", "error", "match"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_named(
    name: str,
    call: Callable[[Any], Any],
    error: type[Exception],
    match: str,
    fashion_train: ImageSet,
    make_tiny_generator: Callable[..., nn.Module],
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from atgan_plugin.checkpoints import save_training_state

    foreign = tmp_path / "foreign.pt"
    save_training_state(foreign, {"model": {"weight": torch.zeros(2)}})
    small = TensorDataset(torch.rand(64, 1, 14, 14), torch.randint(10, (64,)))
    ctx = SimpleNamespace(
        model=fresh_model(),
        make=make_tiny_generator,
        data=loader(fashion_train, n=128),
        small=DataLoader(small, batch_size=32),
        foreign=foreign,
    )
    with pytest.raises(error, match=match):
        call(ctx)


# ------------------------------------------------------------------------------------------------
# atgan train-classifier --defense atgan


@pytest.fixture(scope="module")
def standin_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained AC-WGAN_GP generator file: the command's plumbing, in seconds."""
    from atgan_plugin.adapters import ACWGANGPGenerator
    from atgan_plugin.adapters.acwgan_gp import Generator

    path = tmp_path_factory.mktemp("defense-cli") / "generator.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ACWGANGPGenerator(Generator()).save(path)
    return path


def test_train_classifier_with_the_defense_writes_the_model_its_record_and_its_state(
    standin_generator: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from atgan_plugin.cli import main

    # A first fit after 2 steps, refits every 2 (the defaults wait 200 steps: more than this run has).
    monkeypatch.setattr(defense, "DefenseConfig", functools.partial(defense.DefenseConfig, **CLI_TOY))
    out = tmp_path / "defended.safetensors"
    arguments = ["train-classifier", "--arch", "D", "--defense", "atgan", "--generator", str(standin_generator)]
    arguments += ["--train-size", "256", "--epochs", "1", "--out", str(out), "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and out.is_file() and out.with_suffix(".state").is_file()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["defense"] == "atgan" and record["options"]["defense"] == "atgan"
    fits = record["history"][0]["fits"]
    assert [f["fit_step"] for f in fits] == [2]  # 4 steps: the first fit at step 2, no refit due by step 4
    assert "loss_atgan" in record["history"][0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--defense", "atgan", "--regime", "pgd"], "--defense atgan mixes AT-GAN's examples into normal training"),
        (["--generator", "g.safetensors"], "--generator is used only by --defense atgan"),
    ],
)
def test_train_classifier_refuses_a_defense_it_cannot_run(extra: list[str], message: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atgan_plugin.cli import main

    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(main, ["train-classifier", "--arch", "D", *extra, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()

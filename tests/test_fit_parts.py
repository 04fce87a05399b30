"""The fit's parts added for its cost: the schedule, the stopping rule, the reference pool, the average, warm starts."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator, fit_attack_generators
from atgan_plugin.attack.objective import render_reference
from atgan_plugin.attack.reference_pool import ReferencePool
from atgan_plugin.attack.schedule import STRETCH_WINDOW, Horizon, SettleRule, learning_rate

SMALL = TransferConfig(steps=30, batch_size=16, lr=0.05)


def parameters_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_the_schedules() -> None:
    cosine = TransferConfig(steps=100, lr=1.0, schedule="cosine", warmup=0.1)
    rates = [learning_rate(cosine, step) for step in range(100)]
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # the warm-up ramp
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False)) and rates[-1] < 1e-3
    constant = TransferConfig(steps=100, lr=0.3)
    assert {learning_rate(constant, step) for step in range(100)} == {0.3}


def test_a_lagging_fit_is_lengthened_at_halfway_at_most_stretch_times() -> None:
    config = TransferConfig(steps=200, stretch=2)
    both = [torch.tensor([1.0, 0.9]), torch.tensor([1.0, 1.0])]  # the second setting lags, then catches up

    def run(horizon: Horizon, success: torch.Tensor, steps: range) -> list[int]:
        return [step for step in steps if horizon.update(step, success)]

    lagging = Horizon(config)
    assert run(lagging, both[0], range(600)) == [99, 199] and lagging.steps == 600 == lagging.ceiling
    recovered = Horizon(config)
    assert run(recovered, both[0], range(100)) == [99] and run(recovered, both[1], range(100, 400)) == []
    assert recovered.steps == 400
    # Only the window before halfway counts: a lagging start is forgiven once the fit has caught up.
    late = Horizon(config)
    assert run(late, both[0], range(100 - STRETCH_WINDOW)) == [] and run(late, both[1], range(50, 600)) == []
    assert late.steps == 200
    assert run(Horizon(replace(config, stretch=0)), both[0], range(400)) == []
    # The cosine follows the lengthened horizon: halfway along it, half the rate.
    cosine = TransferConfig(steps=100, lr=1.0, schedule="cosine")
    assert learning_rate(cosine, 100, 200) == pytest.approx(0.5) and learning_rate(cosine, 100) == 0.0


def test_a_fit_that_lags_runs_its_lengthened_schedule(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    # At a rate of (nearly) 0 the target stays unfooled, so halfway the fit lags: one more `steps`, and its rate
    # decays to 0 at the new horizon.
    config = TransferConfig(steps=60, batch_size=8, lr=1e-12, schedule="cosine", stretch=1)
    fit = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    assert fit.steps_run == 120 and fit.history[-1]["lr"] < 1e-15 < fit.history[5]["lr"]
    assert (
        fit_attack_generator(tiny_generator, tiny_target, config=replace(config, stretch=0), progress=False).steps_run
        == 60
    )


def test_the_stopping_rule_waits_for_two_quiet_windows_after_the_warm_up() -> None:
    rule = SettleRule(TransferConfig(steps=1000, settle=10, warmup=0.02))  # 20 warm-up steps
    noise = torch.Generator().manual_seed(0)
    steps = iter(range(1000))

    def signals(loss: float, success: float) -> torch.Tensor:
        return torch.tensor([[loss + 0.1 * torch.randn(1, generator=noise).item(), success]])

    falling = [rule.update(next(steps), signals(10.0 - 0.1 * i, 0.9)) for i in range(60)]
    assert not any(falling)  # the loss falls a whole unit a window, far beyond its noise: not settled
    flat = [rule.update(next(steps), signals(4.0, 0.9)) for _ in range(40)]
    assert flat.index(True) == 29  # windows end at flat steps 9 (after the fall), 19 and 29 (two quiet ones)
    assert not any(SettleRule(TransferConfig(settle=0)).update(s, torch.ones(1, 2)) for s in range(100))


def test_a_fit_that_settles_stops_early_and_says_so(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    # With the learning rate at (nearly) 0 nothing moves: only the batches' noise, from the start.
    config = TransferConfig(steps=400, batch_size=8, lr=1e-12, settle=20)
    fit = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    # At least three windows (the first has none before it); a window of pure noise reads as a change 1 time in 20.
    assert 60 <= fit.steps_run <= 200 and fit.steps_run % 20 == 0, fit.steps_run


def test_the_pool_is_rendered_once_and_walked_per_target(tiny_generator: nn.Module) -> None:
    pool = ReferencePool.render(
        tiny_generator,
        [],
        100,
        num_classes=10,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        precision="fp32",
    )
    assert len(pool) == 100 and pool.reference.images.shape == (100, 1, 28, 28)
    expected = render_reference(tiny_generator, [], pool.z, pool.sources, num_classes=10, precision="fp32")
    assert torch.allclose(pool.reference.images, expected.images, atol=1e-6)
    draw = pool.sampler(3, torch.Generator().manual_seed(1))
    rows = torch.cat([draw(7) for _ in range(40)])
    assert not (pool.sources[rows] == 3).any()  # a target's batches never hold its own class
    eligible = int((pool.sources != 3).sum())
    first_pass = rows[:eligible]
    assert len(set(first_pass.tolist())) == eligible  # every eligible row once per pass


def test_the_pool_is_capped_by_memory(tiny_generator: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    from atgan_plugin.attack import reference_pool

    monkeypatch.setattr(reference_pool, "POOL_BYTES", 50 * 28 * 28 * 4)
    pool = ReferencePool.render(
        tiny_generator,
        [],
        300,
        num_classes=10,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        precision="fp32",
    )
    assert len(pool) == 50


@pytest.mark.parametrize("changes", [{}, {"pool": 200}])
def test_a_target_fitted_with_others_equals_its_separate_fit(
    tiny_generator: nn.Module, tiny_target: nn.Module, changes: dict[str, Any]
) -> None:
    config = replace(SMALL, **changes)
    joint = fit_attack_generators(tiny_generator, tiny_target, [None, 4], config=config, progress=False)
    alone = fit_attack_generator(tiny_generator, tiny_target, target=4, config=config, progress=False)
    a, b = parameters_of(joint[4].generator), parameters_of(alone.generator)
    assert all(torch.allclose(a[n], b[n], atol=1e-5) for n in a)


def test_the_pool_holds_no_more_than_one_setting_draws(
    tiny_generator: nn.Module, tiny_target: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    render = ReferencePool.render.__func__  # type: ignore[attr-defined]

    def spy(cls: type[ReferencePool], *args: Any, **kwargs: Any) -> ReferencePool:
        sizes.append(args[2])  # (g_orig, guards, size)
        return render(cls, *args, **kwargs)

    monkeypatch.setattr(ReferencePool, "render", classmethod(spy))
    config = replace(SMALL, steps=5, batch_size=4, pool=10_000)
    fit_attack_generators(tiny_generator, tiny_target, [None, 3], config=config, progress=False)
    assert sizes == [20]  # one setting's 5 steps of 4, shared by both settings (each walks it in its own order)


def test_a_pool_fit_fools_fresh_latents_as_well_as_the_pool(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    # A pool reused many times must not fit its own latents only: success on fresh (z, y) stays close.
    config = replace(SMALL, steps=60, batch_size=32, pool=256)  # each pool row drawn 7.5 times
    fit = fit_attack_generator(tiny_generator, tiny_target, config=config, progress=False)
    rng = torch.Generator().manual_seed(7)
    z, y = tiny_generator.sample_z(1000, generator=rng), torch.randint(10, (1000,), generator=rng)
    with torch.no_grad():
        fresh = (tiny_target(fit.generator(z, y)).argmax(1) != y).float().mean().item()
    assert fresh > 0.6 and fresh > fit.history[-1]["success"] - 0.15, (fresh, fit.history[-1]["success"])


def test_the_average_of_the_parameters_is_what_the_fit_returns(
    tiny_generator: nn.Module, tiny_target: nn.Module
) -> None:
    plain = fit_attack_generator(tiny_generator, tiny_target, config=SMALL, progress=False)
    averaged = fit_attack_generator(tiny_generator, tiny_target, config=replace(SMALL, ema=0.9), progress=False)
    start = parameters_of(tiny_generator)
    p, q = parameters_of(plain.generator), parameters_of(averaged.generator)
    moved = {n: (p[n] - start[n]).norm().item() for n in p}
    between = {n: (q[n] - start[n]).norm().item() for n in q}
    assert plain.history == averaged.history  # the same steps were taken...
    assert any(not torch.equal(p[n], q[n]) for n in p)  # ...but the average is returned
    assert all(0 < between[n] < 1.2 * moved[n] for n in p), (between, moved)


def test_a_warm_start_begins_where_the_given_generator_is(tiny_generator: nn.Module, tiny_target: nn.Module) -> None:
    first = fit_attack_generator(tiny_generator, tiny_target, config=SMALL, progress=False)
    warm = fit_attack_generators(
        tiny_generator,
        tiny_target,
        [None],
        config=replace(SMALL, steps=1, lr=1e-12),
        start_from={None: first.generator},
        progress=False,
    )[None]
    a, b = parameters_of(first.generator), parameters_of(warm.generator)
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert warm.history[0]["success"] >= first.history[-1]["success"] - 0.25  # it starts adversarial
    with pytest.raises(ValueError, match=r"start_from names the setting 5, which is not among the targets \[None\]"):
        fit_attack_generators(
            tiny_generator, tiny_target, [None], config=SMALL, start_from={5: first.generator}, progress=False
        )


# fmt: off
BAD_CONFIGS = [
    ({"schedule": "linear"}, ValueError, r"schedule must be one of \('constant', 'cosine'\), got 'linear'"),
    ({"warmup": 1.0}, ValueError, r"warmup must be a fraction of the steps in \[0, 1\), got 1.0"),
    ({"warmup": math.nan}, ValueError, r"warmup must be a finite number, got nan"),
    ({"ema": 1.0}, ValueError, r"ema must be a decay in \[0, 1\), got 1.0"),
    ({"pool": -1}, ValueError, r"pool must be >= 0, got -1"),
    ({"pool": 2.5}, TypeError, r"pool must be an integer, got 2.5 \(float\)"),
    ({"settle": -3}, ValueError, r"settle must be >= 0, got -3"),
    ({"stretch": -1}, ValueError, r"stretch must be >= 0, got -1"),
    ({"stretch": 1.5}, TypeError, r"stretch must be an integer, got 1.5"),
    ({"search_steps": 31}, ValueError, r"search_steps must be an integer in \[0, 30\], got 31"),
    ({"rho_l0": 1.5}, ValueError, r"rho_l0 as a fraction of the image's values must be in \[0, 1\], got 1.5"),
    ({"rho_l0": -2}, ValueError, r"rho_l0 must be a count \(int >= 0\) or a fraction \(float in \[0, 1\]\), got -2"),
]
# fmt: on


@pytest.mark.parametrize(("changes", "error", "match"), BAD_CONFIGS)
def test_bad_settings_are_named(changes: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TransferConfig(**changes)


def test_rho_l0_as_a_fraction_suits_every_image_size() -> None:
    from atgan_plugin.attack.losses import sample_rho

    for shape, count in (((2, 1, 28, 28), 200), ((2, 3, 32, 32), 784), ((2, 1, 32, 32), 261)):
        rho = sample_rho(shape, l0=200 / 784, linf=0.5, generator=torch.Generator().manual_seed(0))
        assert (rho.flatten(1) != 0).sum(1).tolist() == [count, count]

"""torchrun: data-parallel fits (gloo, 2 CPU processes) and mass generation, also after a killed rank.

Each test starts real processes with ``python -m torch.distributed.run --standalone`` (a free port
of its own) and one thread each; fits are a few dozen steps on the tiny fixtures, generations a few
thousand examples. The 100,000-example generation of the acceptance is the slow-marked test.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from atgan_plugin import ACWGANGPGenerator, ATGANAttack
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.attack.distributed import rank_seed, split_batch
from atgan_plugin.attack.generation import MANIFEST, GenerationPlan, file_sha256, read_shard, shard_inputs
from atgan_plugin.models import build_classifier, save_classifier

TESTS = Path(__file__).parent
CLASSIFIER_CONFIG = {"architecture": "D", "num_classes": 10, "in_channels": 1}
# The tiny fit of tests/test_joint_fit.py, targets 2 and 7 together (ATGANAttack's keyword arguments).
FIT: dict[str, Any] = dict(
    steps=60, batch_size=32, lr=0.1, joint_batch_size=16, search_steps=0, guard=None, targeted=True
)


def torchrun(*args: str | Path, cwd: Path, processes: int = 2, wait: bool = True) -> Any:
    """``torchrun --standalone --nproc-per-node <processes> <args>`` in ``cwd``, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATGAN_CACHE_DIR": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        *map(str, args),
    ]
    if not wait:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# ------------------------------------------------------------------------------------------------
# The pieces.


def test_rank_zero_keeps_the_seed_and_the_others_get_their_own() -> None:
    assert rank_seed(5, 0) == 5
    seeds = {rank_seed(5, rank) for rank in range(1, 8)}
    assert len(seeds) == 7 and 5 not in seeds and rank_seed(5, 3) == rank_seed(5, 3)
    assert all(0 <= s < 2**63 for s in seeds)


def test_a_batch_splits_evenly_or_names_the_problem() -> None:
    assert split_batch(64, 2) == 32 and split_batch(64, 1) == 64
    with pytest.raises(ValueError, match="--batch-size 64 does not split evenly over 3 processes"):
        split_batch(64, 3, "--batch-size")


# ------------------------------------------------------------------------------------------------
# A 2-process fit.


def test_a_two_process_fit_reaches_the_single_process_success(
    tmp_path: Path, class_means: torch.Tensor, make_tiny_generator: Any, tiny_target: nn.Module
) -> None:
    torch.save({"class_means": class_means}, tmp_path / "inputs.pt")
    save_classifier(tmp_path / "target.safetensors", tiny_target, CLASSIFIER_CONFIG, {})
    (tmp_path / "fit.json").write_text(json.dumps(FIT))
    torchrun(TESTS / "distributed_worker.py", tmp_path, cwd=tmp_path)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # the averaged gradients keep every rank's G_attack identical
    generator = make_tiny_generator()
    single = ATGANAttack(tiny_target, generator=generator, progress=False, **FIT)
    parallel = ATGANAttack(tiny_target, generator=generator, progress=False, **FIT)
    single.fit(targets=[2, 7])
    for target in (2, 7):
        fit = parallel.load_fit(tmp_path / f"fit{target}.safetensors")
        assert fit.config.batch_size == FIT["joint_batch_size"] and fit.config.seed == 0  # recorded as a whole
        rng = torch.Generator().manual_seed(5)
        sources = (target + 1 + torch.randint(9, (400,), generator=rng)) % 10
        z = generator.sample_z(400, generator=rng)
        rates = []
        for attack in (single, parallel):
            with torch.no_grad():
                images = attack.generate(sources, target=target, z=z)
                rates.append((tiny_target(images).argmax(1) == target).float().mean().item())
        assert rates[1] == pytest.approx(rates[0], abs=0.1), (target, rates)


# ------------------------------------------------------------------------------------------------
# Mass generation.


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with an untrained AC-WGAN_GP generator and Model D as checkpoints, and a 2-process
    ``atgan fit`` run for target 3 made from them with torchrun (its run folder: ``runs/00001-fit``)."""
    folder = tmp_path_factory.mktemp("torchrun")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ACWGANGPGenerator(Generator()).save(folder / "generator.safetensors")
        save_classifier(folder / "model.safetensors", build_classifier("D"), CLASSIFIER_CONFIG, {})
    result = torchrun(
        "-m",
        "atgan_plugin.cli",
        "fit",
        "--generator",
        "generator.safetensors",
        "--model",
        "model.safetensors",
        "--targets",
        "3",
        "--no-untargeted",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--guard",
        "none",
        "--device",
        "cpu",
        "--runs-dir",
        "runs",
        cwd=folder,
    )
    assert "1 fit(s)" in result.stdout and result.stdout.count("outputs in") == 1  # rank 0 alone reports
    assert [p.name for p in (folder / "runs").iterdir()] == ["00001-fit"]  # and alone makes a run folder
    return folder


def test_two_process_evaluate_and_attack_write_one_run_folder_each(standins: Path) -> None:
    common = [
        "--generator",
        "generator.safetensors",
        "--model",
        "model.safetensors",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--joint-batch-size",
        "4",
        "--guard",
        "none",
        "--device",
        "cpu",
        "--runs-dir",
        "runs-cli",
        "--no-progress",
    ]
    evaluate = torchrun(
        "-m",
        "atgan_plugin.cli",
        "evaluate",
        "--count",
        "20",
        "--targets",
        "1,2",
        "--oracle",
        "model.safetensors",
        *common,
        cwd=standins,
    )
    attack = torchrun("-m", "atgan_plugin.cli", "attack", "-n", "12", "--targets", "4,5", *common, cwd=standins)
    assert evaluate.stdout.count("report:") == 1 and "12 adversarial examples over targets [4, 5]" in attack.stdout
    folders = sorted(p.name for p in (standins / "runs-cli").iterdir())
    assert folders == ["00001-evaluate", "00002-attack"]
    report = json.loads((standins / "runs-cli" / "00001-evaluate" / "report.json").read_text())
    assert [fit["target"] for fit in report["fits"]] == [None, 1, 2]
    # the untargeted fit alone at --batch-size, the targets together at --joint-batch-size (over both ranks)
    assert [fit["config"]["batch_size"] for fit in report["fits"]] == [8, 4, 4]
    assert report["untargeted"]["fd_ratio"] is not None  # rank 0 alone computed the Frechet distance, without waiting
    assert all((standins / "runs-cli" / name / "complete.json").is_file() for name in folders)


def generate_args(out: str, n: int, shard_size: int) -> list[str]:
    return [
        "-m",
        "atgan_plugin.cli",
        "generate",
        "--fit",
        "runs/00001-fit/g_attack-target3.safetensors",
        "-n",
        str(n),
        "--out",
        out,
        "--shard-size",
        str(shard_size),
        "--generator",
        "generator.safetensors",
        "--model",
        "model.safetensors",
        "--search-steps",
        "2",
        "--batch-size",
        "500",
        "--device",
        "cpu",
        "--no-progress",
    ]


def check_manifest(folder: Path, n: int, shard_size: int) -> dict[str, Any]:
    """The manifest lists shards that hold exactly ``n`` distinct, correctly labelled examples."""
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["total"] == n and manifest["target"] == 3 and manifest["seeds"]["seed"] == 0
    plan = GenerationPlan(**{k: v for k, v in manifest["plan"].items() if k != "format"})
    assert len(manifest["shards"]) == plan.num_shards == -(-n // shard_size)
    generator = ACWGANGPGenerator.from_checkpoint(folder.parent / "generator.safetensors")
    seen: set[bytes] = set()
    for i, entry in enumerate(manifest["shards"]):
        path = folder / entry["path"]
        assert entry["sha256"] == file_sha256(path) and entry["seed"] == plan.shard_seed(i)
        tensors = read_shard(path)
        assert set(tensors) == {"images", "source_labels", "target_labels"}
        assert len(tensors["images"]) == entry["count"] == plan.count(i)
        assert torch.equal(tensors["source_labels"], shard_inputs(plan, i, generator)[0])  # its own seed's draws
        assert bool((tensors["target_labels"] == 3).all()) and bool((tensors["source_labels"] != 3).all())
        seen.update(hashlib.sha256(image.numpy().tobytes()).digest() for image in tensors["images"])
    assert len(seen) == n  # every example distinct
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    return manifest


def test_a_two_process_generation_writes_every_example_once(standins: Path) -> None:
    result = torchrun(*generate_args("out", 2_300, 500), cwd=standins)
    assert result.stdout.count("manifest:") == 1
    manifest = check_manifest(standins / "out", 2_300, 500)
    assert manifest["processes"] == 2 and manifest["generated_now"] == 2_300
    # The same code path as ATGANAttack.generate: shard 1 again, in this process.
    generator = ACWGANGPGenerator.from_checkpoint(standins / "generator.safetensors")
    model = build_classifier("D")
    from atgan_plugin.models import load_classifier

    model = load_classifier(standins / "model.safetensors", device="cpu")
    attack = ATGANAttack(model, generator=generator, guard=None, search_steps=2, progress=False)
    attack.load_fit(standins / "runs/00001-fit/g_attack-target3.safetensors")
    plan = GenerationPlan(**{k: v for k, v in manifest["plan"].items() if k != "format"})
    sources, z = shard_inputs(plan, 1, generator)
    expected = attack.generate(sources, target=3, z=z)
    assert torch.allclose(read_shard(standins / "out" / plan.shard_name(1))["images"], expected, atol=1e-5)
    # A rerun finds everything done and rewrites nothing.
    before = {p.name: p.stat().st_mtime_ns for p in (standins / "out").glob("shard-*")}
    again = torchrun(*generate_args("out", 2_300, 500), cwd=standins)
    assert "0 made now" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (standins / "out").glob("shard-*")} == before


def test_another_plan_in_the_same_folder_is_refused(standins: Path) -> None:
    torchrun(*generate_args("refuse", 600, 300), cwd=standins, processes=1)
    command = [sys.executable, "-m", *generate_args("refuse", 700, 300)[1:]]
    result = subprocess.run(command, cwd=standins, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "total 600 (now 700)" in result.stderr and "Traceback" not in result.stderr


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def kill_one_rank_then_resume(folder: Path, out: str, n: int, shard_size: int) -> None:
    """Starts a 2-process generation, SIGKILLs one worker once a few shards exist, then reruns the command."""
    process = torchrun(*generate_args(out, n, shard_size), cwd=folder, wait=False)
    target = folder / out
    deadline = time.monotonic() + 300
    while len(list(target.glob("shard-*.safetensors"))) < 3:
        assert process.poll() is None, process.stdout.read().decode()[-3000:] if process.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    workers = children(process.pid)
    os.kill(workers[-1], signal.SIGKILL)  # one rank dies mid-run; torchrun stops the other
    process.wait(timeout=120)
    assert process.returncode != 0 and not (target / MANIFEST).exists()
    kept = {p.name: p.stat().st_mtime_ns for p in target.glob("shard-*.safetensors")}
    assert 3 <= len(kept) < -(-n // shard_size)
    torchrun(*generate_args(out, n, shard_size), cwd=folder)
    check_manifest(target, n, shard_size)
    assert all(target.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in kept.items())  # never written twice


def test_a_killed_rank_resumes_without_rewriting_a_shard(standins: Path) -> None:
    kill_one_rank_then_resume(standins, "killed", 8_000, 400)


@pytest.mark.slow
def test_a_hundred_thousand_examples_on_two_processes_after_a_kill(standins: Path) -> None:
    kill_one_rank_then_resume(standins, "large", 100_000, 5_000)

"""Fuzzing the checkpoint loaders with hostile and damaged files.

Seeds: the shipped AC-WGAN_GP generator and oracle classifier (re-saved with a tensor digest), a
small StyleGAN2-ADA generator as our safetensors and as a snapshot pickle. Mutations: truncations,
byte flips in header and body, and crafted structures (metadata of the wrong JSON type, impossible
architectures, lying dtypes, shapes and offsets; pickles with huge lengths, deep nesting, memo
abuse, exponential tuples, absurd constructor arguments). A seeded mutator, so a failing case is
named and reproducible.

Each file is loaded in its own child process (``tests/fuzz_worker.py``) under 6 GB of address
space and 30 s. The only acceptable outcomes: a ``CheckpointError``, or a load that gives back
the seed's own network (safetensors: the same weights, which the digest guarantees; pickles,
which carry no digest: the same architecture with finite weights). Every unmodified shipped
checkpoint must load. The default run takes a fast slice; ``-m slow`` a longer one.
"""

from __future__ import annotations

import collections
import json
import random
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from atgan_plugin.adapters import StyleGAN2ADAGenerator
from atgan_plugin.checkpoints import load_checkpoint, save_checkpoint
from atgan_plugin.pretrained import ROOT as PRETRAINED
from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import dump_snapshot, snapshot_dict

WORKER = Path(__file__).with_name("fuzz_worker.py")
SHIPPED = sorted(PRETRAINED.glob("*/**/*.safetensors"))
Make = Callable[[random.Random, bytes], bytes]  # (rng, seed file) -> mutated file


@dataclass(frozen=True)
class Seed:
    name: str
    loader: str  # fuzz_worker.LOADERS
    data: bytes
    digest_protected: bool  # safetensors with a digest: any successful load must give the seed's weights


@dataclass(frozen=True)
class Case:
    name: str
    seed: Seed
    make: Make


# ------------------------------------------------------------------------------------------------
# The worker: one fork server per test, one child per file.


class Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )

    def load(self, loader: str, path: Path) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"loader": loader, "path": str(path)}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 120)  # the child's own alarm is 30 s
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the fuzz worker stopped answering (exit code {self.process.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


# ------------------------------------------------------------------------------------------------
# Seeds.


def _resaved(path: Path, folder: Path) -> bytes:
    """A shipped checkpoint written again by save_checkpoint: same (float16) values, now with a digest."""
    save_checkpoint(folder / path.name, load_checkpoint(path), half=True)
    return (folder / path.name).read_bytes()


def _tiny_stylegan() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator(
            z_dim=8,
            c_dim=3,
            w_dim=8,
            img_resolution=8,
            img_channels=3,
            mapping_kwargs={"num_layers": 2},
            synthesis_kwargs={"channel_base": 64, "channel_max": 8, "conv_clamp": 256},
        )


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Seed]:
    folder = tmp_path_factory.mktemp("seeds")
    network = _tiny_stylegan()
    dump_snapshot(folder / "tiny.pkl", snapshot_dict(network), protocol=4)
    StyleGAN2ADAGenerator(network, class_center_samples=4).save(folder / "tiny.safetensors")
    return {
        "generator": Seed(
            "generator", "generator", _resaved(PRETRAINED / "fashion-mnist" / "generator.safetensors", folder), True
        ),
        "oracle": Seed(
            "oracle", "classifier", _resaved(PRETRAINED / "fashion-mnist" / "oracle.safetensors", folder), True
        ),
        "stylegan": Seed("stylegan", "generator", (folder / "tiny.safetensors").read_bytes(), True),
        "pickle": Seed("pickle", "generator", (folder / "tiny.pkl").read_bytes(), False),
    }


# ------------------------------------------------------------------------------------------------
# Mutations: random ones (truncations, flips) and crafted ones.


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def truncate(where: str) -> Make:
    def make(rng: random.Random, data: bytes) -> bytes:
        header = 8 + int.from_bytes(data[:8], "little") if where == "header" else 0
        end = rng.randrange(0, header) if where == "header" else rng.randrange(0, len(data))
        return data[:end]

    return make


def flip(where: str, count: int) -> Make:
    def make(rng: random.Random, data: bytes) -> bytes:
        out = bytearray(data)
        header = 8 + int.from_bytes(data[:8], "little") if where != "anywhere" else 0
        low, high = {"header": (0, header), "body": (header, len(data)), "anywhere": (0, len(data))}[where]
        for _ in range(count):
            i = rng.randrange(low, high)
            out[i] ^= 1 << rng.randrange(8)
        return bytes(out)

    return make


def edit_header(edit: Callable[[dict[str, Any]], Any]) -> Make:
    def make(rng: random.Random, data: bytes) -> bytes:
        header, body = _split(data)
        edit(header)
        return _join(header, body)

    return make


def edit_meta(edit: Callable[[dict[str, Any]], Any], raw: str | None = None) -> Make:
    """Edits our metadata JSON (``edit`` may return a replacement); ``raw`` replaces its text outright."""

    def change(header: dict[str, Any]) -> None:
        meta = json.loads(header["__metadata__"]["atgan_plugin"])
        replaced = edit(meta)
        header["__metadata__"]["atgan_plugin"] = (
            raw if raw is not None else json.dumps(meta if replaced is None else replaced)
        )

    return edit_header(change)


def edit_config(field: str, value: Any) -> Make:
    def change(meta: dict[str, Any]) -> None:
        config = meta["config"]
        for part in field.split(".")[:-1]:
            config = config[part]
        config[field.split(".")[-1]] = value

    return edit_meta(change)


def edit_tensor(change: Callable[[dict[str, Any]], None]) -> Make:
    """Edits the header entry of the largest tensor (the one a lie about could cost the most)."""

    def apply(header: dict[str, Any]) -> None:
        name = max(
            (k for k in header if k != "__metadata__"),
            key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0],
        )
        change(header[name])

    return edit_header(apply)


def prefix(value: Callable[[int], int]) -> Make:
    def make(rng: random.Random, data: bytes) -> bytes:
        return value(int.from_bytes(data[:8], "little")).to_bytes(8, "little") + data[8:]

    return make


def raw(data: bytes) -> Make:
    return lambda rng, seed: data


def edit_snapshot(change: Callable[[dict[str, Any]], None]) -> Make:
    """Edits the G_ema record's meta of a fresh snapshot of the tiny network, then pickles it."""

    def make(rng: random.Random, data: bytes) -> bytes:
        snapshot = snapshot_dict(_tiny_stylegan())
        change(snapshot["G_ema"].meta)
        with tempfile.TemporaryDirectory() as folder:
            dump_snapshot(Path(folder) / "x.pkl", snapshot, protocol=4)
            return (Path(folder) / "x.pkl").read_bytes()

    return make


def _kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    return meta["state"]["_init_kwargs"]  # type: ignore[no-any-return]


HUGE_FIELD = {"generator": "z_dim", "oracle": "in_channels", "stylegan": "network.mapping_kwargs.num_layers"}
INT_FIELD = {"generator": "num_classes", "oracle": "num_classes", "stylegan": "network.w_dim"}

SAFETENSORS_CRAFTED: list[tuple[str, Callable[[str], Make]]] = [
    ("metadata is a list", lambda s: edit_meta(lambda m: [m])),
    ("metadata is a number", lambda s: edit_meta(lambda m: 3)),
    ("metadata nested 100,000 deep", lambda s: edit_meta(lambda m: None, raw="[" * 100_000 + "]" * 100_000)),
    ("metadata not JSON", lambda s: edit_meta(lambda m: None, raw="{not json")),
    ("metadata missing", lambda s: edit_header(lambda h: h.pop("__metadata__"))),
    ("config is a list", lambda s: edit_meta(lambda m: m.update(config=list(m["config"].items())))),
    ("config unknown key", lambda s: edit_config("depth_multiplier", 2)),
    ("config field 10**6", lambda s: edit_config(HUGE_FIELD[s], 10**6)),
    ("config field 10**18", lambda s: edit_config(HUGE_FIELD[s], 10**18)),
    ("config field negative", lambda s: edit_config(INT_FIELD[s], -3)),
    ("config field zero", lambda s: edit_config(INT_FIELD[s], 0)),
    ("config field true", lambda s: edit_config(INT_FIELD[s], True)),
    ("config field 10.5", lambda s: edit_config(INT_FIELD[s], 10.5)),
    ("config field NaN", lambda s: edit_config(INT_FIELD[s], float("nan"))),
    ("config field a string", lambda s: edit_config(INT_FIELD[s], "10")),
    ("config field null", lambda s: edit_config(INT_FIELD[s], None)),
    ("config field a dict", lambda s: edit_config(INT_FIELD[s], {"a": 1})),
    ("kind is a number", lambda s: edit_meta(lambda m: m.update(kind=7))),
    (
        "kind of another network",
        lambda s: edit_meta(lambda m: m.update(kind="classifier" if s != "oracle" else "acwgan_gp.generator")),
    ),
    ("format 2", lambda s: edit_meta(lambda m: m.update(format="2"))),
    ("training is a list", lambda s: edit_meta(lambda m: m.update(training=[]))),
    ("digest of other tensors", lambda s: edit_meta(lambda m: m.update(tensors_sha256="0" * 64))),
    ("digest not hex", lambda s: edit_meta(lambda m: m.update(tensors_sha256="xyz"))),
    ("digest removed", lambda s: edit_meta(lambda m: m.pop("tensors_sha256"))),  # loads, with a warning
    ("dtype F64", lambda s: edit_tensor(lambda t: t.update(dtype="F64"))),
    ("dtype I32", lambda s: edit_tensor(lambda t: t.update(dtype="I32"))),
    ("dtype BOOL", lambda s: edit_tensor(lambda t: t.update(dtype="BOOL"))),
    ("dtype unknown", lambda s: edit_tensor(lambda t: t.update(dtype="X7"))),
    ("dtype a number", lambda s: edit_tensor(lambda t: t.update(dtype=3))),
    ("shape doubled", lambda s: edit_tensor(lambda t: t.update(shape=[2 * n for n in t["shape"]]))),
    ("shape negative", lambda s: edit_tensor(lambda t: t.update(shape=[-1, *t["shape"][1:]]))),
    ("shape 2**40 with a zero", lambda s: edit_tensor(lambda t: t.update(shape=[0, 2**40]))),
    ("shape a string", lambda s: edit_tensor(lambda t: t.update(shape="big"))),
    ("offsets past the end", lambda s: edit_tensor(lambda t: t.update(data_offsets=[0, 2**40]))),
    ("offsets reversed", lambda s: edit_tensor(lambda t: t.update(data_offsets=t["data_offsets"][::-1]))),
    ("tensor entry removed", lambda s: edit_header(lambda h: h.pop(sorted(k for k in h if k != "__metadata__")[0]))),
    (
        "tensor entry added",
        lambda s: edit_header(lambda h: h.update(evil={"dtype": "F32", "shape": [2**20], "data_offsets": [0, 4]})),
    ),
    ("length prefix 0", lambda s: prefix(lambda n: 0)),
    ("length prefix 7", lambda s: prefix(lambda n: 7)),
    ("length prefix + 8", lambda s: prefix(lambda n: n + 8)),
    ("length prefix 2**63", lambda s: prefix(lambda n: 2**63)),
]

PICKLE_CRAFTED: list[tuple[str, Make]] = [
    ("15 bytes claiming 2**60 bytes", raw(b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"ab.")),
    ("unicode8 claiming 2**60", raw(b"\x80\x04\x8d" + (2**60).to_bytes(8, "little") + b"ab.")),
    ("bytearray8 claiming 2**60", raw(b"\x80\x05\x96" + (2**60).to_bytes(8, "little") + b"ab.")),
    ("frame claiming 2**60", raw(b"\x80\x04\x95" + (2**60).to_bytes(8, "little") + b"}.")),
    ("long4 claiming 2**31", raw(b"\x80\x02\x8b\xff\xff\xff\x7f\x00.")),
    ("memo index 2**32-1", raw(b"\x80\x04}r\xff\xff\xff\xff.")),
    ("memo read never stored", raw(b"\x80\x04j\x05\x00\x00\x00.")),
    ("tuple key 200,000 deep", raw(b"\x80\x04}" + b")" + b"\x85" * 200_000 + b"K\x01s.")),
    ("list 200,000 deep", raw(b"\x80\x04" + b"]" * 200_000 + b"a" * 199_999 + b".")),
    ("200,000 marks", raw(b"\x80\x04" + b"(" * 200_000 + b"}.")),
    (
        "tuple of 2**60 shared nodes",
        raw(b"\x80\x04)\x94" + b"".join(b"h%c" % i + b"h%c" % i + b"\x86\x94" for i in range(60)) + b"}."),
    ),
    ("a list that holds itself", raw(b"\x80\x04]\x94h\x00a}\x94(\x8c\x05G_emah\x00u.")),
    ("int of 100,000 digits", raw(b"\x80\x02I" + b"9" * 100_000 + b"\n.")),
    ("no STOP", raw(b"\x80\x04}")),
    ("unknown opcode", raw(b"\x80\x04\xff.")),
    ("protocol 99", raw(b"\x80\x63}.")),
    ("a million mapping layers", edit_snapshot(lambda m: _kwargs(m)["mapping_kwargs"].update(num_layers=10**6))),
    ("resolution 2**20", edit_snapshot(lambda m: _kwargs(m).update(img_resolution=2**20))),
    ("z_dim -1", edit_snapshot(lambda m: _kwargs(m).update(z_dim=-1))),
    ("c_dim 10**9", edit_snapshot(lambda m: _kwargs(m).update(c_dim=10**9))),
    ("channel_max 10**9", edit_snapshot(lambda m: _kwargs(m)["synthesis_kwargs"].update(channel_max=10**9))),
    ("mapping kwargs a list", edit_snapshot(lambda m: _kwargs(m).update(mapping_kwargs=[1, 2]))),
    ("constructor kwargs a list", edit_snapshot(lambda m: m["state"].update(_init_kwargs=[1, 2]))),
    ("class name a number", edit_snapshot(lambda m: m.update(class_name=3))),
    ("version a string", edit_snapshot(lambda m: m.update(version="6"))),
    ("modules a list", edit_snapshot(lambda m: m["state"].update(_modules=[1]))),
    (
        "parameter a string",
        edit_snapshot(lambda m: m["state"]["_modules"]["mapping"].meta["state"]["_buffers"].update(w_avg="x")),
    ),
    (
        "w_avg NaN",
        edit_snapshot(
            lambda m: (
                m["state"]["_modules"]["mapping"].meta["state"]["_buffers"].update(w_avg=torch.full((8,), float("nan")))
            )
        ),
    ),
]


def random_cases(seed: Seed, count: int) -> list[Case]:
    """Truncations (header and anywhere) and bit flips (header, body, or anywhere for pickles)."""
    if seed.loader == "generator" and not seed.digest_protected:  # the pickle: no header/body split
        kinds = [
            ("truncation", truncate("anywhere")),
            ("1 flip", flip("anywhere", 1)),
            ("4 flips", flip("anywhere", 4)),
        ]
    else:
        kinds = [
            ("header truncation", truncate("header")),
            ("truncation", truncate("anywhere")),
            ("header flip", flip("header", 1)),
            ("3 header flips", flip("header", 3)),
            ("body flip", flip("body", 1)),
        ]
    return [Case(f"{seed.name}: {kinds[i % len(kinds)][0]} #{i}", seed, kinds[i % len(kinds)][1]) for i in range(count)]


def crafted_cases(seeds: dict[str, Seed]) -> list[Case]:
    cases = [
        Case(f"{name}: {what}", seeds[name], make(name))
        for name in ("generator", "oracle", "stylegan")
        for what, make in SAFETENSORS_CRAFTED
    ]
    return cases + [Case(f"pickle: {what}", seeds["pickle"], make) for what, make in PICKLE_CRAFTED]


# ------------------------------------------------------------------------------------------------
# Running and judging.


def judge(case: Case, result: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """What is wrong with how ``case`` ended, or None."""
    if result["outcome"] == "named":
        return None
    if result["outcome"] == "loaded":
        if case.seed.digest_protected and result["weights"] == reference["weights"]:
            return None
        if not case.seed.digest_protected and result["architecture"] == reference["architecture"] and result["finite"]:
            return None
        return "loaded a network that is not the seed's"
    return f"{result['outcome']}: {result.get('type', '')} {result.get('message', '')} {result.get('traceback', '')}"


def run_cases(worker: Worker, folder: Path, seeds: dict[str, Seed], cases: list[Case], rng_seed: int) -> dict[str, Any]:
    references = {}
    for seed in seeds.values():
        path = folder / f"seed-{seed.name}"
        path.write_bytes(seed.data)
        references[seed.name] = worker.load(seed.loader, path)
        assert references[seed.name]["outcome"] == "loaded", (seed.name, references[seed.name])
    problems, outcomes, slowest, largest = [], collections.Counter[str](), 0.0, 0.0
    for index, case in enumerate(cases):
        rng = random.Random(f"{rng_seed}:{case.name}")
        path = folder / f"case-{index}"
        path.write_bytes(case.make(rng, case.seed.data))
        result = worker.load(case.seed.loader, path)
        path.unlink()
        slowest, largest = max(slowest, result["seconds"]), max(largest, result["peak_rss_mb"])
        outcomes[result["outcome"]] += 1
        problem = judge(case, result, references[case.seed.name])
        if problem is not None:
            problems.append(f"{case.name}: {problem}")
    return {
        "problems": problems,
        "cases": len(cases),
        "outcomes": dict(outcomes),
        "slowest_s": slowest,
        "peak_rss_mb": largest,
    }


def test_every_shipped_checkpoint_loads_in_the_worker(worker: Worker) -> None:
    assert len(SHIPPED) >= 6
    for path in SHIPPED:
        loader = "generator" if path.name == "generator.safetensors" else "classifier"
        result = worker.load(loader, path)
        assert result["outcome"] == "loaded" and result["finite"], (path.name, result)


def test_fuzz_fast_slice(worker: Worker, seeds: dict[str, Seed], tmp_path: Path) -> None:
    cases = crafted_cases(seeds) + [case for seed in seeds.values() for case in random_cases(seed, 6)]
    report = run_cases(worker, tmp_path, seeds, cases, rng_seed=0)
    print(
        f"fuzz fast slice: {report['cases']} cases {report['outcomes']}, slowest {report['slowest_s']} s, "
        f"peak RSS {report['peak_rss_mb']} MB"
    )
    assert not report["problems"], "\n".join(report["problems"][:20])


@pytest.mark.slow
@pytest.mark.parametrize("rng_seed", [1, 2])
def test_fuzz_long(worker: Worker, seeds: dict[str, Seed], tmp_path: Path, rng_seed: int) -> None:
    cases = [case for seed in seeds.values() for case in random_cases(seed, 150)]
    report = run_cases(worker, tmp_path, seeds, cases, rng_seed=rng_seed)
    print(
        f"fuzz long run {rng_seed}: {report['cases']} cases {report['outcomes']}, slowest {report['slowest_s']} s, "
        f"peak RSS {report['peak_rss_mb']} MB"
    )
    assert not report["problems"], "\n".join(report["problems"][:20])

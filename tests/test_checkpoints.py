"""atgan_plugin.checkpoints: safetensors checkpoints that rebuild their network, atomic writes,
and training state that can never run pickled code."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from atgan_plugin import checkpoints
from atgan_plugin.checkpoints import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    read_checkpoint_kind,
    save_checkpoint,
    save_training_state,
)


def example_checkpoint() -> Checkpoint:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "weight": torch.randn(16, 8, generator=g),
        "bias": torch.randn(16, generator=g).double(),
        "steps": torch.arange(5),
        "mask": torch.tensor([True, False, True]),
    }
    return Checkpoint("test.kind", tensors, {"width": 16, "name": "x"}, {"seed": 3, "metrics": {"acc": 0.5}})


def example_state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    return {
        "model": {"w": torch.randn(3, 3, generator=g)},
        "optimizer": {
            "state": {0: {"exp_avg": torch.randn(3, generator=g)}},
            "param_groups": [{"lr": 1e-3, "params": [0]}],
        },
        "rng": torch.Generator().manual_seed(7).get_state(),
        "step": 42,
        "name": "run",
    }


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------
# Round trips.


@pytest.mark.parametrize("half", [False, True], ids=["float32", "half"])
def test_checkpoint_round_trip(tmp_path: Path, half: bool) -> None:
    original = example_checkpoint()
    path = tmp_path / "net.safetensors"
    save_checkpoint(path, original, half=half)
    loaded = load_checkpoint(path, expected_kind="test.kind")

    assert loaded.kind == original.kind
    assert loaded.config == original.config
    assert loaded.training == original.training
    assert set(loaded.tensors) == set(original.tensors)
    for name, tensor in original.tensors.items():
        got = loaded.tensors[name]
        if tensor.is_floating_point():
            assert got.dtype == torch.float32  # floating tensors always come back float32
            expected = tensor.half().float() if half else tensor.float()
            assert torch.equal(got, expected)
        else:
            assert got.dtype == tensor.dtype and torch.equal(got, tensor)


def test_half_stores_float16_on_disk(tmp_path: Path) -> None:
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_checkpoint(full, example_checkpoint())
    save_checkpoint(half, example_checkpoint(), half=True)
    with safe_open(str(half), framework="pt") as f:
        dtypes = {name: f.get_tensor(name).dtype for name in f.keys()}
    assert dtypes["weight"] == dtypes["bias"] == torch.float16
    assert dtypes["steps"] == torch.int64 and dtypes["mask"] == torch.bool
    assert half.stat().st_size < full.stat().st_size


def test_read_checkpoint_kind(tmp_path: Path) -> None:
    ours = tmp_path / "ours.safetensors"
    save_checkpoint(ours, example_checkpoint())
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 64)
    assert read_checkpoint_kind(ours) == "test.kind"
    assert read_checkpoint_kind(foreign) is None
    assert read_checkpoint_kind(garbage) is None
    assert read_checkpoint_kind(tmp_path / "missing.safetensors") is None


def test_training_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    state = example_state()
    save_training_state(path, state)
    loaded = load_training_state(path)
    assert loaded["step"] == 42 and loaded["name"] == "run"
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    # The RNG state restores the same random stream.
    restored = torch.Generator()
    restored.set_state(loaded["rng"])
    assert torch.equal(torch.rand(5, generator=restored), torch.rand(5, generator=torch.Generator().manual_seed(7)))


# ------------------------------------------------------------------------------------------------
# Atomic writes: a crash midway leaves the old file and no temporary file.


def _crash_after_partial_write(path_arg: int) -> Callable[..., None]:
    def crash(*args: Any, **kwargs: Any) -> None:
        with open(args[path_arg], "wb") as f:  # not Path.open, which may be the patched writer
            f.write(b"half a file")
        raise OSError("simulated crash while writing")

    return crash


def _crash(*args: Any, **kwargs: Any) -> None:
    raise OSError("simulated crash while writing")


WRITERS: dict[str, tuple[Callable[[Path, int], None], Callable[[Path], int]]] = {
    "checkpoint": (
        lambda path, version: save_checkpoint(path, Checkpoint("k", {"w": torch.full((4,), float(version))})),
        lambda path: int(load_checkpoint(path).tensors["w"][0]),
    ),
    "training_state": (
        lambda path, version: save_training_state(path, {"step": version}),
        lambda path: int(load_training_state(path)["step"]),
    ),
}

# (writer, what fails, object to patch, attribute, replacement)
CRASHES = [
    ("checkpoint", "write", Path, "open", _crash_after_partial_write(0)),
    ("checkpoint", "fsync", os, "fsync", _crash),
    ("checkpoint", "rename", os, "replace", _crash),
    ("training_state", "serialiser", torch, "save", _crash_after_partial_write(1)),
    ("training_state", "fsync", os, "fsync", _crash),
    ("training_state", "rename", os, "replace", _crash),
]


@pytest.mark.parametrize(
    "writer, fails, target, attribute, replacement", CRASHES, ids=[f"{w}-{f}" for w, f, *_ in CRASHES]
)
def test_crash_midway_keeps_old_file_and_leaves_no_temp_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
    fails: str,
    target: Any,
    attribute: str,
    replacement: Any,
) -> None:
    write, read = WRITERS[writer]
    path = tmp_path / "file"
    write(path, 1)
    monkeypatch.setattr(target, attribute, replacement)
    with pytest.raises(OSError, match="simulated crash"):
        write(path, 2)
    monkeypatch.undo()
    assert read(path) == 1
    assert files_in(tmp_path) == ["file"]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_successful_overwrite_leaves_only_the_new_file(tmp_path: Path, writer: str) -> None:
    write, read = WRITERS[writer]
    path = tmp_path / "sub" / "file"  # the folder is created
    write(path, 1)
    write(path, 2)
    assert read(path) == 2
    assert files_in(path.parent) == ["file"]


def test_safetensors_files_never_pass_through_safetensors_own_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """safetensors 0.8's ``save_file`` writes via a ``.tmpXXXXXX`` file that a killed process leaves and that
    remove_stale_temporaries cannot recognise; our writers serialise in memory and use atomic_write only."""
    import safetensors.torch

    # save_file looks serialize_file up at call time, so this catches it however it was imported.
    monkeypatch.setattr(safetensors.torch, "serialize_file", _crash)
    path = tmp_path / "w.safetensors"
    sha256 = checkpoints.write_safetensors(path, {"w": torch.arange(3.0)}, {"note": "x"})
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"note": "x"} and torch.equal(f.get_tensor("w"), torch.arange(3.0))
    save_checkpoint(tmp_path / "c.safetensors", Checkpoint("k", {"w": torch.ones(2)}))
    assert files_in(tmp_path) == ["c.safetensors", "w.safetensors"]


WRITE_IN_A_FRESH_PROCESS = """
import sys, torch
from atgan_plugin.checkpoints import write_safetensors
metadata = {key: str(i) for i, key in enumerate(["kind", "shard", "seed", "count", "first", "target", "bounds", "ü"])}
tensors = {"images": torch.linspace(0, 1, 12).reshape(2, 6), "source_labels": torch.arange(2)}
print(write_safetensors(sys.argv[1], tensors, metadata))
"""


def test_identical_writes_give_identical_bytes_in_every_process(tmp_path: Path) -> None:
    """safetensors orders the metadata by a per-process hash; write_safetensors sorts the header, so a file's
    SHA-256 depends on its content only (a shard's recorded digest can be reproduced)."""
    import subprocess
    import sys

    digests = set()
    for i in range(4):
        path = tmp_path / f"{i}.safetensors"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": str(i)}
        out = subprocess.run(
            [sys.executable, "-c", WRITE_IN_A_FRESH_PROCESS, str(path)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        assert out == hashlib.sha256(path.read_bytes()).hexdigest()
        digests.add(out)
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata()["ü"] == "7" and torch.equal(f.get_tensor("source_labels"), torch.arange(2))
        length = int.from_bytes(path.read_bytes()[:8], "little")
        assert length % 8 == 0  # the data stays 8-byte aligned
    assert len(digests) == 1


# ------------------------------------------------------------------------------------------------
# Unreadable, foreign and mismatched checkpoints.


TRUNCATIONS = [  # bytes kept (negative: all but that many), what the message says
    (0, r"\(truncated or foreign file\)"),  # too short to tell
    (7, r"\(truncated or foreign file\)"),
    (8, r"\(truncated or foreign file\)"),
    (100, r"\(truncated: its header declares \d+ bytes, only 92 follow\)"),
    (0.5, r"\(truncated: its tensors need \d+ bytes of data, only \d+ follow\)"),
    (-1, r"\(truncated: its tensors need \d+ bytes of data, only \d+ follow\)"),
]


@pytest.mark.parametrize("keep, detail", TRUNCATIONS, ids=[f"keep={k}" for k, _ in TRUNCATIONS])
def test_truncated_checkpoint(tmp_path: Path, keep: float, detail: str) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(path, example_checkpoint())
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"not a readable safetensors checkpoint " + detail):
        load_checkpoint(path)


def _foreign_header(meta: dict[str, str] | None) -> Callable[[Path], None]:
    return lambda path: save_file({"w": torch.zeros(3)}, str(path), metadata=meta)


FOREIGN = [
    ("no metadata", _foreign_header(None), r"a safetensors file but not an atgan-plugin checkpoint"),
    ("other metadata", _foreign_header({"format": "pt"}), r"a safetensors file but not an atgan-plugin checkpoint"),
    ("corrupt json", _foreign_header({"atgan_plugin": "{not json"}), r"corrupt metadata"),
    (
        "future format",
        _foreign_header({"atgan_plugin": json.dumps({"format": "2", "kind": "k"})}),
        r"unsupported checkpoint format '2'",
    ),
    ("pickle", lambda path: torch.save({"w": torch.zeros(3)}, path), r"not a readable safetensors checkpoint"),
    ("text", lambda path: path.write_text("hello"), r"not a readable safetensors checkpoint"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in FOREIGN], ids=[c[0] for c in FOREIGN])
def test_foreign_files_are_refused(tmp_path: Path, make: Callable[[Path], None], match: str) -> None:
    path = tmp_path / "file.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_kind_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(path, example_checkpoint())
    with pytest.raises(CheckpointError, match=r"holds a 'test\.kind' checkpoint, expected 'classifier'"):
        load_checkpoint(path, expected_kind="classifier")


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


# ------------------------------------------------------------------------------------------------
# Training state: pickled code must never run.


class _Payload:
    """Pickles as ``function(*args)``: what a malicious file would run on an unsafe load."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]):
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.function, self.args


PAYLOADS: dict[str, Callable[[Path], _Payload]] = {
    "open": lambda marker: _Payload(open, (str(marker), "w")),
    "exec": lambda marker: _Payload(exec, (f"open({str(marker)!r}, 'w').close()",)),
    "os.system": lambda marker: _Payload(os.system, (f"touch {shlex.quote(str(marker))}",)),
}


def write_malicious_state(path: Path, marker: Path, payload: str) -> None:
    torch.save({"step": 1, "G": {"w": torch.zeros(2)}, "evil": PAYLOADS[payload](marker)}, path)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_payload_really_runs_on_an_unsafe_load(tmp_path: Path, payload: str) -> None:
    # The control for the next test: loaded unsafely, the file does create the marker.
    path, marker = tmp_path / "state.pt", tmp_path / "marker"
    write_malicious_state(path, marker, payload)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_malicious_training_state_is_refused_without_running(tmp_path: Path, payload: str) -> None:
    path, marker = tmp_path / "state.pt", tmp_path / "marker"
    write_malicious_state(path, marker, payload)
    with pytest.raises(CheckpointError, match=r"not a readable training-state file"):
        load_training_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_malicious_pickle_as_checkpoint_is_refused_without_running(tmp_path: Path, payload: str) -> None:
    path, marker = tmp_path / "generator.safetensors", tmp_path / "marker"
    write_malicious_state(path, marker, payload)
    with pytest.raises(CheckpointError, match=r"not a readable safetensors checkpoint"):
        load_checkpoint(path)
    assert read_checkpoint_kind(path) is None
    assert not marker.exists()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda path: torch.save([torch.zeros(2)], path), r"does not hold a training-state dictionary"),
        (lambda path: save_checkpoint(path, example_checkpoint()), r"not a readable training-state file"),
        (lambda path: path.write_bytes(b"\x80\x02garbage"), r"not a readable training-state file"),
        (lambda path: None, r"not a readable training-state file"),
    ],
    ids=["list", "safetensors", "garbage", "missing"],
)
def test_bad_training_state_files(tmp_path: Path, make: Callable[[Path], None], match: str) -> None:
    path = tmp_path / "state.pt"
    make(path)
    with pytest.raises(CheckpointError, match=match):
        load_training_state(path)

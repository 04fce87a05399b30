"""Every shipped checkpoint carries the digest of its tensors, and any changed byte of its body is refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from atgan_plugin.checkpoints import CheckpointError, add_tensor_digest, load_checkpoint, read_header
from atgan_plugin.pretrained import pretrained_path

SHIPPED = sorted(pretrained_path("generator").parent.rglob("*.safetensors"))


def data_start(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_checkpoint_carries_its_digest(path: Path) -> None:
    assert read_header(path).digest is not None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_changed_byte_in_the_body_is_refused(path: Path, tmp_path: Path) -> None:
    start, size = data_start(path), path.stat().st_size
    for where in (start, (start + size) // 2, size - 1):  # the first, a middle and the last byte of the tensors
        copy = tmp_path / f"{where}-{path.name}"
        data = bytearray(path.read_bytes())
        data[where] ^= 0x01
        copy.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="do not match the digest recorded with them|not finite|NaN"):
            load_checkpoint(copy)


def test_a_shipped_checkpoint_without_its_digest_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atgan_plugin import checkpoints
    from atgan_plugin.safetensors_files import write_safetensors

    source = pretrained_path("model_a")
    with safe_open(str(source), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    stripped = metadata["atgan_plugin"].replace('"tensors_sha256"', '"dropped"')
    shipped = tmp_path / "pretrained" / "model_a.safetensors"
    shipped.parent.mkdir()
    write_safetensors(shipped, tensors, {"atgan_plugin": stripped})
    monkeypatch.setattr(checkpoints, "SHIPPED_ROOT", (tmp_path / "pretrained").resolve())
    with pytest.raises(CheckpointError, match="is a shipped checkpoint without the digest of its tensors"):
        load_checkpoint(shipped)


def test_adding_a_digest_keeps_the_tensors_and_needs_sums(tmp_path: Path) -> None:
    import hashlib

    from atgan_plugin.safetensors_files import write_safetensors

    source = pretrained_path("model_a")
    with safe_open(str(source), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    old = tmp_path / "old.safetensors"
    write_safetensors(old, tensors, {"atgan_plugin": metadata["atgan_plugin"].replace('"tensors_sha256"', '"dropped"')})
    with pytest.raises(CheckpointError, match="is not listed in a SHA256SUMS beside it"):
        add_tensor_digest(old)
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(old.read_bytes()).hexdigest()}  old.safetensors\n")
    assert add_tensor_digest(old) and not add_tensor_digest(old)
    assert read_header(old).digest == read_header(source).digest
    with safe_open(str(old), framework="pt") as f:
        assert all(f.get_tensor(k).dtype == tensors[k].dtype for k in tensors)
    shutil.copy(old, tmp_path / "again.safetensors")
    assert load_checkpoint(tmp_path / "again.safetensors").kind == "classifier"

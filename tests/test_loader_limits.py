"""Loaders validate before they allocate: every hostile or damaged file gets a CheckpointError that
names the problem, before any network is built from it. One table of cases, one test; then the
tensor digest (mismatch refused, older files warned about, SHA256SUMS honoured)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from atgan_plugin import checkpoints
from atgan_plugin.adapters import ACWGANGPGenerator, StyleGAN2ADAGenerator, load_generator
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.atomic_files import is_our_temporary, temporary_name
from atgan_plugin.checkpoints import (
    Checkpoint,
    CheckpointError,
    UnverifiedCheckpointWarning,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from atgan_plugin.models import build_classifier, load_classifier, save_classifier
from atgan_plugin.vendored.stylegan2_ada import Generator as StyleGAN
from atgan_plugin.vendored.stylegan2_ada.snapshot import load_generator_pickle
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import dump_snapshot, snapshot_dict

Make = Callable[[Path], Path]


def classifier_file(folder: Path) -> Path:
    save_classifier(
        folder / "d.safetensors", build_classifier("D"), {"architecture": "D", "num_classes": 10, "in_channels": 1}, {}
    )
    return folder / "d.safetensors"


def generator_file(folder: Path) -> Path:
    torch.manual_seed(0)
    ACWGANGPGenerator(Generator(z_dim=4)).save(folder / "g.safetensors")
    return folder / "g.safetensors"


def tiny_stylegan() -> StyleGAN:
    torch.manual_seed(0)
    return StyleGAN(
        z_dim=4,
        c_dim=2,
        w_dim=4,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs={"num_layers": 1},
        synthesis_kwargs={"channel_base": 32, "channel_max": 4},
    )


def with_meta(make: Make, edit: Callable[[dict[str, Any]], Any], *, replace: bool = False) -> Make:
    """``make``'s file with its metadata JSON edited in place.

    With ``replace``, the metadata is replaced by what ``edit`` returns.
    """

    def rewrite(folder: Path) -> Path:
        path = make(folder)
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
            meta = json.loads(f.metadata()["atgan_plugin"])
        replaced = edit(meta)
        save_file(tensors, str(path), metadata={"atgan_plugin": json.dumps(replaced if replace else meta)})
        return path

    return rewrite


def with_header(make: Make, edit: Callable[[dict[str, Any]], None]) -> Make:
    """``make``'s file with its raw safetensors header edited (tensor data unchanged)."""

    def rewrite(folder: Path) -> Path:
        path = make(folder)
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        edit(header)
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])
        return path

    return rewrite


def config(make: Make, **values: Any) -> Make:
    return with_meta(make, lambda meta: meta["config"].update(values))


def raw_file(data: bytes, name: str = "x.pkl") -> Make:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def snapshot_with(edit: Callable[[dict[str, Any]], None]) -> Make:
    def write(folder: Path) -> Path:
        data = snapshot_dict(tiny_stylegan())
        edit(data["G_ema"].meta["state"]["_init_kwargs"])
        dump_snapshot(folder / "s.pkl", data)
        return folder / "s.pkl"

    return write


def truncated(make: Make, keep: float) -> Make:
    """``make``'s file cut to a fraction ``keep`` of it, or to ``keep`` bytes when an int."""

    def cut(folder: Path) -> Path:
        path = make(folder)
        data = path.read_bytes()
        path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
        return path

    return cut


def nan_weight(folder: Path) -> Path:
    model = build_classifier("D")
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    save_classifier(
        folder / "nan.safetensors", model, {"architecture": "D"}, {}
    )  # digest over the NaN: only finiteness catches it
    return folder / "nan.safetensors"


def flipped_body(folder: Path) -> Path:
    path = classifier_file(folder)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # a bit of the last weight: still a finite float16/32
    path.write_bytes(bytes(data))
    return path


def directory(folder: Path) -> Path:
    (folder / "ckpt").mkdir()
    return folder / "ckpt"


def largest_tensor(header: dict[str, Any]) -> dict[str, Any]:
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return entries[max(entries, key=lambda k: entries[k]["data_offsets"][1] - entries[k]["data_offsets"][0])]  # type: ignore[no-any-return]


C, G = classifier_file, generator_file
AS_CLASSIFIER, AS_GENERATOR, AS_PICKLE = load_classifier, load_generator, load_generator_pickle

# A table, one case per line: formatted, each case would spread over six or more lines.
# fmt: off
CASES: list[tuple[str, Make, Callable[[Path], Any], str]] = [
    # Architecture fields bounded before anything is built.
    ("classifier in_channels 10**6", config(C, in_channels=10**6), AS_CLASSIFIER, r"config\.in_channels is 1000000, expected an integer in \[1, 16\]"),
    ("generator z_dim 10**6", config(G, z_dim=10**6), AS_GENERATOR, r"config\.z_dim is 1000000, expected an integer in \[1, 4096\]"),
    ("negative size", config(C, num_classes=-3), AS_CLASSIFIER, r"config\.num_classes is -3, expected an integer"),
    ("size true", config(G, num_classes=True), AS_GENERATOR, r"config\.num_classes is True, expected an integer"),
    ("size a float", config(G, z_dim=4.0), AS_GENERATOR, r"config\.z_dim is 4\.0, expected an integer"),
    ("size NaN", config(G, z_dim=float("nan")), AS_GENERATOR, r"config\.z_dim is nan, expected an integer"),
    ("unknown config key", config(C, width=3), AS_CLASSIFIER, r"config has unknown keys \['width'\]"),
    ("unknown architecture", config(C, architecture="E"), AS_CLASSIFIER, r"config\.architecture is 'E', expected one of \['A', 'B', 'C', 'D', 'oracle', 'guard'\]"),
    ("stylegan mapping layers 10**6", with_meta(lambda f: _stylegan_file(f), lambda m: m["config"]["network"]["mapping_kwargs"].update(num_layers=10**6)),
     AS_GENERATOR, r"config\.network\.mapping_kwargs\.num_layers is 1000000, expected an integer in \[1, 32\]"),
    # Metadata of the wrong JSON type.
    ("metadata a list", with_meta(C, lambda meta: [meta], replace=True), AS_CLASSIFIER, r"corrupt metadata: expected a JSON object, found list"),
    ("config a list", with_meta(C, lambda meta: meta.update(config=[1, 2])), AS_CLASSIFIER, r"corrupt metadata: config is a list, expected a dict"),
    ("kind a number", with_meta(C, lambda meta: meta.update(kind=3)), AS_CLASSIFIER, r"corrupt metadata: kind is a int, expected a str"),
    ("metadata nested 100,000 deep", with_header(C, lambda h: h["__metadata__"].update(atgan_plugin="[" * 100_000 + "]" * 100_000)),
     AS_CLASSIFIER, r"corrupt metadata: maximum recursion depth"),
    # Declared tensors checked against the architecture built on the meta device.
    ("tensor shape lies", with_header(C, lambda h: largest_tensor(h).update(shape=[2, 2])), AS_CLASSIFIER, r"not a readable safetensors checkpoint"),
    ("tensor dtype I32 for a weight", with_header(C, lambda h: largest_tensor(h).update(dtype="I32")), AS_CLASSIFIER,
     r"does not match its recorded architecture: tensor '1\.weight' is stored as I32, the architecture needs F32"),
    ("tensor dtype unknown", with_header(C, lambda h: largest_tensor(h).update(dtype="X7")), AS_CLASSIFIER, r"not a readable safetensors checkpoint"),
    ("tensor missing", with_header(C, lambda h: h.pop("1.bias")), AS_CLASSIFIER, r"not a readable safetensors checkpoint|missing \['1\.bias'\]"),
    ("shape of another architecture", config(G, z_dim=5), AS_GENERATOR,
     r"does not match its recorded architecture: tensor 'fc\.0\.weight' has shape \(1024, 14\) in the file, the architecture needs \(1024, 15\)"),
    # Corrupt weights.
    ("a NaN weight", nan_weight, AS_CLASSIFIER, r"tensor '1\.weight' holds 1 NaN or infinite values \(corrupt weights\)"),
    ("a flipped bit in the weights", flipped_body, AS_CLASSIFIER, r"the tensors do not match the digest recorded with them: the file is corrupt"),
    ("digest not hex", with_meta(C, lambda meta: meta.update(tensors_sha256="xyz")), AS_CLASSIFIER, r"tensors_sha256 is not a SHA-256 hex digest"),
    # Paths.
    ("a directory as generator", directory, AS_GENERATOR, r"generator checkpoint .*ckpt is a directory, not a file"),
    ("a directory as classifier", directory, AS_CLASSIFIER, r"checkpoint .*ckpt is a directory, not a file"),
    ("a directory as pickle", directory, AS_PICKLE, r"pickle .*ckpt is a directory, not a file"),
    ("a truncated generator", truncated(G, 0.5), AS_GENERATOR, r"is a truncated safetensors file \(its tensors need \d+ bytes of data, only \d+ follow\)"),
    ("a generator cut in its header", truncated(G, 100), AS_GENERATOR, r"is a truncated safetensors file \(its header declares \d+ bytes, only \d+ follow\)"),
    # NVIDIA pickles: bounded while reading.
    ("pickle of 15 bytes claiming 2**60", raw_file(b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"ab."), AS_PICKLE,
     r"the pickle is truncated: expected 1152921504606846976 bytes in a bytes8, but only 3 remain"),
    ("pickle tuple key 200,000 deep", raw_file(b"\x80\x04}" + b")" + b"\x85" * 200_000 + b"K\x01s."), AS_PICKLE, r"nests objects more than 100 deep"),
    ("pickle tuple key 2,000 deep", raw_file(b"\x80\x04}" + b")" + b"\x85" * 2_000 + b"K\x01s."), AS_PICKLE, r"nests objects more than 100 deep"),  # was a RecursionError
    ("pickle malformed numpy dtype", raw_file(b"\x80\x02cnumpy\ndtype\nX\x03\x00\x00\x00f4x\x85R."), AS_PICKLE,
     r"corrupt or not a StyleGAN2-ADA pickle: TypeError: data type 'f4x' not understood"),
    ("pickle tuple hashing 2**60 nodes", raw_file(b"\x80\x04)\x94" + b"".join(b"h%c" % i + b"h%c" % i + b"\x86\x94" for i in range(60)) + b"}."),
     AS_PICKLE, r"builds a tuple of more than 10000 nested items"),
    ("pickle memo index 2**32-1", raw_file(b"\x80\x04}r\xff\xff\xff\xff."), AS_PICKLE, r"stores memo entry 4294967295 with only 0 in use"),
    ("pickle a million mapping layers", snapshot_with(lambda kw: kw["mapping_kwargs"].update(num_layers=10**6)), AS_PICKLE,
     r"its constructor arguments\.mapping_kwargs\.num_layers is 1000000, expected an integer in \[1, 32\]"),
    ("pickle unknown constructor argument", snapshot_with(lambda kw: kw.update(magnitude_ema_beta=0.5)), AS_PICKLE,
     r"its constructor arguments has unknown keys \['magnitude_ema_beta'\]"),
]
# fmt: on


def _stylegan_file(folder: Path) -> Path:
    StyleGAN2ADAGenerator(tiny_stylegan(), class_center_samples=2).save(folder / "s.safetensors")
    return folder / "s.safetensors"


@pytest.mark.parametrize("make, load, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_by_name(tmp_path: Path, make: Make, load: Callable[[Path], Any], match: str) -> None:
    path = make(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedCheckpointWarning)
        with pytest.raises(CheckpointError, match=match):
            load(path)


def test_refused_architectures_are_never_built_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file claiming z_dim = 10**6 costs nothing: nothing is allocated outside the meta device."""
    allocations: list[int] = []
    original = nn.Linear.__init__

    def spy(self: nn.Linear, in_features: int, out_features: int, *args: Any, **kwargs: Any) -> None:
        if torch.empty(0).device.type != "meta":
            allocations.append(in_features * out_features)
        original(self, in_features, out_features, *args, **kwargs)

    path = config(G, z_dim=5)(tmp_path)  # passes the bounds, fails the shape comparison
    monkeypatch.setattr(nn.Linear, "__init__", spy)
    with pytest.raises(CheckpointError, match=r"does not match its recorded architecture"):
        load_generator(path)
    assert allocations == []


# ------------------------------------------------------------------------------------------------
# The tensor digest.


def test_checkpoints_record_a_digest_of_their_tensors(tmp_path: Path) -> None:
    path = classifier_file(tmp_path)
    header = checkpoints.read_header(path)
    assert header.digest is not None and len(header.digest) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file with a digest loads without a warning
        load_classifier(path)


def _without_digest(folder: Path) -> Path:
    return with_meta(classifier_file, lambda meta: meta.pop("tensors_sha256"))(folder)


def test_a_file_without_a_digest_loads_with_a_warning(tmp_path: Path) -> None:
    path = _without_digest(tmp_path)
    with pytest.warns(UnverifiedCheckpointWarning, match=r"records no digest of its tensors"):
        model = load_classifier(path)
    assert isinstance(model, nn.Module)


def test_a_sha256sums_beside_a_file_without_a_digest_vouches_for_it(tmp_path: Path) -> None:
    import hashlib

    path = _without_digest(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_classifier(path)
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {path.name}\n")
    with pytest.raises(
        CheckpointError, match=r"does not match its SHA256SUMS entry: the file is corrupt or was replaced"
    ):
        load_classifier(path)


def test_the_digest_covers_names_dtypes_shapes_and_bytes() -> None:
    base = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    variants = [{"v": base["w"]}, {"w": base["w"].double()}, {"w": base["w"].reshape(3, 2)}, {"w": base["w"] + 1}]
    digests = {checkpoints.tensor_digest(t) for t in [base, *variants]}
    assert len(digests) == 5


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.safetensors", Checkpoint("k", {"w": torch.zeros(2)}))
    stale = [tmp_path / temporary_name("a.safetensors"), tmp_path / temporary_name("state.pt")]
    forged = ".atgan-tmp.0123456789abcdef.00000000.a.safetensors"  # our prefix, a tag that does not match
    kept = [
        tmp_path / name
        for name in (
            "notes.tmp",
            ".hidden",
            ".draft.20240101.tmp",  # a user's hidden files that end in .tmp: never ours
            ".thesis.tex.backup_1.tmp",
            ".a.safetensors.ab12cd_9.tmp",  # the shape of mkstemp's names: not a name we write
            forged,
        )
    ]
    for path in stale + kept:
        path.write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_bytes(b"someone else's")
    link = tmp_path / temporary_name("linked")  # our name, but a link: not a file we wrote
    link.symlink_to(outside)
    assert all(is_our_temporary(p.name) for p in stale) and not is_our_temporary(forged)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([p.name for p in kept] + ["a.safetensors", link.name])
    assert outside.read_bytes() == b"someone else's"
    assert load_checkpoint(tmp_path / "a.safetensors").tensors["w"].shape == (2,)

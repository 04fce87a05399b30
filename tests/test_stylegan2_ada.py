"""StyleGAN2-ADA: our network (names, shapes, behaviour) and the safe reader of NVIDIA-layout pickles.

The pickles are written by our own writer (``snapshot_writer``, spec §1.6): same globals,
records and tensor encoding as NVIDIA's files, no NVIDIA code. The adapter and the AT-GAN fit
are in ``test_stylegan2_adapter.py``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.snapshot import (
    ForbiddenGlobalError,
    load_generator_pickle,
    looks_like_pickle,
    read_snapshot,
)
from atgan_plugin.vendored.stylegan2_ada.snapshot_writer import dump_snapshot, snapshot_dict, write_snapshot

CIFAR_KWARGS: dict[str, Any] = dict(
    z_dim=512,
    c_dim=10,
    w_dim=512,
    img_resolution=32,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
)


def tiny_network(architecture: str = "skip", c_dim: int = 4, seed: int = 0, resolution: int = 16) -> Generator:
    """A small generator with non-trivial noise strengths and w_avg (zero at init in the original)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = Generator(
            z_dim=8,
            c_dim=c_dim,
            w_dim=16,
            img_resolution=resolution,
            img_channels=3,
            mapping_kwargs={"num_layers": 2},
            synthesis_kwargs={
                "channel_base": 128,
                "channel_max": 16,
                "num_fp16_res": 2,
                "conv_clamp": 256,
                "architecture": architecture,
            },
        )
        with torch.no_grad():
            for name, p in network.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.5)
            network.mapping.w_avg.normal_()
    return network.eval()


def images(network: Generator, seed: int = 1, n: int = 4, **kwargs: Any) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, network.z_dim, generator=rng)
    c = F.one_hot(torch.arange(n) % max(network.c_dim, 1), network.c_dim).float() if network.c_dim else None
    with torch.no_grad():
        return network(z, c, **kwargs)


@pytest.fixture
def snapshot(tmp_path: Path) -> tuple[Path, Generator]:
    network = tiny_network()
    path = tmp_path / "network-snapshot-000000.pkl"
    write_snapshot(path, network)
    return path, network


# ------------------------------------------------------------------------------------------------
# The network itself.


def test_cifar_configuration_has_nvidias_names_and_shapes() -> None:
    # spec §4: 77 tensors, 20,215,315 parameter elements and 3,392 buffer elements, in this order.
    network = Generator(**CIFAR_KWARGS)
    state = network.state_dict()
    names = list(state)
    assert len(names) == 77
    assert sum(p.numel() for p in network.parameters()) == 20_215_315
    assert sum(b.numel() for b in network.buffers()) == 3_392
    expected_head = [
        "synthesis.b4.const",
        "synthesis.b4.resample_filter",
        "synthesis.b4.conv1.weight",
        "synthesis.b4.conv1.noise_strength",
        "synthesis.b4.conv1.bias",
        "synthesis.b4.conv1.resample_filter",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b4.conv1.affine.weight",
        "synthesis.b4.conv1.affine.bias",
        "synthesis.b4.torgb.weight",
        "synthesis.b4.torgb.bias",
        "synthesis.b4.torgb.affine.weight",
        "synthesis.b4.torgb.affine.bias",
        "synthesis.b8.resample_filter",
        "synthesis.b8.conv0.weight",
    ]
    assert names[:15] == expected_head
    assert names[-7:] == [
        "mapping.w_avg",
        "mapping.embed.weight",
        "mapping.embed.bias",
        "mapping.fc0.weight",
        "mapping.fc0.bias",
        "mapping.fc1.weight",
        "mapping.fc1.bias",
    ]
    shapes = {
        "synthesis.b4.const": (512, 4, 4),
        "synthesis.b32.conv0.noise_const": (32, 32),
        "synthesis.b8.torgb.weight": (3, 512, 1, 1),
        "synthesis.b4.conv1.noise_strength": (),
        "mapping.embed.weight": (512, 10),
        "mapping.fc0.weight": (512, 1024),
    }
    for name, shape in shapes.items():
        assert tuple(state[name].shape) == shape, name
    assert network.num_ws == 8
    assert [(b.resolution, b.use_fp16) for b in network.synthesis.blocks()] == [
        (4, False),
        (8, True),
        (16, True),
        (32, True),
    ]
    assert network.mapping.fc0.weight_gain == pytest.approx(0.01 / 32)
    assert network.synthesis.b4.conv1.affine.weight_gain == pytest.approx(1 / 512**0.5)


@pytest.mark.parametrize("resolution, num_ws", [(4, 2), (32, 8), (256, 14), (1024, 18)])
def test_num_ws_is_2_log2_res_minus_2(resolution: int, num_ws: int) -> None:
    network = Generator(
        z_dim=4,
        c_dim=0,
        w_dim=4,
        img_resolution=resolution,
        img_channels=3,
        synthesis_kwargs={"channel_base": 2048, "channel_max": 2},
    )
    assert network.num_ws == network.mapping.num_ws == num_ws


def test_resnet_has_a_bias_free_skip() -> None:
    state = tiny_network("resnet").state_dict()
    assert tuple(state["synthesis.b8.skip.weight"].shape) == (16, 16, 1, 1)
    assert "synthesis.b8.skip.bias" not in state and "synthesis.b4.skip.weight" not in state
    assert "synthesis.b8.torgb.weight" not in state and "synthesis.b16.torgb.weight" in state


def test_const_noise_is_deterministic_and_random_noise_is_not() -> None:
    network = tiny_network()
    assert torch.equal(images(network), images(network))
    assert torch.equal(images(network, noise_mode="none"), images(network, noise_mode="none"))
    assert not torch.equal(images(network, noise_mode="random"), images(network, noise_mode="random"))
    assert not torch.equal(images(network), images(network, noise_mode="none"))  # the noise strength is 0.5


def test_truncation_psi_zero_gives_the_w_avg_image() -> None:
    network = tiny_network()
    a, b = images(network, seed=1, truncation_psi=0), images(network, seed=2, truncation_psi=0)
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        centre = network.synthesis(network.mapping.w_avg.expand(4, network.num_ws, -1))
    torch.testing.assert_close(a, centre)
    # A cutoff truncates only the first ws: the images then depend on z again.
    assert not torch.allclose(
        images(network, seed=1, truncation_psi=0, truncation_cutoff=2),
        images(network, seed=2, truncation_psi=0, truncation_cutoff=2),
    )


def test_shape_errors_name_both_sizes() -> None:
    network = tiny_network()
    with pytest.raises(ValueError, match=r"z must have shape \(N, 8\), got \(2, 5\)"):
        network(torch.randn(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"c must have shape \(2, 4\), got \(2, 3\)"):
        network(torch.randn(2, 8), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"ws must have shape \(N, 6, 16\), got \(2, 5, 16\)"):
        network.synthesis(torch.randn(2, 5, 16))


def test_outer_autocast_does_not_reach_the_float32_path() -> None:
    # precision="fp32" disables autocast inside every block and the mapping.
    network = tiny_network()
    expected = images(network, precision="fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = images(network, precision="fp32")
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_blocks_stay_close_and_differentiable(precision: str) -> None:
    network = tiny_network()
    reference = images(network, precision="fp32")
    low = images(network, precision=precision)
    assert low.dtype == torch.float32
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()
    z, c = torch.randn(2, 8), torch.eye(4)[:2]
    network.requires_grad_(True)
    network(z, c, precision=precision).square().mean().backward()
    grads = [p.grad for p in network.synthesis.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------------------------
# Reading NVIDIA-layout pickles.


@pytest.mark.parametrize("protocol", [3, 4])
@pytest.mark.parametrize("architecture, c_dim", [("skip", 4), ("orig", 4), ("resnet", 0)])
def test_round_trip_gives_the_same_network(tmp_path: Path, protocol: int, architecture: str, c_dim: int) -> None:
    network = tiny_network(architecture, c_dim=c_dim)
    path = tmp_path / "net.pkl"
    write_snapshot(path, network, protocol=protocol)
    loaded = load_generator_pickle(path)
    assert loaded.init_kwargs == network.init_kwargs
    assert list(loaded.state_dict()) == list(network.state_dict())
    for name, tensor in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for kwargs in (
        {},
        {"noise_mode": "none"},
        {"truncation_psi": 0.7},
        {"truncation_psi": 0.5, "truncation_cutoff": 2},
    ):
        assert torch.equal(images(loaded, **kwargs), images(network, **kwargs)), kwargs


def test_the_cifar_configuration_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = Generator(**CIFAR_KWARGS).eval()
    path = tmp_path / "cifar10.pkl"
    write_snapshot(path, network)
    loaded = load_generator_pickle(path, require_conditional=True)
    assert torch.equal(images(loaded, n=2), images(network, n=2))


def test_which_picks_g_or_g_ema(tmp_path: Path) -> None:
    g_ema, g = tiny_network(seed=0), tiny_network(seed=1)
    path = tmp_path / "net.pkl"
    write_snapshot(path, g_ema, G=g)
    assert torch.equal(images(load_generator_pickle(path)), images(g_ema))
    assert torch.equal(images(load_generator_pickle(path, which="G")), images(g))
    with pytest.raises(ValueError, match="which must be one of"):
        load_generator_pickle(path, which="D")


def test_reader_keeps_the_embedded_source_as_data_only(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the embedded source ran')\n"
    network = tiny_network()
    path = tmp_path / "net.pkl"
    write_snapshot(path, network, module_src=source)
    loaded = load_generator_pickle(path)
    assert torch.equal(images(loaded), images(network))
    record = read_snapshot(path)["G_ema"]
    assert record.class_name == "Generator" and record.source_length == len(source)
    assert not marker.exists()
    assert not {"torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"} & set(sys.modules)


class _Reduce:
    """Pickles as ``function(*args)``: what a malicious file would hold."""

    def __init__(self, function: Any, *args: Any):
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_side_effect_global_is_refused_and_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    data = snapshot_dict(tiny_network())
    data["G_ema"] = _Reduce(os.system, f"touch {marker}")
    path = tmp_path / "evil.pkl"
    dump_snapshot(path, data, protocol=protocol)
    expected = f"{os.system.__module__}.system"  # posix.system
    with pytest.raises(ForbiddenGlobalError, match=rf"refused the global '{expected}'") as info:
        load_generator_pickle(path)
    assert info.value.global_name == expected
    assert isinstance(info.value, CheckpointError)
    assert not marker.exists()


@pytest.mark.parametrize(
    "function, name",
    [
        (eval, "builtins.eval"),
        (getattr, "builtins.getattr"),
        (shutil.rmtree, "shutil.rmtree"),
        (torch.nn.Linear, "torch.nn.modules.linear.Linear"),
    ],
)
def test_other_globals_are_refused_by_name(tmp_path: Path, function: Any, name: str) -> None:
    data = {"training_set_kwargs": None, "G_ema": _Reduce(function, "x")}
    path = tmp_path / "bad.pkl"
    dump_snapshot(path, data)
    with pytest.raises(ForbiddenGlobalError, match=name.replace(".", r"\.")):
        read_snapshot(path)


def test_copyreg_reconstructor_is_refused(tmp_path: Path) -> None:
    # Protocol 0/1 pickles of plain objects use copyreg._reconstructor.
    class Plain:
        pass

    Plain.__module__, Plain.__qualname__ = __name__, "Plain"
    globals()["Plain"] = Plain
    path = tmp_path / "old.pkl"
    path.write_bytes(b"\x80\x02" + pickle.dumps({"G_ema": Plain()}, protocol=1))
    with pytest.raises(ForbiddenGlobalError, match=r"copy_?reg\._reconstructor"):
        read_snapshot(path)


def test_a_global_inside_a_storage_blob_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    magic = (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    blob = b"".join(pickle.dumps(part, protocol=2) for part in magic)
    blob += pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "evil.pkl"
    dump_snapshot(path, {"G_ema": _Reduce(torch.storage._load_from_bytes, blob)})
    with pytest.raises(ForbiddenGlobalError, match=r"in a storage blob: refused the global '\w+\.system'"):
        read_snapshot(path)
    assert not marker.exists()


def test_tensorflow_era_pickles_are_named(tmp_path: Path) -> None:
    path = tmp_path / "tf.pkl"
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\n)\x81.")
    with pytest.raises(ForbiddenGlobalError, match="TensorFlow-era"):
        read_snapshot(path)


@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.97])
def test_truncated_file_is_named_truncated(snapshot: tuple[Path, Generator], fraction: float) -> None:
    path, _ = snapshot
    data = path.read_bytes()
    path.write_bytes(data[: max(3, int(len(data) * fraction))])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator_pickle(path)


def test_missing_g_ema_is_named(tmp_path: Path) -> None:
    network = tiny_network()
    data = snapshot_dict(network)
    del data["G_ema"]
    path = tmp_path / "no-ema.pkl"
    dump_snapshot(path, data)
    with pytest.raises(CheckpointError, match="has no G_ema network"):
        load_generator_pickle(path)
    assert torch.equal(images(load_generator_pickle(path, which="G")), images(network))


def test_unconditional_network_where_a_conditional_one_is_required(tmp_path: Path) -> None:
    path = tmp_path / "uncond.pkl"
    write_snapshot(path, tiny_network(c_dim=0))
    assert load_generator_pickle(path).c_dim == 0
    with pytest.raises(CheckpointError, match=r"unconditional \(c_dim = 0\)"):
        load_generator_pickle(path, require_conditional=True)


def _edit_and_load(tmp_path: Path, edit: Any) -> None:
    data = snapshot_dict(tiny_network())
    edit(data["G_ema"].meta)
    path = tmp_path / "edited.pkl"
    dump_snapshot(path, data)
    load_generator_pickle(path)


def test_other_network_classes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a 'Discriminator', expected a StyleGAN2-ADA 'Generator'"):
        _edit_and_load(tmp_path, lambda meta: meta.update(class_name="Discriminator"))

    def stylegan3_like(meta: dict[str, Any]) -> None:
        meta["state"]["_modules"]["synthesis"].meta["class_name"] = "SynthesisInput"

    with pytest.raises(CheckpointError, match="synthesis is a 'SynthesisInput'"):
        _edit_and_load(tmp_path, stylegan3_like)


def test_recorded_attributes_must_match_the_rebuilt_network(tmp_path: Path) -> None:
    def change_clamp(meta: dict[str, Any]) -> None:
        layer = (
            meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b8"].meta["state"]["_modules"]["conv1"]
        )
        layer.meta["state"]["conv_clamp"] = 128

    with pytest.raises(CheckpointError, match=r"synthesis\.b8\.conv1\.conv_clamp is 128 in the file but 256"):
        _edit_and_load(tmp_path, change_clamp)


def test_unknown_constructor_arguments_are_named(tmp_path: Path) -> None:
    def add_argument(meta: dict[str, Any]) -> None:
        meta["state"]["_init_kwargs"]["synthesis_kwargs"]["magnitude_ema_beta"] = 0.999

    with pytest.raises(CheckpointError, match="magnitude_ema_beta"):
        _edit_and_load(tmp_path, add_argument)


def test_sniffing(snapshot: tuple[Path, Generator], tmp_path: Path) -> None:
    path, _ = snapshot
    assert looks_like_pickle(path)
    other = tmp_path / "list.pkl"
    other.write_bytes(pickle.dumps([1, 2], protocol=4))
    safetensors_like = tmp_path / "x.safetensors"
    safetensors_like.write_bytes((0x0380).to_bytes(8, "little") + b"{" + b" " * 0x37F)
    assert not looks_like_pickle(other) and not looks_like_pickle(safetensors_like)
    assert not looks_like_pickle(tmp_path / "missing.pkl")


def test_speed_hints_follow_the_file(tmp_path: Path) -> None:
    def fp32_everywhere(meta: dict[str, Any]) -> None:
        for block in meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"].values():
            block.meta["state"]["use_fp16"] = False

    data = snapshot_dict(tiny_network())
    fp32_everywhere(data["G_ema"].meta)
    path = tmp_path / "fp32.pkl"
    dump_snapshot(path, data)
    assert [b.use_fp16 for b in load_generator_pickle(path).synthesis.blocks()] == [False, False, False]
    assert [b.use_fp16 for b in tiny_network().synthesis.blocks()] == [False, True, True]


# ------------------------------------------------------------------------------------------------
# Hostile or malformed files: always a CheckpointError, never a side effect on the reader.


def test_build_cannot_rewrite_the_readers_own_objects(tmp_path: Path, snapshot: tuple[Path, Generator]) -> None:
    # BUILD on a global sets attributes on it: the stream must only ever reach per-read stand-ins.
    from atgan_plugin.vendored.stylegan2_ada import snapshot as reader

    defaults = reader._rebuild_tensor_v2.__defaults__
    for i, (module, name, attributes) in enumerate(
        [
            ("dnnlib.util", "EasyDict", {"__setitem__": None}),
            ("torch._utils", "_rebuild_tensor_v2", {"__defaults__": (1,)}),
        ]
    ):
        state = pickle.dumps((None, attributes), protocol=3)[2:-1]  # the pickled tuple without PROTO and STOP
        path = tmp_path / f"build-{i}.pkl"
        path.write_bytes(b"\x80\x03c" + f"{module}\n{name}\n".encode() + state + b"b0}.")  # BUILD, POP, {}
        with pytest.raises(CheckpointError):
            load_generator_pickle(path)
    assert "__setitem__" not in vars(reader._EasyDict)
    assert reader._rebuild_tensor_v2.__defaults__ == defaults
    path, network = snapshot
    assert torch.equal(images(load_generator_pickle(path)), images(network))


def test_overlapping_tensor_views_are_refused(tmp_path: Path) -> None:
    # A stride-0 view of a 4-element storage claiming 2**40 elements: refused before any copy.
    storage = torch.storage.TypedStorage(
        wrap_storage=torch.zeros(4).untyped_storage(), dtype=torch.float32, _internal=True
    )
    tensor = _Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (2**40,), (0,), False, collections.OrderedDict())

    def edit(meta: dict[str, Any]) -> None:
        meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b4"].meta["state"]["_parameters"]["const"] = (
            tensor
        )

    with pytest.raises(CheckpointError, match="has more elements than its storage of 4"):
        _edit_and_load(tmp_path, edit)


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta: meta["state"].update(_parameters=[1, 2]),
        lambda meta: meta["state"].update(_init_kwargs=[1, 2]),
        lambda meta: meta["state"]["_init_kwargs"].update(img_resolution=2**20),
    ],
)
def test_malformed_records_give_checkpoint_errors(tmp_path: Path, edit: Any) -> None:
    with pytest.raises(CheckpointError):
        _edit_and_load(tmp_path, edit)


def test_a_legacy_storage_view_is_read(tmp_path: Path) -> None:
    # Legacy torch.save (spec §1.4): the persistent id names the root storage and, for a view,
    # (view key, offset, size) in elements; the list of records names the root storage.
    from atgan_plugin.vendored.stylegan2_ada.snapshot import _load_storage_blob

    values = torch.arange(6, dtype=torch.float32)
    marker = object()

    class _Storage(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("storage", torch.FloatStorage, "root", "cpu", 6, ("view", 2, 3)) if obj is marker else None

    head = b"".join(
        pickle.dumps(part, protocol=2)
        for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    buffer = io.BytesIO()
    _Storage(buffer, protocol=2).dump(marker)
    blob = (
        head + buffer.getvalue() + pickle.dumps(["root"], protocol=2) + struct.pack("<q", 6) + values.numpy().tobytes()
    )
    assert torch.equal(_load_storage_blob(blob), values[2:5])

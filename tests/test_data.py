"""atgan_plugin.data: Fashion-MNIST/MNIST from IDX files, never downloaded."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from atgan_plugin.data import DatasetNotFoundError, TensorDataset, _read_idx, load_dataset

PREFIX = {"train": "train", "test": "t10k"}


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """Writes ``array`` (uint8) as an IDX file, the format of the (Fashion-)MNIST distribution."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path = path.with_name(path.name + ".gz") if gz else path
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def write_split(folder: Path, split: str, n: int, *, gz: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{PREFIX[split]}-images-idx3-ubyte", images, gz=gz)
    write_idx(folder / f"{PREFIX[split]}-labels-idx1-ubyte", labels, gz=gz)
    return images, labels


# ------------------------------------------------------------------------------------------------
# The real Fashion-MNIST files.


@pytest.mark.parametrize("split, size", [("train", 60_000), ("test", 10_000)])
def test_fashion_mnist_splits_have_the_published_shape(
    fashion_full: dict[str, TensorDataset], split: str, size: int
) -> None:
    data = fashion_full[split]
    assert data.images.shape == (size, 1, 28, 28)
    assert data.images.dtype == torch.float32
    assert data.labels.shape == (size,)
    assert data.labels.dtype == torch.int64
    assert 0.0 <= data.images.min().item() and data.images.max().item() <= 1.0
    # Fashion-MNIST is balanced: every class has the same number of examples in each split.
    assert torch.bincount(data.labels, minlength=10).tolist() == [size // 10] * 10


def test_pixels_are_the_bytes_divided_by_255(fashion_full: dict[str, TensorDataset]) -> None:
    # Every value is k/255 for an integer k, and both ends of the range occur.
    scaled = fashion_full["test"].images[:100] * 255
    assert torch.allclose(scaled, scaled.round(), atol=1e-4)
    assert scaled.min().item() == 0.0 and scaled.max().round().item() == 255.0


def test_subset_is_the_first_n_examples(fashion_full: dict[str, TensorDataset]) -> None:
    data = fashion_full["test"]
    part = data.subset(37)
    assert len(part) == 37
    assert torch.equal(part.images, data.images[:37])
    assert torch.equal(part.labels, data.labels[:37])
    image, label = part[5]
    assert torch.equal(image, data.images[5]) and label == data.labels[5]


# ------------------------------------------------------------------------------------------------
# Other places the files may be.


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_data_dir_with_idx_files(tmp_path: Path, split: str, gz: bool) -> None:
    images, labels = write_split(tmp_path, split, 12, gz=gz)
    data = load_dataset("fashion-mnist", split, data_dir=tmp_path)
    assert data.images.shape == (12, 1, 28, 28)
    assert torch.equal(data.images, torch.from_numpy(images).float().div(255).unsqueeze(1))
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))


@pytest.mark.parametrize("name, folder", [("fashion-mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_torchvision_root_layout(tmp_path: Path, name: str, folder: str) -> None:
    raw = tmp_path / folder / "raw"
    expected = {split: write_split(raw, split, 9, gz=False, seed=i) for i, split in enumerate(("train", "test"))}
    for split, (images, labels) in expected.items():
        data = load_dataset(name, split, data_dir=tmp_path)
        assert torch.equal(data.images, torch.from_numpy(images).float().div(255).unsqueeze(1))
        assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))


# ------------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    "name, data_dir, match",
    [
        ("fashion-mnist", "empty", r"apt-get install dataset-fashion-mnist"),
        ("fashion-mnist", "empty", r"FashionMNIST/raw/"),
        ("fashion-mnist", "empty", r"nothing is downloaded"),
        ("fashion-mnist", "empty", r"train-images-idx3-ubyte\[\.gz\]"),
        ("mnist", None, r"looked in: \(no folder\)"),
        ("mnist", "empty", r"MNIST/raw/"),
    ],
)
def test_missing_files_raise_dataset_not_found(tmp_path: Path, name: str, data_dir: str | None, match: str) -> None:
    folder = None if data_dir is None else tmp_path
    with pytest.raises(DatasetNotFoundError, match=match):
        load_dataset(name, "train", data_dir=folder)


def test_dataset_not_found_is_a_file_not_found_error() -> None:
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_mnist_message_names_no_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    assert "apt-get" not in str(info.value)


@pytest.mark.parametrize(
    "name, split, match",
    [
        ("cifar10", "train", r"unknown dataset 'cifar10'"),
        ("fashion-mnist", "validation", r"split must be 'train' or 'test'"),
    ],
)
def test_bad_name_or_split(name: str, split: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_dataset(name, split)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"bad magic number"),
        (b"\x00\x00\x09\x01" + (3).to_bytes(4, "big") + b"abc", r"bad magic number"),  # type 0x09: not unsigned byte
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", r"bad magic number"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", r"truncated: expected 5 values, found 3"),
        (b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28)) + bytes(784), r"truncated"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, content: bytes, match: str, gz: bool) -> None:
    path = tmp_path / ("file.gz" if gz else "file")
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match=match):
        _read_idx(path)


def test_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    write_split(tmp_path, "test", 6, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"6 images but 5 labels"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path)

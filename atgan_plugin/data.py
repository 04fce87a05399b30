"""Datasets: Fashion-MNIST and MNIST from IDX files, as float tensors in [0, 1].

Where the files are looked for, in order:
1. an explicit ``data_dir`` holding the four IDX files (``.gz`` or not);
2. a torchvision dataset root (``<root>/FashionMNIST/raw/...``), read with ``torchvision.datasets``;
3. Debian's package folder (``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

Nothing is ever downloaded: missing files raise :class:`DatasetNotFoundError`, whose message says
how to get them.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

__all__ = ["DATASETS", "DatasetNotFoundError", "TensorDataset", "load_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str  # also the folder name torchvision uses under its root
    debian_package: str | None
    debian_dir: str | None
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (1, 28, 28)
    class_names: tuple[str, ...] = tuple(str(k) for k in range(10))


# Fashion-MNIST's labels 0-9, in the order of the dataset's documentation.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "FashionMNIST",
        "dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        class_names=FASHION_MNIST_CLASSES,
    ),
    "mnist": DatasetInfo("mnist", "MNIST", None, None),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not on disk (this package never downloads them)."""


@dataclass(frozen=True)
class TensorDataset:
    """Images ``(N, C, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def subset(self, n: int) -> TensorDataset:
        """The first ``n`` examples (a deterministic slice, for tests and quick runs)."""
        return TensorDataset(self.images[:n], self.labels[:n])


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {payload.size}")
    return payload.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_from_idx_folder(folder: Path, split: str) -> TensorDataset | None:
    prefix = _SPLIT_PREFIX[split]
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        return None
    images = torch.from_numpy(_read_idx(images_path).copy()).float().div_(255.0).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(labels_path).astype(np.int64))
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return TensorDataset(images, labels)


def _load_from_torchvision_root(root: Path, info: DatasetInfo, split: str) -> TensorDataset | None:
    dataset_class = getattr(torchvision.datasets, info.torchvision_class)
    raw = root / info.torchvision_class / "raw"
    if not raw.is_dir():
        return None
    try:
        ds = dataset_class(str(root), train=(split == "train"), download=False)
    except RuntimeError:  # torchvision: "Dataset not found"
        return None
    images = ds.data.float().div_(255.0).unsqueeze(1)
    return TensorDataset(images, ds.targets.long())


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None) -> TensorDataset:
    """Loads ``split`` ("train" or "test") of dataset ``name`` ("fashion-mnist" or "mnist").

    Shape: images ``(N, 1, 28, 28)`` float32 in [0, 1], labels ``(N,)`` int64 in [0, 10).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    info = DATASETS[name]
    searched: list[str] = []
    folders: list[Path] = []
    if data_dir is not None:
        folders.append(Path(data_dir))
    elif info.debian_dir is not None:
        folders.append(Path(info.debian_dir))
    for folder in folders:
        searched.append(str(folder))
        found = _load_from_idx_folder(folder, split) or _load_from_torchvision_root(folder, info, split)
        if found is not None:
            return found
    hints = [
        f"looked in: {', '.join(searched) or '(no folder)'}",
        f"pass --data-dir pointing at a folder with {_SPLIT_PREFIX[split]}-images-idx3-ubyte[.gz] "
        f"and {_SPLIT_PREFIX[split]}-labels-idx1-ubyte[.gz], or at a torchvision root holding "
        f"{info.torchvision_class}/raw/",
    ]
    if info.debian_package:
        hints.append(f"on Debian/Ubuntu: sudo apt-get install {info.debian_package}")
    raise DatasetNotFoundError(f"{name} ({split}) not found; " + "; ".join(hints) + " (nothing is downloaded)")

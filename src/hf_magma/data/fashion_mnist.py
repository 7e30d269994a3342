"""The offline Fashion-MNIST: the original gzipped IDX files (Debian's ``dataset-fashion-mnist`` package, or any
folder named by ``HF_MAGMA_FASHION_MNIST_DIR``) as a `DatasetDict` with the Hub copy's columns."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

FASHION_MNIST_DIR = Path(os.environ.get("HF_MAGMA_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"
FASHION_MNIST_LABELS = [
    "T - shirt / top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, gzipped) as a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(shape):
        raise ValueError(f"{path} holds {array.size} values, its header announces {shape}")
    return array.reshape(shape)


def load_fashion_mnist(directory: str | os.PathLike | None = None) -> DatasetDict:
    """The Fashion-MNIST train (60,000) and test (10,000) splits from the Debian package's IDX files.

    Images are decoded once into a uint8 (28, 28) array column ``image`` with a ``label`` ClassLabel column, the
    same columns as the Hub's ``zalando-datasets/fashion_mnist``.
    """
    directory = Path(directory) if directory is not None else FASHION_MNIST_DIR
    missing = [name for files in _FASHION_MNIST_FILES.values() for name in files if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The offline Fashion-MNIST is not installed ({', '.join(missing)} missing in {directory}). Install it "
            "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), point HF_MAGMA_FASHION_MNIST_DIR at a "
            "folder holding the four .gz IDX files, or pass "
            f"`--dataset_name {FASHION_MNIST_HUB_ID}` to download it from the Hub."
        )
    features = datasets.Features(
        {"image": datasets.Array2D(shape=(28, 28), dtype="uint8"), "label": ClassLabel(names=FASHION_MNIST_LABELS)}
    )
    splits = {}
    for split, (images_file, labels_file) in _FASHION_MNIST_FILES.items():
        images = _read_idx(directory / images_file)
        labels = _read_idx(directory / labels_file)
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise ValueError(f"Fashion-MNIST {split}: images {images.shape} do not match labels {labels.shape}")
        splits[split] = Dataset.from_dict({"image": images, "label": labels.astype(np.int64)}, features=features)
    return DatasetDict(splits)

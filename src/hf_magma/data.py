"""Image data for pretraining and evaluation: loading (Hub, image folders, offline Fashion-MNIST), MAE transforms
and a collator that skips unreadable images instead of stopping the run.

Images stay undecoded in the datasets (``Image(decode=False)``) and are decoded exactly once per access, in the
DataLoader workers, by :class:`ImageTransform`; a file that cannot be decoded is dropped from its batch, counted
and named in the log.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import multiprocessing
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, IterableDatasetDict

logger = logging.getLogger(__name__)

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

STREAMING_VALIDATION_EXAMPLES = 1000
IMAGE_COLUMN_NAMES = ("image", "img", "images", "pixel_values", "picture", "photo")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "target", "category")
_ARRAY_FEATURES = (datasets.Array2D, datasets.Array3D)


@dataclass
class ImageDataArguments:
    """Where the images come from and how much of them to use (parsed by ``HfArgumentParser``).

    With neither ``dataset_name`` nor ``train_dir`` the offline Fashion-MNIST copy is used.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A dataset on the Hub (or a local dataset script/folder) to load with `datasets.load_dataset`. "
            "Without it and without --train_dir, the offline Fashion-MNIST in "
            f"{FASHION_MNIST_DIR} is used (the Hub's {FASHION_MNIST_HUB_ID})."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "A folder of training images (`imagefolder`)."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder of validation images."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "The column holding the images (auto-detected when absent)."}
    )
    label_column_name: str | None = field(
        default=None,
        metadata={"help": "The column holding class labels, if any (auto-detected; used by the online probe)."},
    )
    train_split: str = field(default="train", metadata={"help": "The split to pretrain on."})
    validation_split: str | None = field(
        default=None,
        metadata={
            "help": "The split to validate on. Default: `validation` when the source has it, else `test`, else "
            "--validation_split_percentage of the training split (streamed: its first --max_eval_samples, or "
            "1,000, examples)."
        },
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Percentage of the training split held out for validation when the source has none."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the dataset instead of downloading it (needs --max_steps); sharded per process."},
    )
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "Buffer size of the approximate shuffle of a streamed training set."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only this many training examples (debugging, quick runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many validation examples."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes used to prepare an image folder or non-streamed dataset."}
    )

    def __post_init__(self) -> None:
        if self.dataset_name is not None and self.train_dir is not None:
            raise ValueError("Give either --dataset_name or --train_dir, not both")
        if self.validation_dir is not None and self.train_dir is None:
            raise ValueError("--validation_dir needs --train_dir")
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}"
            )
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive number of examples, got {value}")
        if self.shuffle_buffer_size < 1:
            raise ValueError(f"--shuffle_buffer_size must be positive, got {self.shuffle_buffer_size}")
        if self.streaming and self.dataset_name is None and self.train_dir is None:
            raise ValueError("--streaming needs --dataset_name or --train_dir (the offline default is in memory)")


# ----------------------------------------------------------------------------------------------------------------
# Loading


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


def _features_of(source: Any) -> Mapping[str, Any] | Sequence[str]:
    if isinstance(source, (Dataset, IterableDataset)):
        return source.features if source.features is not None else list(source.column_names or [])
    return source


def find_image_column(columns: Mapping[str, Any] | Sequence[str] | Dataset | IterableDataset) -> str:
    """The column holding the images: the first ``Image`` (or 2-D/3-D array) feature, else a usual name.

    Raises ``ValueError`` listing the columns when none qualifies.
    """
    columns = _features_of(columns)
    if isinstance(columns, Mapping):
        for name, feature in columns.items():
            if isinstance(feature, datasets.Image):
                return name
        for name, feature in columns.items():
            if isinstance(feature, _ARRAY_FEATURES) and name in IMAGE_COLUMN_NAMES:
                return name
    names = list(columns)
    for candidate in IMAGE_COLUMN_NAMES:
        if candidate in names:
            return candidate
    raise ValueError(
        f"No image column found among the columns {names}; pass --image_column_name with the one holding the images"
    )


def find_label_column(
    columns: Mapping[str, Any] | Sequence[str] | Dataset | IterableDataset, *, required: bool = False
) -> str | None:
    """The column holding class labels: a usual name (``label``, ``fine_label``, ...), else the first ClassLabel.

    Returns ``None`` when there is none, or raises ``ValueError`` if ``required``.
    """
    columns = _features_of(columns)
    names = list(columns)
    for candidate in LABEL_COLUMN_NAMES:
        if candidate in names:
            return candidate
    if isinstance(columns, Mapping):
        for name, feature in columns.items():
            if isinstance(feature, ClassLabel):
                return name
    if required:
        raise ValueError(
            f"No label column found among the columns {names}; pass --label_column_name with the one holding "
            "the class labels"
        )
    return None


def num_classes(dataset: Dataset | IterableDataset, label_column: str) -> int | None:
    """The number of classes of a ClassLabel column, or ``None`` when the feature does not say."""
    features = dataset.features or {}
    feature = features.get(label_column)
    return feature.num_classes if isinstance(feature, ClassLabel) else None


def _distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def load_image_datasets(
    data_args: ImageDataArguments, *, seed: int = 42
) -> dict[str, Dataset | IterableDataset]:
    """Load the images named by ``data_args`` as ``{"train", "validation"[, "test"]}``.

    Sources: a Hub dataset (``streaming`` gives IterableDatasets, the training one shuffled with a buffer and
    split per process with ``datasets.distributed.split_dataset_by_node``), an image folder, or, with neither,
    the offline Fashion-MNIST. The validation set is the source's ``validation`` split, else its ``test`` split
    (only the unsupervised loss is measured on it), else ``validation_split_percentage`` of the training set
    (streamed: its first ``max_eval_samples`` examples, 1,000 by default);
    ``"test"`` is the source's test split whenever it has one (so Fashion-MNIST gives train 60k, test 10k).
    Image columns are left undecoded (``Image(decode=False)``): :class:`ImageCollator` decodes them.
    """
    if data_args.dataset_name is not None:
        raw = datasets.load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            streaming=data_args.streaming,
            num_proc=None if data_args.streaming else data_args.preprocessing_num_workers,
        )
        source = data_args.dataset_name
    elif data_args.train_dir is not None:
        data_files = {"train": os.path.join(data_args.train_dir, "**")}
        if data_args.validation_dir is not None:
            data_files["validation"] = os.path.join(data_args.validation_dir, "**")
        raw = datasets.load_dataset(
            "imagefolder",
            data_files=data_files,
            streaming=data_args.streaming,
            num_proc=None if data_args.streaming else data_args.preprocessing_num_workers,
        )
        source = data_args.train_dir
    else:
        raw = load_fashion_mnist()
        source = None
        logger.warning(
            "No dataset given: using the offline Fashion-MNIST from %s (60,000 train / 10,000 test images). "
            "With a network, `--dataset_name %s` gives the same data from the Hub.",
            FASHION_MNIST_DIR,
            FASHION_MNIST_HUB_ID,
        )

    if not isinstance(raw, (DatasetDict, IterableDatasetDict)):
        raw = {data_args.train_split: raw}
    if data_args.train_split not in raw:
        raise ValueError(f"{source or 'The dataset'} has no split {data_args.train_split!r}; it has {list(raw)}")

    splits: dict[str, Dataset | IterableDataset] = {"train": raw[data_args.train_split]}
    validation_name = data_args.validation_split
    if validation_name is None:
        validation_name = next((n for n in ("validation", "valid", "val", "test") if n in raw), None)
    elif validation_name not in raw:
        raise ValueError(f"{source or 'The dataset'} has no split {validation_name!r}; it has {list(raw)}")
    if validation_name is not None and validation_name != data_args.train_split:
        splits["validation"] = raw[validation_name]
    elif isinstance(splits["train"], IterableDataset):
        # No length to take a percentage of: the first max_eval_samples (default 1,000) examples are held out.
        held_out = data_args.max_eval_samples or STREAMING_VALIDATION_EXAMPLES
        splits["validation"] = splits["train"].take(held_out)
        splits["train"] = splits["train"].skip(held_out)
    else:
        parts = splits["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
    if "test" in raw and data_args.train_split != "test":
        splits["test"] = raw["test"]

    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is None:
            continue
        dataset = splits[name]
        if isinstance(dataset, IterableDataset):
            splits[name] = dataset.take(limit)
        else:
            splits[name] = dataset.select(range(min(limit, len(dataset))))

    image_column = data_args.image_column_name or find_image_column(splits["train"])
    for name, dataset in splits.items():
        splits[name] = prepare_image_column(dataset, image_column)

    if isinstance(splits["train"], IterableDataset):
        rank, world_size = _distributed_rank_and_size()
        splits["train"] = splits["train"].shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
        if world_size > 1:
            splits["train"] = datasets.distributed.split_dataset_by_node(splits["train"], rank, world_size)
    for name, dataset in splits.items():
        if isinstance(dataset, Dataset) and len(dataset) == 0:
            raise ValueError(f"The {name} split of {source or 'the dataset'} is empty")
    return splits


def prepare_image_column(dataset: Dataset | IterableDataset, image_column: str) -> Dataset | IterableDataset:
    """Leave ``image_column`` undecoded (``Image(decode=False)``) or, for array columns, read it as numpy."""
    features = dataset.features
    if features is None:
        return dataset
    if image_column not in features:
        raise ValueError(f"The image column {image_column!r} is not among the columns {list(features)}")
    feature = features[image_column]
    if isinstance(feature, datasets.Image):
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    if isinstance(feature, _ARRAY_FEATURES) and isinstance(dataset, Dataset):
        dtype = np.dtype(feature.dtype)
        return dataset.with_format("numpy", columns=[image_column], output_all_columns=True, dtype=dtype)
    return dataset


# ----------------------------------------------------------------------------------------------------------------
# Transforms


def decode_image(value: Any) -> PIL.Image.Image | np.ndarray:
    """A PIL image or array from what a dataset column holds: PIL image, array, path, bytes or ``{"bytes", "path"}``.

    Raises ``OSError``/``ValueError`` (from PIL) when the data is not a readable image.
    """
    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path is None:
            raise ValueError("the image entry holds neither bytes nor a path")
        value = data if data is not None else path
    if isinstance(value, (bytes, bytearray)):
        value = io.BytesIO(value)
    elif isinstance(value, list):
        return np.asarray(value, dtype=np.uint8)
    image = PIL.Image.open(value)
    image.load()  # decode now, so that truncated files fail here and not later
    return image


def image_name(value: Any) -> str:
    """A readable name for an image entry (its path when known), for log messages."""
    if isinstance(value, Mapping) and value.get("path"):
        return str(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    return f"<{type(value).__name__}>"


def to_pil(image: PIL.Image.Image | np.ndarray, num_channels: int = 3) -> PIL.Image.Image:
    """Grey, RGBA (composited on white), palette and CMYK images as RGB; or as grey with ``num_channels=1``."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
                array = array * 255.0
            array = np.clip(array, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3):
            raise ValueError(f"an image array must be (H, W) or (H, W, C), got shape {image.shape}")
        image = PIL.Image.fromarray(array)
    target = "L" if num_channels == 1 else "RGB"
    if image.mode == target:
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(target)


def check_crop_settings(
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: Sequence[float],
    ratio: Sequence[float],
) -> tuple[tuple[int, int], list[float], list[float]]:
    """Validate the settings shared by the image transforms; returns ``(size, mean, std)`` as (h, w) and floats."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"`image_size` must be a positive int or (height, width), got {image_size!r}")
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise ValueError(f"`mean` and `std` need 1 or 3 values each (one per channel), got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"`std` must be positive, got {std}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"`scale` must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"`ratio` must satisfy 0 < min <= max, got {ratio}")
    return size, mean, std


class ImageTransform:
    """One image -> normalised float tensor (C, H, W) at the model's resolution.

    ``train=True`` is MAE's augmentation: a random resized crop (scale 0.2-1, aspect 3/4-4/3, bicubic) and a
    horizontal flip; ``train=False`` resizes the shorter side (bicubic) and centre-crops. Both normalise with
    ``mean``/``std``. Images become RGB, or grey when ``num_channels=1`` (then 3-value statistics are averaged).
    Done in PIL on single images, so it runs in the DataLoader workers.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        train: bool = True,
        *,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        num_channels: int = 3,
    ) -> None:
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 (grey) or 3 (RGB), got {num_channels}")
        size, mean, std = check_crop_settings(image_size, mean, std, scale, ratio)
        if num_channels == 1 and len(mean) == 3:
            mean, std = [sum(mean) / 3], [sum(std) / 3]
        elif num_channels == 3 and len(mean) == 1:
            mean, std = mean * 3, std * 3
        self.size = size  # (height, width)
        self.train = train
        self.scale, self.ratio, self.hflip = scale, ratio, hflip
        self.num_channels = num_channels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    @classmethod
    def from_image_processor(cls, processor: Any, train: bool, *, num_channels: int = 3, **kwargs) -> ImageTransform:
        """Size and statistics from a transformers image processor (e.g. a ViT one)."""
        size = processor.size
        if isinstance(size, Mapping) or hasattr(size, "height"):
            get = size.get if isinstance(size, Mapping) else lambda k: getattr(size, k, None)
            if get("height") is not None:
                image_size: int | tuple[int, int] = (int(get("height")), int(get("width")))
            elif get("shortest_edge") is not None:
                image_size = int(get("shortest_edge"))
            else:
                raise ValueError(f"Cannot read an image size from the processor's size {size!r}")
        else:
            image_size = int(size)
        return cls(image_size, processor.image_mean, processor.image_std, train, num_channels=num_channels, **kwargs)

    def _crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(*log_ratio))
            w = math.sqrt(target_area * aspect)
            h = math.sqrt(target_area / aspect)
            if 0 < w <= width and 0 < h <= height:
                left = random.uniform(0, width - w)
                top = random.uniform(0, height - h)
                return left, top, left + w, top + h
        # Fall back to a centre crop clamped to the allowed aspect ratios (as torchvision does).
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, width / self.ratio[0]
        elif in_ratio > self.ratio[1]:
            w, h = height * self.ratio[1], height
        else:
            w, h = width, height
        left, top = (width - w) / 2, (height - h) / 2
        return left, top, left + w, top + h

    def pixels(self, image: Any) -> np.ndarray:
        """The decoded, converted, cropped (and, for training, augmented) image as a uint8 (H, W, C) array."""
        image = to_pil(decode_image(image), self.num_channels)
        height, width = self.size
        if self.train:
            image = image.resize((width, height), PIL.Image.BICUBIC, box=self._crop_box(*image.size))
            if random.random() < self.hflip:
                image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
        else:
            scale = max(height / image.height, width / image.width)
            new_w, new_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
            if (new_w, new_h) != image.size:
                image = image.resize((new_w, new_h), PIL.Image.BICUBIC)
            left, top = (new_w - width) // 2, (new_h - height) // 2
            image = image.crop((left, top, left + width, top + height))
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) arrays -> normalised float (B, C, H, W), in one pass over the batch."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
        return batch.mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)

    def __call__(self, image: Any) -> torch.Tensor:
        return self.normalize(self.pixels(image)[None])[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, train={self.train}, num_channels={self.num_channels}, "
            f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
        )


# ----------------------------------------------------------------------------------------------------------------
# Collation


class ImageCollator:
    """Decodes and transforms a list of raw examples into ``{"pixel_values": (B, C, H, W)[, "labels": (B,)]}``.

    An image that cannot be read is left out of its batch, counted (across DataLoader workers) and named in the
    log; the run goes on. ``skipped`` is the number left out so far.
    """

    def __init__(self, transform: ImageTransform, image_column: str = "image", label_column: str | None = None):
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        # A shared counter, so that workers' skips add up in the main process.
        self._skipped = multiprocessing.get_context().Value("q", 0)

    @property
    def skipped(self) -> int:
        """How many unreadable images were left out so far."""
        return int(self._skipped.value)

    def __call__(self, examples: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        pixel_values: list[np.ndarray] = []
        labels: list[int] = []
        for example in examples:
            if self.image_column not in example:
                raise KeyError(
                    f"Examples have no image column {self.image_column!r}; they have {list(example)} "
                    "(set --image_column_name)"
                )
            value = example[self.image_column]
            try:
                pixels = self.transform.pixels(value)
            except (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError) as error:
                with self._skipped.get_lock():
                    self._skipped.value += 1
                    total = self._skipped.value
                logger.warning("Skipping unreadable image %s (%s); %d skipped so far", image_name(value), error, total)
                continue
            pixel_values.append(pixels)
            if self.label_column is not None:
                labels.append(int(example[self.label_column]))
        if not pixel_values:
            channels, (height, width) = self.transform.num_channels, self.transform.size
            batch = {"pixel_values": torch.empty(0, channels, height, width)}
        else:
            batch = {"pixel_values": self.transform.normalize(np.stack(pixel_values))}
        if self.label_column is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

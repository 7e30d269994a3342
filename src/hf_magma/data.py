"""Image data for pretraining and evaluation: the data arguments, loading (Hub, image folders, the offline
Fashion-MNIST of `hf_magma.fashion_mnist`) and the image and label columns.

Images stay undecoded in the datasets (``Image(decode=False)``) and are decoded exactly once per access, in the
DataLoader workers, by `hf_magma.transforms.ImageTransform` (re-exported here with the collator).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from datasets.distributed import split_dataset_by_node
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from .checks import check_number
from .crop import MAE_CROP_SCALE
from .fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_HUB_ID, load_fashion_mnist  # noqa: F401  (re-exported)
from .transforms import (  # noqa: F401  (re-exported: the transforms were first published here)
    ImageCollator,
    ImageTransform,
    check_crop_settings,
    decode_image,
    image_name,
    to_pil,
)

logger = logging.getLogger(__name__)
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
        default=None,
        metadata={"help": "Keep only this many training examples, drawn at random with --seed, at least one of every "
                  "class (debugging, quick runs). Streamed: drawn through the --shuffle_buffer_size shuffle buffer."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep only this many validation examples, drawn like --max_train_samples."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes used to prepare an image folder or non-streamed dataset."}
    )
    in_memory: str = field(
        default="auto",
        metadata={
            "help": "Decode the images once into a uint8 tensor held in RAM and augment whole batches on the training "
            "device (`true`), decode and augment in DataLoader workers (`false`), or `auto`: in memory when the "
            "data is not streamed, its images share one size and the decoded training and validation images fit "
            "in --in_memory_max_gb (Fashion-MNIST, CIFAR, STL-10, Tiny-ImageNet do).",
            "choices": ["auto", "true", "false"],
        },
    )
    in_memory_max_gb: float = field(
        default=4.0,
        metadata={"help": "RAM budget of --in_memory (GiB, per process): N x C x H x W bytes of decoded images."},
    )
    random_crop: bool = field(
        default=True,
        metadata={"help": "Augment with a random resized crop (false: the whole image, resized to the model's)."},
    )
    crop_scale: list[float] | None = field(
        default=None,
        metadata={"help": "The random resized crop's (min, max) fraction of the image area (default: MAE's 0.2 1; "
                  "SimCLR's 0.08 1 for the two-view objectives)."},
    )
    crop_ratio: list[float] = field(
        default_factory=lambda: [3 / 4, 4 / 3],
        metadata={"help": "The random resized crop's (min, max) aspect ratio, width / height."},
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "Flip images left-right with probability 0.5 (false: never)."}
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
            if getattr(self, name) is not None:
                check_number(f"--{name}", getattr(self, name), sign="positive", integer=True)
        check_number("--shuffle_buffer_size", self.shuffle_buffer_size, sign="positive", integer=True)
        if self.streaming and self.dataset_name is None and self.train_dir is None:
            raise ValueError("--streaming needs --dataset_name or --train_dir (the offline default is in memory)")
        if self.in_memory not in ("auto", "true", "false"):
            raise ValueError(f"--in_memory must be auto, true or false, got {self.in_memory!r}")
        if self.in_memory == "true" and self.streaming:
            raise ValueError("--in_memory true cannot hold a streamed dataset: drop --streaming or --in_memory")
        check_number("--in_memory_max_gb", self.in_memory_max_gb, sign="positive")
        check_crop_settings(1, [0.0], [1.0], self.crop_scale or MAE_CROP_SCALE, self.crop_ratio)

    def augmentation_settings(self, default_scale: Sequence[float] = MAE_CROP_SCALE) -> dict[str, Any]:
        """The crop and flip options as keyword arguments of `ImageTransform`/`BatchImageTransform`/
        `TwoViewAugmentation` (``scale``, ``ratio``, ``hflip``, ``random_crop``)."""
        return {"scale": tuple(self.crop_scale or default_scale), "ratio": tuple(self.crop_ratio),
                "hflip": 0.5 if self.horizontal_flip else 0.0, "random_crop": self.random_crop}


# ----------------------------------------------------------------------------------------------------------------
# Loading


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



def resolve_columns(
    dataset: Any, image_column: str | None = None, label_column: str | None = None, *, label_required: bool = False
) -> tuple[str, str | None]:
    """The image and label columns of ``dataset``: the names given, else those `find_image_column` and
    `find_label_column` detect (the label column is ``None`` when there is none, unless ``label_required``)."""
    image_column = image_column or find_image_column(dataset)
    label_column = label_column or find_label_column(dataset, required=label_required)
    return image_column, label_column


def check_label_feature(features: Any, label_column: str) -> None:
    """Raise ``ValueError`` unless ``label_column`` of a ``datasets`` schema holds integer class ids."""

    if features is None:
        return
    if label_column not in features:
        raise ValueError(f"label column {label_column!r} not in the dataset's columns {list(features)}")
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return
    raise ValueError(
        f"label column {label_column!r} holds {feature}, not integer classes: cast it to `datasets.ClassLabel` "
        "(e.g. `dataset.class_encode_column(...)`) or pass another `label_column`"
    )


def _distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def check_image_dir(option: str, folder: str | None) -> None:
    """Raise naming ``--option`` unless ``folder`` (if given) is a folder holding at least one image file."""
    if folder is None:
        return
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"--{option} {folder} does not exist or is not a folder: give a folder of images (one subfolder per "
            "class for labels)"
        )
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    if not files:
        raise ValueError(f"--{option} {folder} holds no files: put the images there (one subfolder per class)")
    extensions = set(ImageFolder.EXTENSIONS)
    if not any(os.path.splitext(name)[1].lower() in extensions for name in files):
        raise ValueError(
            f"--{option} {folder} holds no image files ({len(files)} other files, e.g. {files[0]}): images are found "
            "by their extension (.png, .jpg, .jpeg, .webp, .tif, ...); put the images there (one subfolder per class)"
        )


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
    raw, source = _load_source(data_args)
    if not isinstance(raw, (DatasetDict, IterableDatasetDict)):
        raw = {data_args.train_split: raw}
    if data_args.train_split not in raw:
        raise ValueError(f"{source or 'The dataset'} has no split {data_args.train_split!r}; it has {list(raw)}")

    splits = _train_and_validation(raw, data_args, source, seed)
    if "test" in raw and data_args.train_split != "test":
        splits["test"] = raw["test"]

    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is None:
            continue
        dataset = splits[name]
        if isinstance(dataset, IterableDataset):
            # Through the shuffle buffer, not the stream's first rows (all of one class in a class-sorted folder).
            splits[name] = dataset.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size).take(limit)
        else:
            splits[name] = select_subset(dataset, limit, seed, data_args.label_column_name)

    image_column = data_args.image_column_name or find_image_column(splits["train"])
    for name, dataset in splits.items():
        splits[name] = prepare_image_column(dataset, image_column)

    if isinstance(splits["train"], IterableDataset):
        rank, world_size = _distributed_rank_and_size()
        splits["train"] = splits["train"].shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
        if world_size > 1:
            splits["train"] = split_dataset_by_node(splits["train"], rank, world_size)
    for name, dataset in splits.items():
        if isinstance(dataset, Dataset) and len(dataset) == 0:
            raise ValueError(f"The {name} split of {source or 'the dataset'} is empty")
    return splits


def _load_source(data_args: ImageDataArguments) -> tuple[Any, str | None]:
    """The raw dataset (dict) of a Hub dataset, an image folder or the offline Fashion-MNIST, and its name."""
    if data_args.dataset_name is not None:
        raw = datasets.load_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            streaming=data_args.streaming,
            num_proc=None if data_args.streaming else data_args.preprocessing_num_workers,
        )
        source = data_args.dataset_name
    elif data_args.train_dir is not None:
        for option in ("train_dir", "validation_dir"):
            check_image_dir(option, getattr(data_args, option))
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
    return raw, source


def _train_and_validation(raw: Any, data_args: ImageDataArguments, source: str | None, seed: int) -> dict[str, Any]:
    """``{"train", "validation"}`` from the raw splits: the named or usual validation split, else a held-out part."""
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
    return splits


def select_subset(dataset: Dataset, limit: int, seed: int, label_column: str | None = None) -> Dataset:
    """``limit`` examples of ``dataset`` drawn at random with ``seed`` (not its first rows, which may all be of one
    class in a class-sorted folder), one example of every class first when it has a label column.

    Args:
        dataset: the split to subsample.
        limit: how many examples to keep (all of them when it has fewer).
        seed: the seed of the draw.
        label_column: the label column; found by `find_label_column` when None.
    Returns:
        The subset, in the drawn order.
    """
    order = np.random.default_rng(seed).permutation(len(dataset))
    label_column = label_column or find_label_column(dataset)
    if label_column is not None and label_column in (dataset.column_names or []):
        labels = dataset[label_column]
        first_of_class: dict[Any, int] = {}
        try:
            for position, index in enumerate(order):
                first_of_class.setdefault(labels[index], position)
        except TypeError:  # unhashable labels: no classes to keep
            first_of_class = {}
        firsts = sorted(first_of_class.values())
        order = np.concatenate([order[firsts], np.delete(order, firsts)])
    return dataset.select(order[: min(limit, len(dataset))].tolist())


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

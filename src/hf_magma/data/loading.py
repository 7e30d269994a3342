"""Loading image data for pretraining and evaluation: Hub datasets (also streamed), image folders, or the offline
Fashion-MNIST (`hf_magma.data.fashion_mnist`), split into train / validation (/ test) and subsampled on request.

Images stay undecoded in the datasets (``Image(decode=False)``) and are decoded exactly once per access, in the
DataLoader workers, by `hf_magma.data.transforms.ImageTransform` (or once in all by `hf_magma.data.in_memory`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from datasets.distributed import split_dataset_by_node

from ..utils.distributed import rank_and_world_size
from .arguments import ImageDataArguments
from .class_folders import load_class_folders, scan_class_folders
from .columns import ARRAY_FEATURES, find_image_column, find_label_column
from .fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_HUB_ID, load_fashion_mnist
from .hold_out import hold_out_stream

logger = logging.getLogger(__name__)
STREAMING_VALIDATION_EXAMPLES = 1000


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_image_datasets(
    data_args: ImageDataArguments, *, seed: int = 42
) -> dict[str, Dataset | IterableDataset]:
    """Load the images named by ``data_args`` as ``{"train", "validation"[, "test"]}``.

    Sources: a Hub dataset (``streaming`` gives IterableDatasets, the training one shuffled with a buffer and
    split per process with ``datasets.distributed.split_dataset_by_node``), an image folder, or, with neither,
    the offline Fashion-MNIST. The validation set is the source's ``validation`` split, else its ``test`` split
    (only the unsupervised loss is measured on it), else ``validation_split_percentage`` of the training set
    (streamed: held out by a seeded hash of each image, `hf_magma.data.hold_out`; ``max_eval_samples`` of them,
    1,000 by default, validate);
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
        rank, world_size = rank_and_world_size()
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
        folders = {"train": ("train_dir", data_args.train_dir)}
        if data_args.validation_dir is not None:
            folders["validation"] = ("validation_dir", data_args.validation_dir)
        layout = scan_class_folders(folders)
        source = data_args.train_dir
        if layout.needs_own_labels:
            logger.info(
                "--train_dir %s: the class folders %s hold subfolders; every image is labelled by its top-level "
                "folder (%d classes: %s)", source, ", ".join(layout.nested), len(layout.classes),
                ", ".join(layout.classes[:10]) + (", ..." if len(layout.classes) > 10 else ""),
            )
            return load_class_folders(layout, streaming=data_args.streaming), source
        if len(layout.classes) == 1:
            logger.warning(
                "--train_dir %s holds one class folder (%s): the images get no labels (classes need two class "
                "folders or more), so there is no online probe and no linear probe", source, layout.classes[0],
            )
        data_files = {split: os.path.join(folder, "**") for split, (_, folder) in folders.items()}
        raw = datasets.load_dataset(
            "imagefolder",
            data_files=data_files,
            streaming=data_args.streaming,
            num_proc=None if data_args.streaming else data_args.preprocessing_num_workers,
        )
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
        image_column = data_args.image_column_name or find_image_column(splits["train"])
        splits["train"], splits["validation"] = hold_out_stream(
            prepare_image_column(splits["train"], image_column), image_column,
            data_args.validation_split_percentage, seed, source or "the dataset",
        )
        if data_args.max_eval_samples is None:
            splits["validation"] = splits["validation"].take(STREAMING_VALIDATION_EXAMPLES)
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
    if isinstance(feature, ARRAY_FEATURES) and isinstance(dataset, Dataset):
        dtype = np.dtype(feature.dtype)
        return dataset.with_format("numpy", columns=[image_column], output_all_columns=True, dtype=dtype)
    return dataset

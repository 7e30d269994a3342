"""The image and label columns of a dataset: detection, checks and class counts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, IterableDataset

logger = logging.getLogger(__name__)


IMAGE_COLUMN_NAMES = ("image", "img", "images", "pixel_values", "picture", "photo")


LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "target", "category")


ARRAY_FEATURES = (datasets.Array2D, datasets.Array3D)


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
            if isinstance(feature, ARRAY_FEATURES) and name in IMAGE_COLUMN_NAMES:
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

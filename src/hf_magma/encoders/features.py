"""Frozen features of a whole dataset (`extract_features`): batches of a ``datasets`` dataset, a torch dataset or
any iterable of batches, encoded with `hf_magma.encoders.forward.encode`."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sized
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.columns import check_label_feature, resolve_columns
from ..data.decoding import UNREADABLE_IMAGE_ERRORS, image_name
from ..data.transforms import ImageTransform
from ..losses.pooling import ImagePooling
from ..utils.checks import check_number
from .forward import encode, model_device_dtype
from .loading import load_encoder

logger = logging.getLogger(__name__)


def extract_features(
    model: str | os.PathLike | nn.Module,
    dataset_or_loader: Any,
    *,
    pooling: ImagePooling = "cls",
    batch_size: int = 256,
    transform: Callable[[Any], torch.Tensor] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    show_progress: bool = True,
    image_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frozen features (N, D) and labels (N,) of a dataset, batched under ``torch.inference_mode``.

    ``dataset_or_loader`` is a ``datasets.Dataset``/``IterableDataset`` (images in ``image_column`` go through
    ``transform``, by default an eval `ImageTransform` at the model's size with ImageNet statistics; the
    columns are auto-detected when not given), a torch ``Dataset`` of ``(image, label)`` pairs, or an
    iterable of batches (dicts with ``pixel_values``/``labels`` or ``(pixel_values, labels)`` tuples). Every
    image is encoded on its own footing, so the result does not depend on ``batch_size``. Labels are ``None``
    when the data has none. Features are float32 on the CPU.

    Args:
        model: a checkpoint path, a Hub id or a model (see `load_encoder`).
        dataset_or_loader: the images, as above.
        pooling: ``cls`` or ``mean`` (see `encode`).
        batch_size: images per forward pass.
        transform: one image -> (C, H, W) tensor, for datasets of raw images.
        image_column, label_column: the columns of a ``datasets`` dataset (detected when not given).
        image_size: the images' size when it is not the model's (the default transform resizes to it, and the
            position embeddings are interpolated); every batch must then be ``image_size`` x ``image_size``.

    Returns:
        ``(features, labels)``: (N, D) float32 and (N,) int64 tensors (labels ``None`` without labels).
    """
    check_number("batch_size", batch_size, sign="positive", integer=True)
    encoder = load_encoder(model)
    device, dtype = model_device_dtype(encoder)
    config = encoder.config
    if image_size is not None:
        check_number("image_size", image_size, sign="positive", integer=True)
    interpolate = image_size is not None and image_size != config.image_size
    if transform is None and _is_hf_dataset(dataset_or_loader):
        if config.num_channels not in (1, 3):
            raise ValueError(f"A {config.num_channels}-channel encoder has no default statistics: pass `transform`, "
                             "e.g. ImageTransform.from_image_processor(processor, train=False, num_channels=...)")
        transform = ImageTransform(image_size or config.image_size, train=False, num_channels=config.num_channels)
    batches, total = _iter_batches(dataset_or_loader, batch_size, transform, image_column, label_column)
    was_training = encoder.training
    encoder.eval()
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for pixel_values, batch_labels in tqdm(
                batches, total=total, desc="Extracting features", unit="batch", disable=not show_progress
            ):
                pixel_values = pixel_values.to(device=device, dtype=dtype)
                if interpolate and tuple(pixel_values.shape[-2:]) != (image_size, image_size):
                    raise ValueError(f"image_size is {image_size} but a batch is {tuple(pixel_values.shape[-2:])}: "
                                     "give a transform that resizes to image_size")
                features.append(encode(encoder, pixel_values, pooling, interpolate).float().cpu())
                if batch_labels is not None:
                    labels.append(torch.as_tensor(batch_labels).long().cpu())
    finally:
        encoder.train(was_training)
    if not features:
        raise ValueError("the dataset is empty: no images to extract features from")
    all_features = torch.cat(features)
    if labels and len(labels) != len(features):
        raise ValueError("some batches have labels and others do not")
    return all_features, (torch.cat(labels) if labels else None)


def _is_hf_dataset(data: Any) -> bool:
    return isinstance(data, (datasets.Dataset, datasets.IterableDataset))


def _iter_batches(
    data: Any,
    batch_size: int,
    transform: Callable[[Any], torch.Tensor] | None,
    image_column: str | None,
    label_column: str | None,
) -> tuple[Iterable[tuple[torch.Tensor, Any]], int | None]:
    """Normalise the accepted inputs into an iterable of ``(pixel_values, labels or None)`` and its length."""
    if _is_hf_dataset(data):
        return _iter_hf_dataset(data, batch_size, transform, image_column, label_column)
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        total = len(data)
    except TypeError:
        total = None
    return (_unpack_batch(batch, transform) for batch in data), total


def _unpack_batch(batch: Any, transform: Callable[[Any], torch.Tensor] | None) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, dict):
        if "pixel_values" not in batch:
            raise ValueError(f"batches given as dicts need a `pixel_values` entry, got keys {sorted(batch)}")
        pixel_values, labels = batch["pixel_values"], batch.get("labels", batch.get("label"))
    elif isinstance(batch, (tuple, list)):
        pixel_values, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        pixel_values, labels = batch, None
    if transform is not None and not isinstance(pixel_values, torch.Tensor):
        pixel_values = torch.stack([transform(image) for image in pixel_values])
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`pixel_values` must be a tensor (or pass a `transform`), got {type(pixel_values).__name__}")
    return pixel_values, labels


def _iter_hf_dataset(data, batch_size, transform, image_column, label_column):
    image_column, label_column = resolve_columns(data, image_column, label_column)
    if label_column is not None:
        check_label_feature(data.features, label_column)
    if isinstance(data, Sized) and len(data) == 0:
        raise ValueError("the dataset is empty: no images to extract features from")
    total = math.ceil(len(data) / batch_size) if isinstance(data, Sized) else None

    def batches():
        skipped = 0
        for batch in data.iter(batch_size=batch_size):
            # An unreadable image is left out with its label and named, as in pretraining.
            kept, labels = [], []
            for index, image in enumerate(batch[image_column]):
                try:
                    kept.append(transform(image))
                except UNREADABLE_IMAGE_ERRORS as error:
                    skipped += 1
                    logger.warning("Skipping unreadable image %s (%s); %d skipped so far", image_name(image), error,
                                   skipped)
                    continue
                if label_column is not None:
                    labels.append(batch[label_column][index])
            if kept:
                yield torch.stack(kept), (labels if label_column is not None else None)

    return batches(), total

"""Images of any channel count (multispectral, medical): TIFF files and array columns as float (C, H, W) arrays.

Models of 1 or 3 channels keep the 8-bit PIL path of `hf_magma.data.decoding`. Any other channel count
(``--num_channels 4``, 13, 2, ...) goes through `channel_array`: TIFF files are read with ``tifffile`` (the
``tiff`` extra), other files with PIL (e.g. RGBA PNGs for 4 channels), arrays as they are, in ``(C, H, W)`` or
``(H, W, C)`` layout. Values are scaled by their dtype (`unit_scale`): unsigned and signed integers divided by
their type's maximum (uint8 / 255, uint16 / 65535, int16 / 32767), booleans 0 / 1, floats as they are. The
statistics (``--image_mean`` / ``--image_std``, or ``auto``: `channel_statistics`) apply to these scaled values.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .decoding import entry_source

#: The channel counts of the 8-bit PIL path (grey, RGB); every other count takes the float path of this module.
PIL_CHANNELS = (1, 3)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def uses_float_pixels(num_channels: int) -> bool:
    """Whether a model of ``num_channels`` reads float arrays (`channel_array`) rather than 8-bit PIL images."""
    return num_channels not in PIL_CHANNELS


def unit_scale(array: np.ndarray) -> np.ndarray:
    """Pixel values as float32 on the documented scale: integers / their dtype's maximum, floats as they are.

    Args:
        array: any shape, any integer, boolean or floating dtype.
    Returns:
        float32 array of the same shape.
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float64) / float(np.iinfo(array.dtype).max)).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("the image holds NaN or infinite pixel values")
        return values
    raise ValueError(f"image arrays must hold integers, booleans or floats, got dtype {array.dtype}")


def to_chw(array: np.ndarray, num_channels: int) -> np.ndarray:
    """An image array as (C, H, W) with C = ``num_channels``, from ``(C, H, W)`` or ``(H, W, C)``.

    The axis of length ``num_channels`` is the channel axis; when both the first and the last have that length,
    the last (``(H, W, C)``, as PIL, tifffile's interleaved TIFFs and `datasets` arrays hold colour images).

    Args:
        array: (C, H, W) or (H, W, C); (H, W) for ``num_channels=1``.
        num_channels: the model's channels.
    Returns:
        The same values as (num_channels, H, W).
    """
    if array.ndim == 2 and num_channels == 1:
        return array[None]
    if array.ndim == 3 and array.shape[-1] == num_channels:
        return np.moveaxis(array, -1, 0)
    if array.ndim == 3 and array.shape[0] == num_channels:
        return array
    raise ValueError(
        f"an image of shape {tuple(array.shape)} has no axis of {num_channels} channels: --num_channels "
        f"{num_channels} needs (C, H, W) or (H, W, C) images with C = {num_channels}"
    )


def _read_file(source: Any) -> np.ndarray:
    """A file (path or file object) as an array: TIFFs with tifffile, anything else with PIL."""
    if hasattr(source, "read"):
        head = source.read(4)
        source.seek(0)
    else:
        with open(source, "rb") as file:
            head = file.read(4)
    if head in _TIFF_MAGIC:
        try:
            import tifffile
        except ImportError:
            raise ImportError("Reading TIFF images needs tifffile: pip install 'hf-magma[tiff]'") from None
        return np.asarray(tifffile.imread(source))
    import PIL.Image

    with PIL.Image.open(source) as image:
        return np.asarray(image)


def channel_array(value: Any, num_channels: int) -> np.ndarray:
    """What a dataset column holds (array, tensor, nested list, path, bytes, ``{"bytes", "path"}``, PIL image) as
    float32 (num_channels, H, W) on the scale of `unit_scale`.

    Raises ``ValueError``/``OSError`` (caught as unreadable images by the collators) for data that is not an image
    of ``num_channels`` channels.
    """
    import PIL.Image

    value = entry_source(value)
    if isinstance(value, (bytes, bytearray)):
        array = _read_file(io.BytesIO(value))
    elif isinstance(value, (str, os.PathLike)):
        array = _read_file(value)
    elif isinstance(value, PIL.Image.Image):
        array = np.asarray(value)
    elif isinstance(value, torch.Tensor):
        array = value.detach().cpu().numpy()
    else:
        array = np.asarray(value)
    return np.ascontiguousarray(unit_scale(to_chw(array, num_channels)))


def _unit_pixels(value: Any, num_channels: int) -> np.ndarray:
    """An image as (C, H, W) floats as the model's transform reads it before normalising (8-bit PIL images / 255)."""
    if uses_float_pixels(num_channels):
        return channel_array(value, num_channels)
    from .decoding import decode_image, to_pil

    return to_chw(np.asarray(to_pil(decode_image(value), num_channels), dtype=np.float32) / 255.0, num_channels)


def channel_statistics(values: Iterable[Any], num_channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the pixels of ``values`` (images as `channel_array` reads them).

    Args:
        values: the images (e.g. a seeded sample of the training split's image column); 1- and 3-channel ones are
            read as the 8-bit path reads them, divided by 255.
        num_channels: the model's channels.
    Returns:
        ``(mean, std)``: ``num_channels`` floats each (the population std over every pixel; 1.0 for a constant
        channel, so that normalising never divides by 0).
    """
    total = np.zeros(num_channels)
    squares = np.zeros(num_channels)
    count = 0
    for value in values:
        array = _unit_pixels(value, num_channels).astype(np.float64)
        total += array.sum(axis=(1, 2))
        squares += (array**2).sum(axis=(1, 2))
        count += array.shape[1] * array.shape[2]
    if count == 0:
        raise ValueError("no images to compute --image_mean / --image_std auto on")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.tolist(), [float(s) if s > 1e-12 else 1.0 for s in std]


def sample_images(dataset: Any, image_column: str, count: int, seed: int) -> list[Any]:
    """``count`` images of ``dataset`` drawn without replacement with ``seed`` (a streamed one: its first
    ``count``), for `channel_statistics`."""
    if not hasattr(dataset, "__len__"):
        return [example[image_column] for example in dataset.take(count)]
    picked = np.random.default_rng(seed).choice(len(dataset), size=min(count, len(dataset)), replace=False)
    column = dataset.select(np.sort(picked).tolist())[image_column]
    return list(column)


def resolve_image_statistics(
    data_args: Any, dataset: Any, image_column: str, num_channels: int, current: tuple[Any, Any], seed: int
) -> tuple[list[float], list[float]] | None:
    """The statistics a run normalises with: ``--image_mean`` / ``--image_std`` as given, computed on a seeded sample
    of ``dataset`` for ``auto``, or None to keep ``current`` (the image processor's ``image_mean``, ``image_std``).

    Raises ``ValueError`` naming the options when neither fits a model of ``num_channels`` channels.
    """
    mean, std = data_args.image_statistics()
    if mean == "auto":
        images = sample_images(dataset, image_column, data_args.image_stats_samples, seed)
        mean, std = channel_statistics(images, num_channels)
        return mean, std
    if mean is not None:
        if len(mean) not in (1, num_channels):
            raise ValueError(f"--image_mean / --image_std have {len(mean)} values each, the model has {num_channels} "
                             f"channels: give {num_channels} values each (or one), or auto")
        return mean * (num_channels // len(mean)), std * (num_channels // len(std))
    if uses_float_pixels(num_channels) and len(current[0]) not in (1, num_channels):
        raise ValueError(
            f"The model has {num_channels} channels but the image processor's statistics have {len(current[0])} "
            f"values: give --image_mean and --image_std with {num_channels} values each, or --image_mean auto"
        )
    return None

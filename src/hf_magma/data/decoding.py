"""Decoding what a dataset column holds (files, bytes, arrays, 16-bit and float images) into an image."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

logger = logging.getLogger(__name__)


def entry_source(value: Any) -> Any:
    """The bytes or path of a ``{"bytes", "path"}`` entry (as `datasets.Image` stores an undecoded image), the bytes
    when it has both; any other value as it is.

    Raises:
        ValueError: the entry holds neither bytes nor a path.
    """
    if not isinstance(value, Mapping):
        return value
    data, path = value.get("bytes"), value.get("path")
    if data is None and path is None:
        raise ValueError("the image entry holds neither bytes nor a path")
    return data if data is not None else path


def decode_image(value: Any) -> PIL.Image.Image | np.ndarray:
    """A PIL image or array from what a dataset column holds: PIL image, array, path, bytes or ``{"bytes", "path"}``.

    Files and bytes are turned upright by their EXIF orientation.

    Raises ``OSError``/``ValueError`` (from PIL) when the data is not a readable image.
    """
    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.numpy()
    value = entry_source(value)
    if isinstance(value, (bytes, bytearray)):
        value = io.BytesIO(value)
    elif isinstance(value, list):
        return np.asarray(value, dtype=np.uint8)
    image = PIL.Image.open(value)
    image.load()  # decode now, so that truncated files fail here and not later
    if image.getexif().get(PIL.Image.ExifTags.Base.Orientation, 1) != 1:
        # Upright, as `datasets.Image` decodes files and transformers' pipelines load them.
        image = PIL.ImageOps.exif_transpose(image)
    return image


# What PIL raises for a file that is not a readable image (truncated, corrupt, not an image, too large).
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError)


def image_name(value: Any) -> str:
    """A readable name for an image entry (its path when known), for log messages."""
    if isinstance(value, Mapping) and value.get("path"):
        return str(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    return f"<{type(value).__name__}>"


# PIL modes of one channel wider than 8 bits (16-bit PNGs, 32-bit integer and float TIFFs): PIL's own conversion
# to "L"/"RGB" clips them to 255 (16-bit: nearly white) or truncates them (floats in [0, 1]: black).
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def wide_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """An image wider than 8 bits as uint8: 16-bit modes divided by 257 (65535 -> 255); 32-bit
    integer and float images by their range: [0, 1] floats x 255, values up to 255 as they are, up to 65535
    divided by 257, larger ones scaled by their maximum.

    Args:
        array: the (H, W) pixels, or (H, W, C) for an array read as numpy.
        mode: the PIL mode they came in (e.g. ``"I;16"``, ``"F"``; ``"I"`` / ``"F"`` for integer / float arrays).
    Returns:
        The uint8 pixels, same shape.
    """
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"the {mode} image holds NaN or infinite pixel values")
    top = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16"):
        values = values / 257.0
    elif mode == "F" and top <= 1.0:
        values = values * 255.0
    elif top > 65535:
        values = values * (255.0 / top)
    elif top > 255:
        values = values / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def to_pil(image: PIL.Image.Image | np.ndarray, num_channels: int = 3) -> PIL.Image.Image:
    """Grey, RGBA (composited on white), palette and CMYK images as RGB; or as grey with ``num_channels=1``.

    16-bit, 32-bit integer and float images are scaled to 8 bits first (see `wide_to_uint8`)."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            # Scaled by their range like a PIL image of mode "F" or "I" (a uint16 array's 32896 is grey, not white).
            array = wide_to_uint8(array, "F" if np.issubdtype(array.dtype, np.floating) else "I")
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
    if image.mode in _WIDE_MODES:
        image = PIL.Image.fromarray(wide_to_uint8(np.asarray(image), image.mode))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(target)

"""Decode once, augment on the device: image datasets held in RAM as one uint8 tensor.

`decode_in_memory` turns a loaded split (`hf_magma.data.load_image_datasets`) into a uint8 (N, C, H, W) tensor
and its labels; `InMemoryImageDataset` serves whole batches of it by index (`__getitems__`), so the DataLoader
moves one uint8 slice per batch; `InMemoryCollator` passes those through. The augmentation then runs on the
batch on the training device (`hf_magma.data.crop.BatchImageTransform`, applied by `MAGMATrainer`).

The RAM budget (``--in_memory_max_gb``, 4 GiB by default, per process) is checked against N x C x H x W bytes
before anything is decoded: CIFAR-10/100 take 0.15 GiB, Tiny-ImageNet 1.2 GiB, STL-10's unlabelled split 2.6 GiB.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import Dataset

from .channels import channel_array, to_chw, unit_scale, uses_float_pixels
from .crop import BatchImageTransform
from .decoding import UNREADABLE_IMAGE_ERRORS, decode_image, image_name, to_pil
from .transforms import MAX_SKIPPED_SHARE, MIN_IMAGES_FOR_SHARE

logger = logging.getLogger(__name__)


class InMemoryUnsuitable(ValueError):
    """The data cannot be held in memory (streamed, over the budget, or images of different sizes)."""


def _as_chw(array: np.ndarray, num_channels: int) -> np.ndarray:
    """An (H, W), (H, W, C) or (N, H, W[, C]) uint8 array as (..., C, H, W) with C = 1 or 3."""
    if array.ndim in (2, 3) and not (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
        array = array[..., None]  # grey (H, W) or (N, H, W)
    if array.shape[-1] == 4:
        array = np.asarray(to_pil(array, 3)) if array.ndim == 3 else array[..., :3]
    if num_channels == 1 and array.shape[-1] == 3:
        array = np.asarray(to_pil(array, 1))[..., None] if array.ndim == 3 else array.mean(-1, keepdims=True)
    return np.ascontiguousarray(np.moveaxis(array.astype(np.uint8, copy=False), -1, -3))


def _decode_one(value: Any, num_channels: int) -> np.ndarray:
    image = decode_image(value)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 2:
        return image[None]  # grey arrays stay one channel; the transform repeats them for RGB models
    if isinstance(image, PIL.Image.Image) and image.mode == "L":
        return np.asarray(image)[None]
    return _as_chw(np.asarray(to_pil(image, num_channels)), num_channels)


def decode_in_memory(
    dataset: Dataset,
    image_column: str,
    label_column: str | None = None,
    *,
    num_channels: int = 3,
    max_bytes: float = 4 * 2**30,
    name: str = "training",
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Decode every image of ``dataset`` once.

    Grey images stay one channel (a model with three repeats it on the device); colour images become RGB, or
    grey for a one-channel model. Any other channel count is held as float32 on the scale of
    `hf_magma.data.channels.unit_scale` (4 bytes a value). Unreadable images are left out, counted and named in
    the log.

    Args:
        dataset: a map-style split with the image column undecoded or as arrays.
        image_column, label_column: the columns to read (labels optional).
        num_channels: the model's channels.
        max_bytes: the budget; raises `InMemoryUnsuitable` when the decoded images would exceed it.
        name: the split's name, for messages.

    Returns:
        ``(images, labels, skipped)``: uint8 (N, C, H, W) (float32 for other channel counts), long (N,) or None,
        the number of unreadable images.
    """
    if not isinstance(dataset, Dataset):
        raise InMemoryUnsuitable(f"the {name} split is streamed ({type(dataset).__name__}), not held in memory")
    column = dataset[image_column] if len(dataset) else []
    if uses_float_pixels(num_channels):
        return _decode_float(dataset, column, label_column, num_channels, max_bytes, name)
    if isinstance(column, np.ndarray) and column.dtype == np.uint8 and column.ndim >= 3:
        estimate = column.nbytes * (3 if column.ndim == 4 and num_channels == 3 else 1)
        _check_budget(estimate, max_bytes, name, len(dataset))
        images = torch.from_numpy(_as_chw(column, num_channels if column.ndim == 4 else 1))
        labels = _labels(dataset, label_column, None)
        return images, labels, 0
    # uint8, grey images kept at one channel until the end: the budget counts the three they may become
    arrays, kept = _decode_each(column, lambda value: _decode_one(value, num_channels),
                                lambda array: 3 * array.shape[1] * array.shape[2], max_bytes, name)
    channels = max(a.shape[0] for a in arrays)
    images = torch.from_numpy(np.stack([np.repeat(a, channels // a.shape[0], axis=0) for a in arrays]))
    skipped = len(dataset) - len(kept)
    return images, _labels(dataset, label_column, kept if skipped else None), skipped


def _decode_float(dataset: Dataset, column: Any, label_column: str | None, num_channels: int, max_bytes: float,
                  name: str) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """`decode_in_memory` for a channel count other than 1 or 3: float32 (N, C, H, W) on the documented scale."""
    if isinstance(column, np.ndarray) and column.ndim == 4:  # an array column read as numpy: converted at once
        _check_budget(4 * column[0].size * len(column), max_bytes, name, len(dataset))
        to_chw(column[0], num_channels)  # raises for a shape without an axis of num_channels
        images = np.moveaxis(column, -1, 1) if column.shape[-1] == num_channels else column
        return torch.from_numpy(np.ascontiguousarray(unit_scale(images))), _labels(dataset, label_column, None), 0
    arrays, kept = _decode_each(column, lambda value: channel_array(value, num_channels),
                                lambda array: 4 * array.size, max_bytes, name)
    skipped = len(dataset) - len(kept)
    return torch.from_numpy(np.stack(arrays)), _labels(dataset, label_column, kept if skipped else None), skipped


def _decode_each(column: Any, decode: Callable[[Any], np.ndarray], image_bytes: Callable[[np.ndarray], int],
                 max_bytes: float, name: str) -> tuple[list[np.ndarray], list[int]]:
    """Decode every image of ``column`` to a (C, H, W) array, skipping and naming the unreadable ones
    (`ImageCollator`'s rule, `_check_unreadable`); the budget is checked from the first image (``image_bytes`` of
    it, times the split's length). Returns the arrays and the indices they came from."""
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    unreadable: list[str] = []
    for index, value in enumerate(column):
        try:
            array = decode(value)
        except UNREADABLE_IMAGE_ERRORS as error:
            logger.warning("Skipping unreadable image %s (%s)", image_name(value), error)
            unreadable.append(image_name(value))
            continue
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            raise InMemoryUnsuitable(
                f"the {name} images differ in size ({image_name(value)} is {array.shape[2]}x{array.shape[1]}, "
                f"the first {arrays[0].shape[2]}x{arrays[0].shape[1]})"
            )
        if not arrays:
            _check_budget(image_bytes(array) * len(column), max_bytes, name, len(column))
        arrays.append(array)
        kept.append(index)
    _check_unreadable(unreadable, len(column), name)
    return arrays, kept


def _check_unreadable(unreadable: Sequence[str], total: int, name: str) -> None:
    """The rule of the per-image path (`hf_magma.data.transforms.ImageCollator`): stop when the split looks unreadable
    as a whole (no readable image, or more than half of at least 16 images) rather than for a few broken files."""
    if not unreadable:
        return
    if len(unreadable) == total or (total >= MIN_IMAGES_FOR_SHARE and len(unreadable) > MAX_SKIPPED_SHARE * total):
        raise ValueError(
            f"{len(unreadable)} of the {total} {name} images are unreadable, more than the {MAX_SKIPPED_SHARE:.0%} "
            f"allowed (e.g. {', '.join(unreadable[:3])}): the data is not readable as images. Check --train_dir / "
            "--dataset_name and --image_column_name, or remove the broken files."
        )


def _check_budget(estimate: float, max_bytes: float, name: str, count: int) -> None:
    if estimate > max_bytes:
        raise InMemoryUnsuitable(
            f"the {count} decoded {name} images need about {estimate / 2**30:.2f} GiB, more than --in_memory_max_gb "
            f"{max_bytes / 2**30:g}"
        )


def _labels(dataset: Dataset, label_column: str | None, kept: Sequence[int] | None) -> torch.Tensor | None:
    if label_column is None:
        return None
    values = np.asarray(dataset.with_format(None)[label_column], dtype=np.int64)
    return torch.from_numpy(values if kept is None else values[np.asarray(kept, dtype=np.int64)])


class InMemoryImageDataset(torch.utils.data.Dataset):
    """A map-style dataset over a uint8 (N, C, H, W) tensor; a batch of indices is one slice (`__getitems__`).

    Items and batches are ``{"pixel_values": uint8, "labels": long}`` (labels when given).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.dtype not in (torch.uint8, torch.float32) or images.dim() != 4:
            raise ValueError(f"`images` must be a uint8 (or, for channel counts other than 1 and 3, float32) "
                             f"(N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if labels is not None and labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"pixel_values": self.images[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"pixel_values": self.images[index]}
        if self.labels is not None:
            batch["labels"] = self.labels[index]
        return batch


class InMemoryCollator:
    """Collates `InMemoryImageDataset` batches: passes a batch through (from `__getitems__`) or stacks items.

    ``skipped`` is the number of images left out as unreadable when the data was decoded.
    """

    def __init__(self, skipped: int = 0) -> None:
        self.skipped = skipped

    def __call__(self, examples: Mapping[str, torch.Tensor] | Iterable[Mapping[str, torch.Tensor]]
                 ) -> dict[str, torch.Tensor]:
        if isinstance(examples, Mapping):
            return dict(examples)
        examples = list(examples)
        return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}


def load_in_memory(
    splits: Mapping[str, Any], data_args: Any, image_column: str, label_column: str | None, num_channels: int
) -> tuple[dict[str, InMemoryImageDataset], int] | None:
    """The training and validation splits decoded into memory, per ``data_args.in_memory`` (auto/true/false)
    and ``data_args.in_memory_max_gb``; returns ``(datasets, skipped training images)``, or None to decode in
    DataLoader workers instead. Raises ``ValueError`` with the reason when ``in_memory`` is true and it fails."""
    if data_args.in_memory == "false":
        return None
    budget = data_args.in_memory_max_gb * 2**30
    held: dict[str, InMemoryImageDataset] = {}
    skipped = 0
    try:
        for name in ("train", "validation"):
            if name not in splits:
                continue
            used = sum(d.images.numel() * d.images.element_size() for d in held.values())
            images, labels, lost = decode_in_memory(splits[name], image_column, label_column,
                                                    num_channels=num_channels, max_bytes=budget - used, name=name)
            held[name] = InMemoryImageDataset(images, labels)
            skipped += lost if name == "train" else 0
    except InMemoryUnsuitable as reason:
        if data_args.in_memory == "true":
            raise ValueError(f"--in_memory true: {reason}. Raise --in_memory_max_gb, or pass --in_memory false to "
                             "decode and augment in DataLoader workers.") from None
        logger.info("Images are decoded and augmented in DataLoader workers (--in_memory auto): %s", reason)
        return None
    total = sum(d.images.numel() * d.images.element_size() for d in held.values())
    logger.info("Images decoded once into memory (%.3f GiB, %s); batches are augmented on the training device",
                total / 2**30, ", ".join(f"{k} {tuple(v.images.shape)}" for k, v in held.items()))
    return held, skipped


SIMCLR_CROP_SCALE = (0.08, 1.0)


def augmentation_card_rows(crop: dict[str, Any], in_memory: bool) -> dict[str, str]:
    """The training augmentation as model-card rows."""
    return {
        "random resized crop": f"scale {list(crop['scale'])}, ratio {[round(r, 4) for r in crop['ratio']]}, bicubic"
        if crop["random_crop"] else "off (whole image resized)",
        "horizontal flip": f"p={crop['hflip']}" if crop["hflip"] > 0 else "off",
        "where": "decoded once in memory, augmented in batches on the training device" if in_memory
        else "decoded and augmented in DataLoader workers",
    }


def device_batch_transforms(
    statistics: tuple[tuple[int, int], list[float], list[float]],
    channels: int,
    crop: dict[str, Any],
    two_view_augmentation: dict[str, Any] | None,
    seed: int,
    device: torch.device,
) -> dict[str, Callable[[torch.Tensor, int], dict[str, torch.Tensor]]]:
    """`MAGMATrainer` batch transforms for uint8 batches (the in-memory path): MAE's augmentation with ``crop``
    (or two SimCLR views) for training, resize + centre crop for evaluation; all on ``device``."""
    base = BatchImageTransform(*statistics, train=False, num_channels=channels).to(device)
    if two_view_augmentation is not None:
        from .two_views import TwoViewAugmentation  # kornia: the `ssl` extra

        train_views = TwoViewAugmentation(*statistics, **{**crop, **two_view_augmentation})
        eval_views = TwoViewAugmentation(*statistics, **{**crop, **two_view_augmentation, "seed": seed})
        return {"train": train_views.batch_transform(base), "eval": eval_views.batch_transform(base)}
    augment = BatchImageTransform(*statistics, train=True, num_channels=channels, **crop).to(device)

    def train(pixels: torch.Tensor, batch_seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator(device=pixels.device).manual_seed(batch_seed)
        return {"pixel_values": augment(pixels, generator)}

    return {"train": train, "eval": lambda pixels, batch_seed: {"pixel_values": base(pixels)}}

"""MAE's single-image transforms (`ImageTransform`) and a collator that skips unreadable images instead of
stopping the run (`ImageCollator`).

Images are decoded (`hf_magma.data.decoding`) exactly once per access, in the DataLoader workers; a file that
cannot be decoded is dropped from its batch, counted and named in the log.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from .channels import channel_array, uses_float_pixels
from .crop import CROP_RATIO, MAE_CROP_SCALE, centre_boxes, check_transform_settings, resized_crop, sample_crop_boxes
from .decoding import UNREADABLE_IMAGE_ERRORS, decode_image, image_name, to_pil

logger = logging.getLogger(__name__)


class ImageTransform:
    """One image -> normalised float tensor (C, H, W) at the model's resolution.

    ``train=True`` is MAE's augmentation: a random resized crop (scale 0.2-1, aspect 3/4-4/3, bicubic) and a
    horizontal flip; ``train=False`` resizes the shorter side (bicubic) and centre-crops. Both normalise with
    ``mean``/``std``. Images become RGB, or grey when ``num_channels=1`` (then 3-value statistics are averaged).
    Done in PIL on single images, so it runs in the DataLoader workers; the crop boxes come from the package's
    one sampler, `hf_magma.data.crop.sample_crop_boxes` (``random_crop=False``: the whole image, resized).
    Any other channel count reads float arrays (`hf_magma.data.channels.channel_array`: TIFFs, array columns) and
    resamples them with torch (`hf_magma.data.crop.resized_crop`, bicubic, as the in-memory path does; evaluation:
    the largest centred box of the output's shape), then ``(x - mean) / std`` with no division by 255.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        train: bool = True,
        *,
        scale: tuple[float, float] = MAE_CROP_SCALE,
        ratio: tuple[float, float] = CROP_RATIO,
        hflip: float = 0.5,
        random_crop: bool = True,
        num_channels: int = 3,
    ) -> None:
        size, mean, std = check_transform_settings(image_size, mean, std, scale, ratio, num_channels)
        self.size = size  # (height, width)
        self.train = train
        self.scale, self.ratio, self.hflip, self.random_crop = tuple(scale), tuple(ratio), hflip, random_crop
        self.num_channels = num_channels
        self.float_pixels = uses_float_pixels(num_channels)
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
        if not self.random_crop:
            return 0.0, 0.0, float(width), float(height)
        # Drawn from Python's RNG (reseeded per DataLoader worker), leaving torch's stream to the model's masks.
        generator = torch.Generator().manual_seed(random.getrandbits(63))
        left, top, w, h = sample_crop_boxes(1, height, width, self.scale, self.ratio, generator=generator)[0].tolist()
        return left, top, left + w, top + h

    def _float_pixels(self, image: Any) -> np.ndarray:
        array = torch.from_numpy(channel_array(image, self.num_channels))[None]
        height, width = array.shape[-2:]
        flip = None
        if self.train:
            left, top, right, bottom = self._crop_box(width, height)
            box = torch.tensor([[left, top, right - left, bottom - top]])
            flip = torch.tensor([random.random() < self.hflip])
        else:
            box = centre_boxes(1, height, width, self.size)
        if self.train or (height, width) != self.size:
            array = resized_crop(array, box, self.size, flip)
        return array[0].permute(1, 2, 0).numpy()

    def pixels(self, image: Any) -> np.ndarray:
        """The decoded, converted, cropped (and, for training, augmented) image as a uint8 (H, W, C) array
        (float32 on the scale of `hf_magma.data.channels.unit_scale` for a channel count other than 1 or 3)."""
        if self.float_pixels:
            return self._float_pixels(image)
        image = to_pil(decode_image(image), self.num_channels)
        height, width = self.size
        if self.train:
            image = image.resize((width, height), PIL.Image.BICUBIC, box=self._crop_box(*image.size))
            if random.random() < self.hflip:
                image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
        else:
            # The side that limits the scale gets the target size, the other one int(target x its ratio): the
            # sizes of transformers' `shortest_edge` resize (and torchvision's), so that a ViT image processor
            # saved with these settings (`hf_magma.models.export.encoder_image_processor`) gives the same pixels.
            if width * image.height >= height * image.width:
                new_w, new_h = width, max(height, int(width * image.height / image.width))
            else:
                new_w, new_h = max(width, int(height * image.width / image.height)), height
            if (new_w, new_h) != image.size:
                image = image.resize((new_w, new_h), PIL.Image.BICUBIC)
            left, top = (new_w - width) // 2, (new_h - height) // 2
            image = image.crop((left, top, left + width, top + height))
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) arrays (or the float ones of other channel counts) -> normalised float (B, C, H, W),
        in one pass over the batch."""
        pixels = np.asarray(pixels)
        batch = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2)
        if pixels.dtype != np.uint8:
            return batch.sub_(self.mean).div_(self.std)
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


# The collator stops the run when more than this share of the images read so far were unreadable (counted from
# MIN_IMAGES_FOR_SHARE images on), or when more than MAX_EMPTY_BATCHES batches in a row held no readable image.
MAX_SKIPPED_SHARE = 0.5
MIN_IMAGES_FOR_SHARE = 16
MAX_EMPTY_BATCHES = 3


class ImageCollator:
    """Decodes and transforms a list of raw examples into ``{"pixel_values": (B, C, H, W)[, "labels": (B,)]}``.

    An image that cannot be read is left out of its batch, counted (across DataLoader workers) and named in the
    log; the run goes on. ``skipped`` is the number left out so far. When the data looks unreadable as a whole
    (more than ``max_skipped_share`` of the images read so far, counted from 16 images on, or more than
    ``max_empty_batches`` batches in a row without a readable image) it raises ``ValueError`` naming examples.
    """

    def __init__(self, transform: ImageTransform, image_column: str = "image", label_column: str | None = None,
                 *, max_skipped_share: float = MAX_SKIPPED_SHARE, max_empty_batches: int = MAX_EMPTY_BATCHES):
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        self.max_skipped_share = max_skipped_share
        self.max_empty_batches = max_empty_batches
        # Shared counters, so that workers' skips add up in the main process.
        context = multiprocessing.get_context()
        self._skipped = context.Value("q", 0)
        self._seen = context.Value("q", 0)
        self._empty_in_a_row = context.Value("q", 0)
        self._examples: list[str] = []

    @property
    def skipped(self) -> int:
        """How many unreadable images were left out so far."""
        return int(self._skipped.value)

    def _check_skipped(self, count: int, kept: int) -> None:
        """Stop when the data looks unreadable as a whole rather than for a few broken files."""
        with self._seen.get_lock():
            self._seen.value += count
            seen = self._seen.value
        with self._empty_in_a_row.get_lock():
            self._empty_in_a_row.value = self._empty_in_a_row.value + 1 if count and not kept else 0
            empty = self._empty_in_a_row.value
        skipped = self.skipped
        problem = None
        if empty > self.max_empty_batches:
            problem = f"{empty} batches in a row held no readable image"
        elif seen >= MIN_IMAGES_FOR_SHARE and skipped > self.max_skipped_share * seen:
            problem = (f"{skipped} of the {seen} images read so far were unreadable, more than the "
                       f"{self.max_skipped_share:.0%} allowed")
        if problem is not None:
            raise ValueError(
                f"{problem} (e.g. {', '.join(self._examples) or 'see the warnings above'}): the data is not readable "
                f"as images. Check --train_dir / --dataset_name and --image_column_name (now {self.image_column!r}), "
                "or remove the broken files."
            )

    def __call__(self, examples: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        examples = list(examples)
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
            except UNREADABLE_IMAGE_ERRORS as error:
                with self._skipped.get_lock():
                    self._skipped.value += 1
                    total = self._skipped.value
                logger.warning("Skipping unreadable image %s (%s); %d skipped so far", image_name(value), error, total)
                if len(self._examples) < 3:
                    self._examples.append(image_name(value))
                continue
            pixel_values.append(pixels)
            if self.label_column is not None:
                labels.append(int(example[self.label_column]))
        self._check_skipped(len(examples), len(pixel_values))
        if not pixel_values:
            channels, (height, width) = self.transform.num_channels, self.transform.size
            batch = {"pixel_values": torch.empty(0, channels, height, width)}
        else:
            batch = {"pixel_values": self.transform.normalize(np.stack(pixel_values))}
        if self.label_column is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

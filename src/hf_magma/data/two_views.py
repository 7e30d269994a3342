"""SimCLR-style two-view augmentation of image batches, on tensors with kornia (any device).

Each view is a random resized crop and a horizontal flip (the package's one crop, `hf_magma.data.crop`), then colour
jitter, random grayscale and Gaussian blur (kornia) of the same images, drawn independently per image and per
view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .crop import check_crop_settings, resized_crop, sample_crop_boxes


class RandomResizedCropFlip(nn.Module):
    """The package's random resized crop (`hf_magma.data.crop`) and horizontal flip on a float (B, C, H, W) batch in
    [0, 1], drawn from torch's global RNG on the batch's device; ``random_crop=False`` resizes the whole image."""

    def __init__(self, size: tuple[int, int], scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 random_crop: bool = True) -> None:
        super().__init__()
        self.size, self.scale, self.ratio, self.hflip, self.random_crop = size, scale, ratio, hflip, random_crop

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        if self.random_crop:
            boxes = sample_crop_boxes(batch, height, width, self.scale, self.ratio, device=images.device)
        else:
            boxes = torch.tensor([0.0, 0.0, width, height], device=images.device).expand(batch, 4)
        flip = torch.rand(batch, device=images.device) < self.hflip
        return resized_crop(images, boxes, self.size, flip)

try:
    import kornia.augmentation as K
except ImportError as error:  # an optional dependency: only SimCLR / VICReg training needs it
    raise ImportError(
        "The two-view augmentation of SimCLR / VICReg (hf_magma.data.two_views) needs kornia: "
        'pip install "hf-magma[ssl]"'
    ) from error


class TwoViewAugmentation(nn.Module):
    """Two independently augmented views of a normalised (B, C, H, W) batch, returned normalised.

    The batch is un-normalised with ``mean``/``std`` (those of the image transform that produced it), clamped
    to [0, 1], augmented, and normalised again. The defaults are SimCLR's (crop scale 0.08-1, jitter
    0.4/0.4/0.2/0.1 with probability 0.8, grayscale 0.2, blur 0.5 with sigma 0.1-2 and a kernel of about a
    tenth of the image). Grey images (one channel) get brightness and contrast jitter only.

    With ``seed`` the views are a reproducible sequence, independent of the global RNG (each DataLoader
    worker gets its own stream); without it they follow torch's global RNG, which the Trainer seeds.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        color_jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        random_crop: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if len(mean) not in (1, 3):
            raise ValueError(f"The two-view augmentation (colour jitter, greyscale) needs 1- or 3-channel images, got "
                             f"{len(mean)} values of `mean`: SimCLR / VICReg runs take --num_channels 1 or 3")
        size, mean, std = check_crop_settings(image_size, mean, std, scale, ratio)
        for name, p in (("hflip", hflip), ("color_jitter_p", color_jitter_p), ("grayscale_p", grayscale_p),
                        ("blur_p", blur_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"`{name}` is a probability and must lie in [0, 1], got {p}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"`blur_sigma` must satisfy 0 < min <= max, got {blur_sigma}")
        self.size = size
        self.num_channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        grey = self.num_channels == 1
        kernel = max(3, int(0.1 * min(size)) // 2 * 2 + 1)
        steps: list[nn.Module] = [
            RandomResizedCropFlip(size, scale, ratio, hflip, random_crop),
            K.ColorJitter(brightness, contrast, 0.0 if grey else saturation, 0.0 if grey else hue, p=color_jitter_p),
        ]
        if not grey:
            steps.append(K.RandomGrayscale(p=grayscale_p))
        steps.append(K.RandomGaussianBlur((kernel, kernel), blur_sigma, p=blur_p))
        self.pipeline = nn.Sequential(*steps)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _random_state(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self._generator is None:
            return contextlib.nullcontext()
        info = torch.utils.data.get_worker_info()
        draw = int(torch.randint(2**62, (1,), generator=self._generator))
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[device] if device.type == "cuda" else []))
        torch.manual_seed(draw + (info.id if info is not None else 0))
        return stack

    def batch_transform(self, base: nn.Module) -> Callable[[torch.Tensor, int], dict[str, torch.Tensor]]:
        """A `MAGMATrainer` batch transform: uint8 images -> ``base`` (e.g. the evaluation resize and centre crop,
        normalising with this augmentation's statistics) -> two views drawn from the given seed."""

        def transform(pixels: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
            images = base(pixels)
            with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
                torch.manual_seed(seed)
                view_1, view_2 = self._views(images)
            return {"pixel_values": view_1, "pixel_values_2": view_2}

        return transform

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            shape = (tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor)
                     else type(pixel_values).__name__)
            raise ValueError(f"`pixel_values` must be a (batch, channels, height, width) tensor, got {shape}")
        if not pixel_values.is_floating_point():
            raise TypeError(f"`pixel_values` must be a normalised float tensor, got {pixel_values.dtype}")
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"`pixel_values` has {pixel_values.shape[1]} channels but the augmentation was built for "
                f"{self.num_channels} (the length of `mean`/`std`)"
            )
        with self._random_state(pixel_values.device):
            return self._views(pixel_values)

    def _views(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.mean.to(pixel_values), self.std.to(pixel_values)
        images = (pixel_values * std + mean).clamp(0.0, 1.0)
        # Bicubic resampling overshoots a little; views stay in the images' value range.
        view_1 = self.pipeline(images).clamp(0.0, 1.0)
        view_2 = self.pipeline(images).clamp(0.0, 1.0)
        return (view_1 - mean) / std, (view_2 - mean) / std

    def extra_repr(self) -> str:
        return f"size={self.size}, num_channels={self.num_channels}, seed={self.seed}"


class TwoViewCollator:
    """Wraps an image collator (e.g. `ImageCollator`) so that a batch holds two views of its images.

    The wrapped collator returns ``{"pixel_values": (B, C, H, W), ...}`` normalised with the augmentation's
    statistics; this one replaces ``pixel_values`` by the first view, adds ``pixel_values_2`` and keeps the
    rest (labels). Augmenting the whole batch at once keeps kornia's work vectorised.
    """

    def __init__(
        self, collator: Callable[[Iterable[Mapping[str, Any]]], dict[str, torch.Tensor]],
        augmentation: TwoViewAugmentation,
    ) -> None:
        self.collator = collator
        self.augmentation = augmentation

    def __call__(self, examples: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = dict(self.collator(examples))
        if "pixel_values" not in batch:
            raise KeyError(f"the wrapped collator returned no `pixel_values`, only {list(batch)}")
        if batch["pixel_values"].shape[0] == 0:
            batch["pixel_values_2"] = batch["pixel_values"]
            return batch
        batch["pixel_values"], batch["pixel_values_2"] = self.augmentation(batch["pixel_values"])
        return batch

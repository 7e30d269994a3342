"""The random resized crop shared by every image augmentation of the package, and batched transforms on tensors.

One sampler (`sample_crop_boxes`, torchvision's algorithm, vectorised) draws the crop boxes for MAE's
single-view augmentation (on whole batches here, or per image in DataLoader workers for images of different
sizes) and for the two-view SSL augmentation. One resampler (`resized_crop`) cuts and resizes a batch with
bicubic interpolation on any device, with the horizontal flip folded into the same sampling grid.
`BatchImageTransform` is MAE's augmentation (or the evaluation resize + centre crop) on a uint8 batch that
lives on the training device: crop, flip, normalise, in a handful of kernels, with no host-device sync.

Depends on torch only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's number of tries before the centre-crop fallback
CROP_ATTEMPTS = 10
MAE_CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def check_crop_settings(
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: Sequence[float],
    ratio: Sequence[float],
    num_values: Sequence[int] = (1, 3),
) -> tuple[tuple[int, int], list[float], list[float]]:
    """Validate the settings shared by the image transforms; returns ``(size, mean, std)`` as (h, w) and floats.
    ``num_values``: the lengths ``mean`` and ``std`` may have."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"`image_size` must be a positive int or (height, width), got {image_size!r}")
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or len(mean) not in num_values:
        counts = " or ".join(str(n) for n in num_values)
        raise ValueError(f"`mean` and `std` (--image_mean / --image_std) need {counts} values each (one per channel), "
                         f"got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"`std` must be positive, got {std}")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"`scale` (--crop_scale) must be two numbers with 0 < min <= max <= 1, got {list(scale)}")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"`ratio` (--crop_ratio) must be two numbers with 0 < min <= max, got {list(ratio)}")
    return size, mean, std


def check_transform_settings(
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: Sequence[float],
    ratio: Sequence[float],
    num_channels: int,
) -> tuple[tuple[int, int], list[float], list[float]]:
    """`check_crop_settings` plus the model's channels: returns ``(size, mean, std)`` with one statistic per
    channel (3-value statistics averaged for a grey model, 1-value ones repeated for an RGB one or any other
    channel count)."""
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(f"`num_channels` (--num_channels) must be a positive integer, got {num_channels!r}")
    if num_channels not in (1, 3):
        if len(mean) not in (1, num_channels):
            raise ValueError(f"`mean` and `std` (--image_mean / --image_std) need {num_channels} values each for "
                             f"num_channels {num_channels}, got {list(mean)} and {list(std)}: give them, or "
                             "--image_mean auto")
        size, mean, std = check_crop_settings(image_size, mean, std, scale, ratio, (1, num_channels))
        return size, mean * num_channels if len(mean) == 1 else mean, std * num_channels if len(std) == 1 else std
    size, mean, std = check_crop_settings(image_size, mean, std, scale, ratio)
    if num_channels == 1 and len(mean) == 3:
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    elif num_channels == 3 and len(mean) == 1:
        mean, std = mean * 3, std * 3
    return size, mean, std


def sample_crop_boxes(
    n: int,
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    scale: Sequence[float] = MAE_CROP_SCALE,
    ratio: Sequence[float] = CROP_RATIO,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random resized crop boxes, torchvision's ``RandomResizedCrop.get_params`` drawn for ``n`` images at once.

    Each box covers a uniform fraction in ``scale`` of the image's area with a log-uniform aspect ratio in
    ``ratio``; of ``CROP_ATTEMPTS`` tries the first that fits inside the image is kept, at a uniform position.
    When none fits, the box is the whole image clamped to the allowed aspect ratios, centred. Boxes are in
    continuous pixel coordinates (not rounded). Drawing needs no host-device sync.

    Args:
        n: number of boxes.
        height, width: the images' size, one int for all or a (n,) tensor per image.
        scale, ratio: (min, max) of the area fraction and of the aspect ratio (width / height).
        generator: the random stream (default: torch's global one for ``device``).
        device: where the boxes are drawn and returned.

    Returns:
        (n, 4) float32 tensor of ``(left, top, width, height)``.
    """
    height = torch.as_tensor(height, dtype=torch.float32, device=device).expand(n)
    width = torch.as_tensor(width, dtype=torch.float32, device=device).expand(n)
    device = height.device
    uniform = torch.rand(4, n, CROP_ATTEMPTS, generator=generator, device=device)
    area = (height * width)[:, None] * (scale[0] + (scale[1] - scale[0]) * uniform[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * uniform[1])
    w = torch.sqrt(area * aspect)
    h = torch.sqrt(area / aspect)
    fits = (w <= width[:, None]) & (h <= height[:, None])
    # The first attempt that fits (argmax of a bool picks the first True); rows with none take the fallback.
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    left = (width - w) * uniform[2].gather(1, first)[:, 0]
    top = (height - h) * uniform[3].gather(1, first)[:, 0]

    in_ratio = width / height
    fallback_w = torch.where(in_ratio > ratio[1], height * ratio[1], width)
    fallback_h = torch.where(in_ratio < ratio[0], width / ratio[0], height)
    w = torch.where(any_fit, w, fallback_w)
    h = torch.where(any_fit, h, fallback_h)
    left = torch.where(any_fit, left, (width - fallback_w) / 2)
    top = torch.where(any_fit, top, (height - fallback_h) / 2)
    return torch.stack([left, top, w, h], dim=1)


def centre_boxes(n: int, height: int, width: int, size: tuple[int, int], device: torch.device | None = None
                 ) -> torch.Tensor:
    """The evaluation crop as boxes: the largest centred box with the output's aspect ratio (resize the shorter
    side to the output, centre-crop). Returns (n, 4) ``(left, top, width, height)``."""
    out_h, out_w = size
    factor = min(height / out_h, width / out_w)
    w, h = out_w * factor, out_h * factor
    box = torch.tensor([(width - w) / 2, (height - h) / 2, w, h], dtype=torch.float32, device=device)
    return box.expand(n, 4)


def resized_crop(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut ``boxes`` out of ``images`` and resize them to ``size`` (bicubic), mirroring the rows of ``flip``.

    A box is sampled at output-pixel centres (as PIL's ``resize(box=...)``); samples falling outside the image
    repeat its border. Downscaling is not antialiased, so it suits crops no more than about twice the output.

    Args:
        images: (B, C, H, W) floating-point tensor.
        boxes: (B, 4) ``(left, top, width, height)`` in pixels, e.g. from `sample_crop_boxes`.
        size: the output's (height, width).
        flip: optional (B,) bool tensor; True mirrors that output left-right.

    Returns:
        (B, C, size[0], size[1]) tensor of the images' dtype.
    """
    batch, _, height, width = images.shape
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    left, top, w, h = boxes.unbind(dim=1)
    # Output coordinate u in [-1, 1] (align_corners=False) -> input x = left + (u + 1) / 2 * w, normalised.
    x_scale, y_scale = w / width, h / height
    if flip is not None:
        x_scale = torch.where(flip.to(images.device), -x_scale, x_scale)
    theta = torch.zeros(batch, 2, 3, dtype=torch.float32, device=images.device)
    theta[:, 0, 0] = x_scale
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = y_scale
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [batch, 1, *size], align_corners=False)
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    return F.grid_sample(images.to(dtype), grid.to(dtype), mode="bicubic", padding_mode="border",
                         align_corners=False).to(images.dtype)


class BatchImageTransform(nn.Module):
    """MAE's augmentation (or the evaluation transform) on a whole batch of images, on the batch's device.

    uint8 (B, C, H, W) -> normalised float (B, C', h, w). With ``train=True``: a random resized crop
    (``scale``, ``ratio``; bicubic) or, with ``random_crop=False``, the whole image resized, then a horizontal
    flip with probability ``hflip``; with ``train=False``: resize the shorter side and centre-crop. Grey input
    is repeated to three channels for an RGB model, RGB averaged for a grey one. Then ``(x / 255 - mean) / std``.
    The result is clamped to the pixel range before normalising (bicubic overshoots a little).
    A model of any other channel count takes float (B, C, H, W) batches already on the scale of
    `hf_magma.data.channels.unit_scale`: resampled the same way, not clamped, then ``(x - mean) / std``.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        train: bool = True,
        *,
        scale: Sequence[float] = MAE_CROP_SCALE,
        ratio: Sequence[float] = CROP_RATIO,
        hflip: float = 0.5,
        random_crop: bool = True,
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 0 <= hflip <= 1:
            raise ValueError(f"`hflip` is a probability and must lie in [0, 1], got {hflip}")
        size, mean, std = check_transform_settings(image_size, mean, std, scale, ratio, num_channels)
        self.size, self.train_mode, self.num_channels = size, train, num_channels
        self.scale, self.ratio, self.hflip, self.random_crop = tuple(scale), tuple(ratio), hflip, random_crop
        self.float_pixels = num_channels not in (1, 3)
        # Folded into one multiply-add: (x / 255 - mean) / std = x * a + b.
        mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        self.register_buffer("_scale", 1.0 / ((1.0 if self.float_pixels else 255.0) * std_t), persistent=False)
        self.register_buffer("_shift", -mean_t / std_t, persistent=False)
        self.mean, self.std = mean, std

    def boxes(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The (B, 4) crop boxes this transform cuts out of ``images`` (random ones when training)."""
        batch, _, height, width = images.shape
        if not self.train_mode:
            return centre_boxes(batch, height, width, self.size, images.device)
        if not self.random_crop:
            return torch.tensor([0.0, 0.0, width, height], device=images.device).expand(batch, 4)
        return sample_crop_boxes(batch, height, width, self.scale, self.ratio, generator=generator,
                                 device=images.device)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Args: images: uint8 (or [0, 255] float) (B, C, H, W); generator: the random stream (default: torch's
        global one on the images' device). Returns: normalised float32 (B, num_channels, h, w)."""
        if self.float_pixels:
            return self._forward_float(images, generator)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected a (batch, 1 or 3 channels, height, width) tensor, got {tuple(images.shape)}")
        pixels = images.float()
        if pixels.shape[1] == 3 and self.num_channels == 1:
            pixels = pixels.mean(dim=1, keepdim=True)
        boxes = self.boxes(images, generator)
        flip = None
        if self.train_mode and self.hflip > 0:
            flip = torch.rand(images.shape[0], generator=generator, device=images.device) < self.hflip
        identity = not self.train_mode and tuple(images.shape[-2:]) == self.size
        if not identity:  # resampled before grey becomes RGB: a third of the work
            pixels = resized_crop(pixels, boxes, self.size, flip).clamp_(0.0, 255.0)
        if pixels.shape[1] != self.num_channels:
            pixels = pixels.expand(-1, 3, -1, -1)
        return torch.addcmul(self._shift.to(pixels.device), pixels, self._scale.to(pixels.device))

    def _forward_float(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.num_channels:
            raise ValueError(f"expected a (batch, {self.num_channels} channels, height, width) tensor, got "
                             f"{tuple(images.shape)}")
        pixels = images.float()
        boxes = self.boxes(images, generator)
        flip = None
        if self.train_mode and self.hflip > 0:
            flip = torch.rand(images.shape[0], generator=generator, device=images.device) < self.hflip
        if self.train_mode or tuple(images.shape[-2:]) != self.size:
            pixels = resized_crop(pixels, boxes, self.size, flip)
        return torch.addcmul(self._shift.to(pixels.device), pixels, self._scale.to(pixels.device))

    def settings(self) -> dict[str, object]:
        """The augmentation as readable settings (for the model card)."""
        return {"random resized crop": f"scale {list(self.scale)}, ratio {[round(r, 4) for r in self.ratio]}"
                if self.random_crop else "off (whole image resized)",
                "horizontal flip": f"p={self.hflip}" if self.hflip > 0 else "off"}

    def extra_repr(self) -> str:
        return (f"size={self.size}, train={self.train_mode}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, random_crop={self.random_crop}, num_channels={self.num_channels}")

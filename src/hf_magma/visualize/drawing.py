"""What every figure shares: the optional plotting packages (imported only when a figure is drawn), PNG writing,
class colours, and images and patch-grid maps prepared for display."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

VIZ_EXTRA_HINT = "pip install 'hf-magma[viz]'"


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"Drawing figures needs matplotlib, which is not installed: {VIZ_EXTRA_HINT}") from err
    return Figure


def _pacmap_class():
    try:
        from pacmap import PaCMAP
    except ImportError as err:
        raise ImportError(f"PaCMAP plots need the `pacmap` package, which is not installed: {VIZ_EXTRA_HINT}") from err
    return PaCMAP


def _save(fig, output_path: str | os.PathLike, dpi: int) -> Path:
    path = Path(output_path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Figures are written as PNG; `output_path` must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the PNG is exactly figsize * dpi pixels, as documented.
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _class_colors(num_classes: int) -> list:
    from matplotlib import colormaps

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(num_classes - 1, 1)) for i in range(num_classes)]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)



def images_for_display(
    pixel_values: torch.Tensor,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """(B, C, H, W) model inputs -> (B, H, W, 3) floats in [0, 1]: un-normalised with mean/std when given,
    else stretched per image; one channel is repeated to grey RGB.

    Args:
        pixel_values: (B, C, H, W) model inputs.
        image_mean, image_std: the normalisation to undo (1 or C values each).
        channels: the channels shown as red, green, blue (three indices) or as grey (one); default the first
            three (the one channel of grey images).

    Returns:
        (B, H, W, 3) floats in [0, 1].
    """
    x = pixel_values.detach().float().cpu()
    if channels is not None:
        channels = [int(c) for c in channels]
        if len(channels) not in (1, 3) or not all(0 <= c < x.shape[1] for c in channels):
            raise ValueError(f"the channels shown must be 1 or 3 indices among 0..{x.shape[1] - 1} of the "
                             f"{x.shape[1]}-channel images, got {channels}")
    if (image_mean is None) != (image_std is None):
        raise ValueError("Pass both `image_mean` and `image_std`, or neither")
    if image_mean is not None:
        mean = torch.as_tensor(image_mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = torch.as_tensor(image_std, dtype=x.dtype).reshape(1, -1, 1, 1)
        if mean.shape[1] not in (1, x.shape[1]) or std.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"`image_mean`/`image_std` must have 1 or {x.shape[1]} values")
        x = (x * std + mean).clamp(0, 1)
    else:
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-12)
    if channels is not None:
        x = x[:, channels]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x[:, :3]
    return x.permute(0, 2, 3, 1).numpy()


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (..., rows, cols) patch-grid maps to the image's (H, W)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *size)


def _normalise(m: np.ndarray) -> np.ndarray:
    low, high = float(m.min()), float(m.max())
    return (m - low) / (high - low) if high > low else np.zeros_like(m)

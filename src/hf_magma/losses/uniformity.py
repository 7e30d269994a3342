"""U-MAE's uniformity term on L2-normalised features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .magma import check_matrix, compute_dtype


def uniformity_loss(features: torch.Tensor) -> torch.Tensor:
    """U-MAE's uniformity term: ``mean((F F^T) ** 2)`` over L2-normalised rows, diagonal included.

    Args:
        features: (B, D), e.g. the encoder's CLS output after its final LayerNorm.

    Returns:
        A scalar tensor in [1/B, 1] (float32, or float64 for float64 input).
    """
    check_matrix("features", features)
    with torch.autocast(device_type=features.device.type, enabled=False):
        normed = F.normalize(features.to(compute_dtype(features)), dim=-1)
        return (normed @ normed.T).pow(2).mean()

"""Self-supervised objectives on two views: SimCLR's NT-Xent and VICReg.

Both take the projector outputs of the two views of one batch, ``z1`` and ``z2`` (B, D), row ``i`` of each
coming from the same image. They are computed in float32 (float64 stays float64), also under autocast, and
over the local batch: with several processes each one contrasts / regularises its own batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..utils.checks import check_non_negative, check_number
from .magma import check_matrix, compute_dtype

SSL_OBJECTIVES: tuple[str, ...] = ("simclr", "vicreg")


def _check_pair(z1: torch.Tensor, z2: torch.Tensor, min_batch: int) -> None:
    check_matrix("z1", z1)
    check_matrix("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(f"`z1` and `z2` must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < min_batch:
        raise ValueError(f"the objective needs a batch of at least {min_batch} samples, got {z1.shape[0]}")


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy over the 2B embeddings of a batch.

    Each of the 2B L2-normalised embeddings is classified among the 2B - 1 others (itself excluded) by
    cosine similarity / ``temperature``; its positive is the other view of the same image. Returns the mean
    over the 2B anchors.
    """
    _check_pair(z1, z2, min_batch=1)
    check_number("temperature", temperature, sign="positive")
    batch_size = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).to(compute_dtype(z1)), dim=-1)
        logits = z @ z.T / temperature
        self_mask = torch.eye(2 * batch_size, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        index = torch.arange(batch_size, device=z.device)
        positives = torch.cat([index + batch_size, index])
        return F.cross_entropy(logits, positives)


class VICRegLossOutput(NamedTuple):
    """VICReg's weighted total and its three unweighted parts."""

    loss: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def _off_diagonal_square_sum(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.pow(2).sum() - matrix.diagonal().pow(2).sum()


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
) -> VICRegLossOutput:
    """VICReg (Bardes et al., 2022) as in its reference implementation.

    - invariance: mean squared error between ``z1`` and ``z2``;
    - variance: for each view, the mean over features of ``relu(1 - sqrt(var + eps))`` (unbiased variance over
      the batch), averaged over the two views;
    - covariance: for each view, the sum of the squared off-diagonal entries of the feature covariance divided
      by the number of features, summed over the two views.

    ``loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance``.
    """
    _check_pair(z1, z2, min_batch=2)
    for name, value in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
        check_non_negative(name, value)
    check_number("eps", eps, sign="positive")  # keeps the std's gradient finite
    batch_size, num_features = z1.shape
    with torch.autocast(device_type=z1.device.type, enabled=False):
        x, y = z1.to(compute_dtype(z1)), z2.to(compute_dtype(z2))
        invariance = F.mse_loss(x, y)
        variance = x.new_zeros(())
        covariance = x.new_zeros(())
        for z in (x, y):
            z = z - z.mean(dim=0)
            std = torch.sqrt(z.var(dim=0) + eps)
            variance = variance + F.relu(1.0 - std).mean() / 2
            cov = z.T @ z / (batch_size - 1)
            covariance = covariance + _off_diagonal_square_sum(cov) / num_features
        loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    return VICRegLossOutput(loss, invariance, variance, covariance)

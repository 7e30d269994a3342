"""Class labels as tensors: their checks, the class count of labelled splits and seeded per-class sampling (the
label fractions of the evaluation, the images of the PaCMAP figure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def check_labels(name: str, labels: torch.Tensor, length: int | None = None) -> None:
    """Raise ``ValueError`` unless ``labels`` is a 1-D tensor of non-negative integer class ids (of ``length``)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"`{name}` must be a 1-D tensor of class ids, got {shape}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class ids, got dtype {labels.dtype}")
    if length is not None and labels.shape[0] != length:
        raise ValueError(f"`{name}` has {labels.shape[0]} labels for {length} feature rows")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"`{name}` holds negative class ids (min {labels.min().item()})")


def class_count(*labels: torch.Tensor) -> int:
    """The number of classes that labels ``0..C-1`` spread over several splits need: the largest id + 1."""
    return int(max(split.max() for split in labels)) + 1


def sample_per_class(
    labels: torch.Tensor | np.ndarray,
    per_class: int | None,
    *,
    classes: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    strict: bool = False,
) -> torch.Tensor:
    """Sorted indices of at most ``per_class`` examples of each class, drawn by a seeded per-class permutation.

    Args:
        labels: (N,) integer class ids.
        per_class: examples kept per class (``None``: all of them).
        classes: the classes to draw from (default: every class present, in increasing order).
        seed: the draws are reproducible, and a smaller ``per_class`` gives a subset of a larger one.
        strict: raise ``ValueError`` for a class with fewer than ``per_class`` examples instead of keeping all.

    Returns:
        (M,) int64 indices into ``labels``, increasing.
    """
    labels = torch.as_tensor(labels).cpu()
    classes = labels.unique(sorted=True).tolist() if classes is None else [int(c) for c in classes]
    generator = torch.Generator().manual_seed(seed)
    picked = [torch.zeros(0, dtype=torch.long)]
    for cls in classes:
        members = (labels == cls).nonzero(as_tuple=True)[0]
        if per_class is None:
            picked.append(members)
            continue
        if strict and members.numel() < per_class:
            raise ValueError(
                f"class {cls} has {members.numel()} examples, fewer than the {per_class} per class asked for"
            )
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(picked).sort().values

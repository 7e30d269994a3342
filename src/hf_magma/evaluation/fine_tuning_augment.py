"""The training-batch augmentations of MAE-style fine-tuning: RandAugment (kornia), mixup and CutMix with label
smoothing (timm's ``Mixup`` in its ``batch`` mode), and stochastic depth on transformers' ViT blocks.

They run on a collated batch (`FineTuningCollator` wraps `hf_magma.data.transforms.ImageCollator`, which skips,
counts and names unreadable images), so mixed targets reach the loss as (B, num_labels) probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..data.transforms import ImageCollator


def smooth_one_hot(labels: torch.Tensor, num_labels: int, smoothing: float = 0.0) -> torch.Tensor:
    """Class indices (B,) -> (B, num_labels) targets: ``1 - smoothing + smoothing / num_labels`` on the class,
    ``smoothing / num_labels`` elsewhere (each row sums to one).

    Args:
        labels: integer class indices.
        num_labels: the number of classes.
        smoothing: label smoothing in [0, 1).

    Returns:
        Float targets.
    """
    off = smoothing / num_labels
    targets = torch.full((labels.shape[0], num_labels), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)


def mix_batch(
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch with its reversed copy, one draw per batch (timm's ``Mixup``, ``mode="batch"``).

    Mixup blends whole images with a weight ``lam ~ Beta(mixup_alpha)``; CutMix pastes a box of the partner image
    whose area is ``1 - lam`` of the image (``lam ~ Beta(cutmix_alpha)``, the box clipped at the border and ``lam``
    corrected to the area actually pasted). Targets are ``lam x own + (1 - lam) x partner`` smoothed one-hot rows.
    Draws come from torch's global RNG.

    Args:
        pixel_values: (B, C, H, W) images.
        labels: (B,) class indices.
        num_labels: the number of classes.
        mixup_alpha: mixup's Beta parameter (0: no mixup).
        cutmix_alpha: CutMix's Beta parameter (0: no CutMix).
        prob: the probability that the batch is mixed at all.
        switch_prob: with both on, the probability of CutMix rather than mixup.
        smoothing: label smoothing of the targets.

    Returns:
        The mixed images (a new tensor) and (B, num_labels) targets whose rows sum to one.
    """
    targets = smooth_one_hot(labels, num_labels, smoothing)
    images = pixel_values.clone()
    lam = 1.0
    if (mixup_alpha > 0 or cutmix_alpha > 0) and float(torch.rand(())) < prob:
        use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or float(torch.rand(())) < switch_prob)
        alpha = cutmix_alpha if use_cutmix else mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        partner = pixel_values.flip(0)
        if use_cutmix:
            height, width = images.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            cut_h, cut_w = int(height * cut), int(width * cut)
            cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
            top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
            left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
            images[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        else:
            images.mul_(lam).add_(partner, alpha=1.0 - lam)
    return images, targets.mul(lam).add_(targets.flip(0), alpha=1.0 - lam)


class BatchRandAugment:
    """kornia's RandAugment on a (B, C, H, W) batch in [0, 1], a fresh draw of operations per group of images.

    kornia draws the operations once per call, so the batch is augmented in groups of ``group_size`` images
    (1: a draw per image, as MAE's timm RandAugment). Grey images are augmented as three equal channels and
    averaged back (the colour operations then change nothing, as on a grey PIL image).
    """

    def __init__(self, num_ops: int, magnitude: int, group_size: int = 1) -> None:
        try:
            from kornia.augmentation.auto import RandAugment
        except ImportError as error:
            raise ImportError('--rand_augment_ops needs kornia: pip install "hf-magma[train]"') from error
        self.augment = RandAugment(n=num_ops, m=magnitude)
        self.group_size = group_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.shape[1] == 1
        colour = images.expand(-1, 3, -1, -1) if grey else images
        out = torch.cat([self.augment(group) for group in colour.split(self.group_size)])
        return out.mean(1, keepdim=True) if grey else out


class FineTuningCollator:
    """`ImageCollator`'s batch (unreadable images skipped, counted and named), then RandAugment and mixup / CutMix.

    RandAugment works on the un-normalised pixels (the collator's transform gives ``mean`` and ``std``); with
    mixing on, ``labels`` become (B, num_labels) targets, smoothed by ``smoothing``.
    """

    def __init__(
        self,
        collator: ImageCollator,
        num_labels: int,
        *,
        rand_augment: BatchRandAugment | None = None,
        mixing: Mapping[str, float] | None = None,
        smoothing: float = 0.0,
    ) -> None:
        self.collator = collator
        self.num_labels = num_labels
        self.rand_augment = rand_augment
        self.mixing = dict(mixing) if mixing else None
        self.smoothing = smoothing

    @property
    def skipped(self) -> int:
        """How many unreadable images were left out so far."""
        return self.collator.skipped

    def __call__(self, examples: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        images = batch["pixel_values"]
        if images.shape[0] == 0:
            if self.mixing is not None:
                batch["labels"] = torch.zeros(0, self.num_labels)
            return batch
        if self.rand_augment is not None:
            mean, std = self.collator.transform.mean, self.collator.transform.std
            images = (self.rand_augment(images.mul(std).add_(mean).clamp_(0, 1)) - mean) / std
        if self.mixing is not None:
            images, batch["labels"] = mix_batch(images, batch["labels"], self.num_labels, smoothing=self.smoothing,
                                                **self.mixing)
        batch["pixel_values"] = images
        return batch


class DropPath(nn.Module):
    """Stochastic depth: zeroes a residual branch for a random ``rate`` of the images, rescaling the others."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return hidden_states
        keep = 1.0 - self.rate
        mask = hidden_states.new_empty((hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)).bernoulli_(keep)
        return hidden_states * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


def add_drop_path(model: nn.Module, rate: float) -> list[float]:
    """Stochastic depth on a transformers ViT: block i's rate is ``rate x i / (L - 1)`` (timm's linear rule).

    transformers' ``ViTLayer`` applies its ``dropout`` to the attention and the MLP branch just before each
    residual sum, so ``dropout`` becomes ``Sequential(dropout, DropPath)``: the same branches timm drops, no
    weight renamed.

    Args:
        model: a `ViTForImageClassification` or `ViTModel` (blocks at ``vit.layers`` or ``layers``).
        rate: the last block's rate, in [0, 1).

    Returns:
        The rate of each block.
    """
    layers = getattr(getattr(model, "vit", model), "layers", None)
    if layers is None or not all(isinstance(getattr(layer, "dropout", None), nn.Dropout) for layer in layers):
        raise ValueError(
            f"--drop_path_rate needs transformers' ViT blocks (a `dropout` before each residual sum, transformers "
            f">= 5); {type(model).__name__} has none: set --drop_path_rate 0"
        )
    count = len(layers)
    rates = [rate * i / (count - 1) if count > 1 else rate for i in range(count)]
    for layer, block_rate in zip(layers, rates, strict=True):
        layer.dropout = nn.Sequential(layer.dropout, DropPath(block_rate)).train(layer.training)
    return rates

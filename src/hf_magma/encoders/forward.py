"""The one unmasked, in-order forward of a ViT / ViT-MAE encoder (`run_unmasked`) and pooled features of a batch
(`encode`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import nn
from transformers import ViTMAEModel

from ..losses.pooling import IMAGE_POOLINGS, ImagePooling, pool_hidden_state
from .loading import Encoder, load_encoder

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _unmasked(encoder: Encoder):
    """Temporarily set a ViT-MAE encoder's mask ratio to 0 (restored afterwards: the model may be in training)."""
    if not isinstance(encoder, ViTMAEModel):
        yield
        return
    config = encoder.embeddings.config
    saved = config.mask_ratio
    config.mask_ratio = 0.0
    try:
        yield
    finally:
        config.mask_ratio = saved


def patch_grid(
    model: nn.Module, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False
) -> tuple[int, int]:
    """(rows, columns) of the patch grid that ``pixel_values`` (B, C, H, W) gives, checking it fits the model.

    Args:
        model: a ViT / ViT-MAE encoder or a model holding one as ``.vit``.
        pixel_values: images of shape (B, C, H, W) with the model's channels and image size (with
            ``interpolate_pos_encoding``: any size that is a multiple of the patch size).
        interpolate_pos_encoding: accept another size than the model's (its position embeddings interpolated).

    Returns:
        ``(H // patch_height, W // patch_width)``.
    """
    config = load_encoder(model).config
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"`pixel_values` must be a (B, C, H, W) tensor (batch, channels, height, width), got {shape}"
        )
    _, channels, height, width = pixel_values.shape
    if channels != config.num_channels:
        raise ValueError(f"`pixel_values` has {channels} channels, the model expects {config.num_channels}")
    image_size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    patch = config.patch_size if isinstance(config.patch_size, (tuple, list)) else (config.patch_size,) * 2
    if interpolate_pos_encoding:
        if height % patch[0] or width % patch[1]:
            raise ValueError(f"`pixel_values` are {height}x{width}: another image size than the model's must be a "
                             f"multiple of its patch size {patch[0]}x{patch[1]}")
    elif (height, width) != tuple(image_size):
        raise ValueError(f"`pixel_values` are {height}x{width}, the model expects {image_size[0]}x{image_size[1]} "
                         "(pass interpolate_pos_encoding=True, or --image_size to run_eval.py, for another size)")
    return height // patch[0], width // patch[1]


def run_unmasked(
    model: nn.Module, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False, **kwargs: Any
) -> Any:
    """The encoder's output on every patch of ``pixel_values``, in the original order and with nothing masked.

    The encoder (``model`` itself or its ``.vit``) runs in eval mode on the images moved to its device and dtype;
    its training mode is restored afterwards, as is a ViT-MAE encoder's mask ratio (the model may be in
    training). A ViT-MAE encoder runs with its mask ratio at 0 and an increasing ``noise``, since it shuffles
    tokens by ``argsort(noise)`` even with nothing masked; the returned ``ids_restore`` is checked to be the
    identity. Gradients follow the caller's grad mode.

    Args:
        model: a ViT / ViT-MAE encoder or a model holding one as ``.vit`` (``ViTMAEWithMAGMA``...).
        pixel_values: images of shape (B, C, H, W) that fit the model (checked by `patch_grid`).
        interpolate_pos_encoding: run at another size than the model's, with its position embeddings
            interpolated (transformers' ``interpolate_pos_encoding``).
        **kwargs: passed to the encoder (e.g. ``output_attentions=True``, ``output_hidden_states=True``).

    Returns:
        The encoder's output; ``last_hidden_state`` is (B, 1 + P, D): the CLS token, then the P patches row by row.
    """
    encoder = load_encoder(model)
    rows, columns = patch_grid(encoder, pixel_values, interpolate_pos_encoding)
    kwargs["interpolate_pos_encoding"] = interpolate_pos_encoding
    parameter = next(encoder.parameters())
    pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        if not isinstance(encoder, ViTMAEModel):
            return encoder(pixel_values=pixel_values, **kwargs)
        num_patches = rows * columns
        order = torch.arange(num_patches, device=pixel_values.device).expand(pixel_values.shape[0], num_patches)
        with _unmasked(encoder):
            outputs = encoder(pixel_values=pixel_values, noise=order.float(), **kwargs)
    finally:
        encoder.train(was_training)
    if outputs.ids_restore is None or not torch.equal(outputs.ids_restore, order):
        raise RuntimeError("The encoder reordered the patch tokens although order-preserving noise was passed")
    return outputs


def encode(
    encoder: nn.Module, pixel_values: torch.Tensor, pooling: ImagePooling = "cls",
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """Pooled features of one batch: all patches, in their original order, no masking (`run_unmasked`).

    Args:
        encoder: a ViT / ViT-MAE encoder or a model holding one as ``.vit``.
        pixel_values: images of shape (B, C, H, W).
        pooling: ``cls``, the CLS token after the final LayerNorm; ``mean``, the mean of the patch tokens after it.
        interpolate_pos_encoding: images at another size than the model's (see `run_unmasked`).

    Returns:
        Features of shape (B, D).
    """
    if pooling not in IMAGE_POOLINGS:
        raise ValueError(f"`pooling` must be one of {IMAGE_POOLINGS}, got {pooling!r}")
    outputs = run_unmasked(encoder, pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
    return pool_hidden_state(outputs.last_hidden_state, pooling)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype

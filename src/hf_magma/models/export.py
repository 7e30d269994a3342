"""A pretraining checkpoint's encoder as a plain `vit` checkpoint, for feature extraction with transformers alone.

A `vit_mae` checkpoint cannot serve frozen features through the standard APIs: `AutoModel` gives a `ViTMAEModel`
that masks with the saved ``mask_ratio`` (0.75) and, even at 0, returns the patch tokens in a random order. So every
checkpoint (and the final model) also holds ``encoder/``: a `ViTModel` with the same encoder weights and an image
processor that prepares images as the evaluation does (shorter side resized, bicubic, centre crop). There,
``pipeline("image-feature-extraction", model=..., model_kwargs={"subfolder": "encoder"})`` and
``AutoModel.from_pretrained(..., subfolder="encoder")`` return the CLS token then every patch token in order,
after the final LayerNorm, the same on every call (images with transparency aside: the pipeline's `load_image`
drops the alpha channel, while the image processor and the evaluation paint transparent pixels white). The pooler
is the identity: ``pooler_output`` (the pipeline's ``pool=True``) is the CLS feature that ``run_eval.py --pooling
cls`` uses. The checkpoint's root stays the whole
`vit_mae` model, so continuing pretraining from it still masks ``mask_ratio`` of the patches. SimCLR / VICReg
checkpoints (`ViTForSSL`, a `vit` root with its projector and no trained pooler) carry the same ``encoder/``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import ViTConfig, ViTMAEConfig, ViTModel
from transformers.image_utils import PILImageResampling

ENCODER_SUBFOLDER = "encoder"
# ViTConfig fields that a ViT-MAE config carries with the same meaning.
_SHARED_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps", "image_size",
    "patch_size", "num_channels", "qkv_bias",
)


def vit_config_from(config: ViTMAEConfig | ViTConfig, **overrides: Any) -> ViTConfig:
    """A `ViTConfig` with the encoder architecture of ``config`` (a ViT-MAE or ViT config) and ``overrides``."""
    values = {name: getattr(config, name) for name in _SHARED_FIELDS}
    values.update(overrides)
    return ViTConfig(**values)


def vit_encoder_from(config: ViTMAEConfig | ViTConfig, state_dict: Mapping[str, torch.Tensor]) -> ViTModel:
    """A `ViTModel` holding the encoder weights of a ViT-MAE or `ViTForSSL` ``state_dict`` (keys ``vit.*``; the
    decoder's or projector's are left out), loaded strictly.

    Its pooler is the identity on the CLS token (``pooler_act="linear"``), so ``pooler_output`` equals
    ``last_hidden_state[:, 0]``. Raises ``ValueError`` when the weights do not make a whole encoder.
    """
    vit_config = vit_config_from(config, pooler_act="linear")
    vit_config.architectures = ["ViTModel"]
    encoder = ViTModel(vit_config, add_pooling_layer=True)
    weights = {key[len("vit."):]: value for key, value in state_dict.items() if key.startswith("vit.")}
    weights["pooler.dense.weight"] = torch.eye(config.hidden_size)
    weights["pooler.dense.bias"] = torch.zeros(config.hidden_size)
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"the ViT-MAE weights do not make a ViT encoder: missing {missing}, unexpected {unexpected}")
    return encoder.eval()


def encoder_image_processor(image_processor: Any, image_size: int, num_channels: int = 3) -> Any:
    """A copy of ``image_processor`` that prepares images as the evaluation's transform does: the shorter side
    resized to ``image_size`` (bicubic), a centre crop of ``image_size`` squared, grey / RGBA images to RGB. For a
    channel count other than 1 or 3 it only normalises: it takes float arrays already scaled as the training read
    them (`hf_magma.data.channels.unit_scale`) and at the model's size, with ``input_data_format`` given.
    (transformers resizes float arrays through 8-bit PIL images, which would quantise 16-bit and float data.)"""
    processor = copy.deepcopy(image_processor)
    processor.size = {"shortest_edge": image_size}
    processor.do_resize = True
    processor.do_center_crop = True
    processor.crop_size = {"height": image_size, "width": image_size}
    processor.resample = PILImageResampling.BICUBIC
    processor.do_convert_rgb = num_channels == 3
    if num_channels not in (1, 3):
        processor.do_rescale = False
        processor.do_resize = False
        processor.do_center_crop = False
    return processor


def save_encoder(
    config: ViTMAEConfig | ViTConfig,
    state_dict: Mapping[str, torch.Tensor],
    output_dir: str | os.PathLike,
    image_processor: Any = None,
) -> Path:
    """Write the plain `vit` encoder of a ViT-MAE or `ViTForSSL` model (its ``config`` and ``state_dict``) and the
    matching image processor to ``output_dir/encoder``; returns that folder."""
    folder = Path(output_dir) / ENCODER_SUBFOLDER
    encoder = vit_encoder_from(config, state_dict)
    encoder.save_pretrained(folder)
    if image_processor is not None:
        encoder_image_processor(image_processor, config.image_size, config.num_channels).save_pretrained(folder)
    return folder

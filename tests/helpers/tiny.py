"""Tiny model configs shared by the tests and their subprocess workers (the conftest fixtures wrap them)."""

from __future__ import annotations

from transformers import ViTConfig, ViTMAEConfig

#: A two-block ViT on 16x16 images in 4x4 patches: small enough for any test on a CPU.
TINY_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4
)
#: The matching one-block MAE decoder.
TINY_DECODER = dict(
    decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64
)


def tiny_overrides(decoder: bool = True, **overrides) -> str:
    """``--config_overrides`` text of `TINY_VIT` (+ `TINY_DECODER` unless ``decoder=False``), with ``overrides``."""
    values = {**TINY_VIT, **(TINY_DECODER if decoder else {}), **overrides}
    return ",".join(f"{key}={value}" for key, value in values.items())


def tiny_vit_mae_config(**overrides) -> ViTMAEConfig:
    """`TINY_VIT` + `TINY_DECODER` as a `ViTMAEConfig`, with ``overrides`` (any config attribute) applied."""
    return ViTMAEConfig(**{**TINY_VIT, **TINY_DECODER, **overrides})


def tiny_vit_config(**overrides) -> ViTConfig:
    """`TINY_VIT` as a `ViTConfig`, with ``overrides`` applied."""
    return ViTConfig(**{**TINY_VIT, **overrides})

"""Layer-wise learning-rate decay for fine-tuning a `ViTForImageClassification`, as MAE's ``param_groups_lrd``
(``util/lr_decay.py``): layer 0 is the embeddings, 1..L the blocks, L + 1 the final LayerNorm and the
classifier; a parameter of layer ``i`` learns at ``lr x decay^(L + 1 - i)``."""

from __future__ import annotations

import re
from typing import Any

from torch import nn

_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")
# Parameters MAE keeps out of weight decay besides biases and norms (its `no_weight_decay`).
NO_WEIGHT_DECAY = ("cls_token", "position_embeddings", "mask_token")


def layer_id(name: str, num_layers: int) -> int:
    """The layer of a `ViTForImageClassification` parameter: 0 embeddings, i + 1 block ``layers.i``, else L + 1.

    Args:
        name: the parameter's name in ``model.named_parameters()``.
        num_layers: L, the number of transformer blocks.

    Returns:
        An integer in 0..L + 1.
    """
    if name.startswith("vit.embeddings.") or name.startswith("embeddings."):
        return 0
    block = _BLOCK.search(name)
    if block is not None:
        return int(block.group(1)) + 1
    return num_layers + 1


def param_groups_layer_decay(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with MAE's layer-wise learning-rate decay and its weight-decay exclusions.

    Args:
        model: a `ViTForImageClassification` (its ``config.num_hidden_layers`` blocks at ``vit.layers``).
        learning_rate: the rate of layer L + 1 (the final LayerNorm and the classifier).
        weight_decay: applied to matrices; biases, norms (every 1-d parameter), the CLS token and the position
            embeddings get none.
        layer_decay: the factor per layer, in (0, 1].

    Returns:
        One group per (layer, decay or not) holding parameters, with ``lr``, ``weight_decay``, ``lr_scale`` and
        ``layer_id``; frozen parameters are left out.
    """
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_id(name, num_layers)
        decays = parameter.ndim > 1 and not name.endswith(NO_WEIGHT_DECAY)
        if (layer, decays) not in groups:
            scale = layer_decay ** (num_layers + 1 - layer)
            groups[layer, decays] = {"params": [], "lr": learning_rate * scale, "lr_scale": scale,
                                     "weight_decay": weight_decay if decays else 0.0, "layer_id": layer}
        groups[layer, decays]["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]

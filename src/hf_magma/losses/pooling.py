"""How a layer's (B, T, D) tokens are pooled into one (B, D) representation per sample."""

from __future__ import annotations

from typing import Literal

import torch

# How `pool_hidden_state` (and so `MAGMARegularizer`) pools any model's tokens, text models included.
HiddenStatePooling = Literal["mean", "cls", "masked_mean"]


HIDDEN_STATE_POOLINGS: tuple[str, ...] = ("mean", "cls", "masked_mean")


# The poolings of an image encoder's tokens, which carry no attention mask: frozen features, SSL representations.
ImagePooling = Literal["cls", "mean"]


IMAGE_POOLINGS: tuple[str, ...] = ("cls", "mean")


def _masked_mean(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def pool_hidden_state(
    hidden_state: torch.Tensor,
    pooling: HiddenStatePooling = "mean",
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool one layer's (B, T, D) tokens into (B, D).

    ``mean``: mean over the tokens after the first (the CLS token is excluded), only those where
    ``attention_mask`` is 1 when it is given; ``cls``: the first token; ``masked_mean``: mean over the tokens where
    ``attention_mask`` is 1, all of them (text models). A mask must have shape (B, T).
    """
    if hidden_state.dim() != 3:
        raise ValueError(f"hidden states must have shape (batch, tokens, features), got {tuple(hidden_state.shape)}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(hidden_state.shape[:2]):
        raise ValueError(
            f"`attention_mask` must have shape (batch, tokens) = {tuple(hidden_state.shape[:2])} like the hidden "
            f"states, got {tuple(attention_mask.shape)}"
        )
    if pooling == "mean":
        if hidden_state.shape[1] < 2:
            raise ValueError("`mean` pooling excludes the CLS token and needs at least one other token")
        if attention_mask is not None:
            return _masked_mean(hidden_state[:, 1:], attention_mask[:, 1:])
        return hidden_state[:, 1:].mean(dim=1)
    if pooling == "cls":
        return hidden_state[:, 0]
    if pooling == "masked_mean":
        if attention_mask is None:
            return hidden_state.mean(dim=1)
        return _masked_mean(hidden_state, attention_mask)
    raise ValueError(f"`pooling` must be one of {HIDDEN_STATE_POOLINGS}, got {pooling!r}")

"""What the encoders attend to: the first principal component of the attention keys per block (paper Fig. 5) and
the last block's CLS attention per head (paper Fig. 6), computed on the unmasked, in-order forward."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..encoders.forward import patch_grid, run_unmasked
from ..encoders.loading import load_encoder
from .drawing import _figure_class, _normalise, _save, images_for_display, upsample_maps


@contextlib.contextmanager
def _attention_implementation(model: nn.Module, implementation: str) -> Iterator[None]:
    previous = model.config._attn_implementation
    if previous == implementation:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)



def first_principal_component(tokens: torch.Tensor) -> torch.Tensor:
    """Scores of the first principal component of ``tokens`` (..., N, D) over its N rows -> (..., N).

    The sign of a principal component is arbitrary; it is fixed so that the row with the largest absolute score
    is positive (scikit-learn's ``svd_flip`` convention on the scores), which makes the result invariant to
    negating the input.
    """
    x = tokens.double()
    x = x - x.mean(dim=-2, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    scores = u[..., 0] * s[..., :1]
    peak = scores.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(scores.gather(-1, peak))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (scores * sign).to(tokens.dtype)


def _layer_indices(num_layers: int, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    picked = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int) or not -num_layers <= i < num_layers:
            raise ValueError(f"Layer {i!r} is not a block index of a {num_layers}-block encoder")
        picked.append(i % num_layers)
    if not picked:
        raise ValueError("`layers` is empty")
    return picked


def attention_keys(
    model: nn.Module, pixel_values: torch.Tensor, layers: Sequence[int] | None = None
) -> dict[int, torch.Tensor]:
    """The attention keys (``k_proj`` outputs, all heads concatenated) of the patch tokens, per block.

    Returns ``{block index: (B, num_patches, D)}`` with the patches in their original row-major order (CLS
    dropped), captured by forward hooks while the encoder runs unmasked.
    """
    encoder = load_encoder(model)
    picked = _layer_indices(len(encoder.layers), layers)
    captured: dict[int, torch.Tensor] = {}

    def hook_for(index: int):
        def hook(module, args, output):
            captured[index] = output.detach()

        return hook

    handles = [encoder.layers[i].attention.k_proj.register_forward_hook(hook_for(i)) for i in picked]
    try:
        with torch.no_grad():
            run_unmasked(model, pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    return {i: captured[i][:, 1:, :].float().cpu() for i in picked}


def key_pca_maps(model: nn.Module, pixel_values: torch.Tensor, layers: Sequence[int] | None = None) -> torch.Tensor:
    """First principal component of each block's patch keys, per image, on the patch grid: (B, layers, rows, cols).

    PCA is fitted per image and per block over that image's patches (the sign convention is that of
    `first_principal_component`).
    """
    rows, cols = patch_grid(model, pixel_values)
    keys = attention_keys(model, pixel_values, layers)
    maps = [first_principal_component(k).reshape(len(k), rows, cols) for k in keys.values()]
    return torch.stack(maps, dim=1)


# --------------------------------------------------------------------------------------------------------------
# Attention maps (paper Fig. 6)
# --------------------------------------------------------------------------------------------------------------


def attention_probabilities(model: nn.Module, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Softmax attention of one block (default the last) on the unmasked image: (B, heads, 1 + P, 1 + P).

    Computed with the eager attention implementation (the only one that returns the weights), restoring the
    model's own afterwards. Each row sums to one.
    """
    encoder = load_encoder(model)
    (index,) = _layer_indices(len(encoder.layers), [layer])
    with _attention_implementation(encoder, "eager"), torch.no_grad():
        outputs = run_unmasked(model, pixel_values, output_attentions=True)
    attentions = outputs.attentions
    if attentions is None or attentions[index] is None:
        raise RuntimeError(f"{type(encoder).__name__} returned no attention weights with output_attentions=True")
    return attentions[index].detach().float().cpu()


def cls_attention_maps(model: nn.Module, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """How much the CLS token attends to each patch, per head, on the patch grid: (B, heads, rows, cols)."""
    rows, cols = patch_grid(model, pixel_values)
    probs = attention_probabilities(model, pixel_values, layer)
    return probs[:, :, 0, 1:].reshape(probs.shape[0], probs.shape[1], rows, cols)



def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not models:
        raise ValueError("`models` is empty: pass {name: model}")
    for _name, model in models.items():
        load_encoder(model)


def _image_rows(
    Figure: type, maps: Mapping[str, torch.Tensor], shown: Sequence, size: tuple[int, int], ncols: int,
    panel_size: float,
) -> tuple[Any, Any, Iterator[tuple[int, str, Any, Any]]]:
    """The grid both plots draw: one row per (image, checkpoint), the image in the first column, ticks off.

    Returns the figure, its axes and an iterator of ``(image index, checkpoint name, row axes, maps upsampled to
    size)``; each row's panels beyond ``1 + len(maps)`` are hidden once the caller has drawn it.
    """
    nrows = len(shown) * len(maps)
    fig = Figure(figsize=(panel_size * ncols, panel_size * (nrows + 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)

    def rows() -> Iterator[tuple[int, str, Any, Any]]:
        for i in range(len(shown)):
            for j, (name, m) in enumerate(maps.items()):
                row = axes[i * len(maps) + j]
                up = upsample_maps(m[i], size).numpy()
                row[0].imshow(shown[i])
                yield i, name, row, up
                for ax in row:
                    ax.set_xticks([])
                    ax.set_yticks([])
                for ax in row[1 + up.shape[0] :]:
                    ax.set_axis_off()

    return fig, axes, rows()


def plot_key_pca(
    models: Mapping[str, nn.Module],
    pixel_values: torch.Tensor,
    output_path: str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    display_channels: Sequence[int] | None = None,
    panel_size: float = 1.4,
    cmap: str = "viridis",
    dpi: int = 100,
) -> dict[str, torch.Tensor]:
    """Key PCA heat maps: for each image, one row per checkpoint with the image then one panel per block.

    Each panel is the first principal component of that block's attention keys over the image's patches,
    upsampled bilinearly to the image and min-max scaled; ``display_channels`` picks the image's channels shown
    (`images_for_display`). The PNG is ``dpi * panel_size * (1 + layers)`` by
    ``dpi * panel_size * images * checkpoints`` pixels (plus ``dpi * panel_size * 0.3`` for the column titles).
    Returns ``{name: (B, layers, rows, cols)}``, the maps before upsampling.
    """
    Figure = _figure_class()
    _check_models(models)
    maps = {name: key_pca_maps(model, pixel_values, layers) for name, model in models.items()}
    blocks = {name: _layer_indices(len(load_encoder(m).layers), layers) for name, m in models.items()}
    shown = images_for_display(pixel_values, image_mean, image_std, display_channels)
    num_images = len(pixel_values)
    ncols = 1 + max(len(b) for b in blocks.values())
    fig, axes, rows = _image_rows(Figure, maps, shown, tuple(pixel_values.shape[-2:]), ncols, panel_size)
    for i, name, row, up in rows:
        row[0].set_ylabel(f"{name}\nimage {i}" if num_images > 1 else name, fontsize=8)
        for k in range(len(blocks[name])):
            row[k + 1].imshow(_normalise(up[k]), cmap=cmap, vmin=0, vmax=1)
    axes[0][0].set_title("image", fontsize=8)
    for k, block in enumerate(max(blocks.values(), key=len)):
        axes[0][k + 1].set_title(f"layer {block + 1}", fontsize=8)
    fig.suptitle("First principal component of the attention keys", fontsize=9)
    _save(fig, output_path, dpi)
    return maps


def plot_attention_maps(
    models: Mapping[str, nn.Module],
    pixel_values: torch.Tensor,
    output_path: str | os.PathLike,
    *,
    layer: int = -1,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    display_channels: Sequence[int] | None = None,
    alpha: float = 0.6,
    panel_size: float = 1.4,
    cmap: str = "inferno",
    dpi: int = 100,
) -> dict[str, torch.Tensor]:
    """CLS-to-patch attention of every head of the last block, upsampled and overlaid on the image.

    For each image, one row per checkpoint: the image (its ``display_channels``, `images_for_display`), then one
    panel per head (each min-max scaled). The PNG is
    ``dpi * panel_size * (1 + heads)`` by ``dpi * panel_size * (images * checkpoints + 0.3)`` pixels. Returns
    ``{name: (B, heads, rows, cols)}``, the attention before upsampling.
    """
    Figure = _figure_class()
    _check_models(models)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}")
    maps = {name: cls_attention_maps(model, pixel_values, layer) for name, model in models.items()}
    shown = images_for_display(pixel_values, image_mean, image_std, display_channels)
    num_images = len(pixel_values)
    ncols = 1 + max(m.shape[1] for m in maps.values())
    block = {name: _layer_indices(len(load_encoder(m).layers), [layer])[0] for name, m in models.items()}
    fig, axes, rows = _image_rows(Figure, maps, shown, tuple(pixel_values.shape[-2:]), ncols, panel_size)
    for i, name, row, up in rows:
        label = f"{name}\nlayer {block[name] + 1}"
        row[0].set_ylabel(f"{label}, image {i}" if num_images > 1 else label, fontsize=8)
        for h in range(up.shape[0]):
            row[h + 1].imshow(shown[i])
            row[h + 1].imshow(_normalise(up[h]), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    axes[0][0].set_title("image", fontsize=8)
    for h in range(ncols - 1):
        axes[0][h + 1].set_title(f"head {h + 1}", fontsize=8)
    fig.suptitle("CLS attention per head", fontsize=9)
    _save(fig, output_path, dpi)
    return maps

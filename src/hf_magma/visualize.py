"""Figures that compare checkpoints: PaCMAP with the Davies-Bouldin index, key PCA per layer, last-layer attention
maps and training curves (the paper's Figs. 2, 4, 5 and 6).

Each ``plot_*`` function writes one PNG with one panel (or one row of panels) per checkpoint and returns the
numbers it drew, so they can be checked or reported. matplotlib and pacmap are imported only when a figure is
drawn (``pip install 'hf-magma[viz]'``); figures are rendered with matplotlib's Agg canvas without touching
pyplot's global state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import evaluation
from .evaluation import POOLINGS, Pooling, extract_features, load_encoder
from .model_config import load_image_processor

logger = logging.getLogger(__name__)

VIZ_EXTRA_HINT = "pip install 'hf-magma[viz]'"

#: The metrics `plot_training_curves` draws by default, in panel order (paper Fig. 2 plus the MAE loss).
DEFAULT_CURVE_METRICS = ("reconstruction_loss", "magma_loss", "magma_weight", "online_accuracy")


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"Drawing figures needs matplotlib, which is not installed: {VIZ_EXTRA_HINT}") from err
    return Figure


def _pacmap_class():
    try:
        from pacmap import PaCMAP
    except ImportError as err:
        raise ImportError(f"PaCMAP plots need the `pacmap` package, which is not installed: {VIZ_EXTRA_HINT}") from err
    return PaCMAP


def _save(fig, output_path: str | os.PathLike, dpi: int) -> Path:
    path = Path(output_path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Figures are written as PNG; `output_path` must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the PNG is exactly figsize * dpi pixels, as documented.
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _class_colors(num_classes: int) -> list:
    from matplotlib import colormaps

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(num_classes - 1, 1)) for i in range(num_classes)]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------------------------
# PaCMAP + Davies-Bouldin (paper Fig. 4)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class PaCMAPPanel:
    """What one PaCMAP panel shows: the 2-D points, their labels and the scores in its title."""

    name: str
    embedding: np.ndarray  # (N, 2), the plotted points
    labels: np.ndarray  # (N,)
    davies_bouldin: float
    linear_accuracy: float | None = None


def select_classes(labels: Sequence[np.ndarray], num_classes: int, seed: int) -> np.ndarray:
    """Pick ``num_classes`` classes at random (seeded) among those present in every label array, sorted.

    All classes are kept when fewer exist. The same classes are shown for every checkpoint so panels compare.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2 (Davies-Bouldin needs two clusters), got {num_classes!r}"
        )
    common = set(np.unique(labels[0]).tolist())
    for lab in labels[1:]:
        common &= set(np.unique(lab).tolist())
    if len(common) < 2:
        raise ValueError(f"The checkpoints' labels share {len(common)} class(es); a PaCMAP panel needs at least two")
    classes = np.array(sorted(common))
    if len(classes) > num_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, size=num_classes, replace=False))
    return classes


def pacmap_embedding(
    features: torch.Tensor | np.ndarray,
    *,
    seed: int = 0,
    n_neighbors: int | None = None,
) -> np.ndarray:
    """Reduce ``features`` (N, D) to 2-D with PaCMAP (seeded, so the same input gives the same points)."""
    x = _to_numpy(features).astype(np.float32)
    if x.ndim != 2:
        raise ValueError(f"`features` must have shape (N, D), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("`features` contain NaN or infinite values")
    if len(x) < 4:
        raise ValueError(f"PaCMAP needs at least 4 points, got {len(x)}")
    PaCMAP = _pacmap_class()
    # PaCMAP's default neighbourhood (10, more above 10k points) must stay below the number of points.
    neighbors = n_neighbors if n_neighbors is not None else (None if len(x) > 60 else max(2, min(10, len(x) // 4)))
    pacmap_logger = logging.getLogger("pacmap.pacmap")
    level = pacmap_logger.level
    pacmap_logger.setLevel(logging.ERROR)  # it warns whenever a seed is given
    try:
        reducer = PaCMAP(n_components=2, n_neighbors=neighbors, random_state=seed)
    finally:
        pacmap_logger.setLevel(level)
    embedding = reducer.fit_transform(x, init="pca")
    return np.asarray(embedding, dtype=np.float64)


def plot_pacmap(
    checkpoints: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    output_path: str | os.PathLike,
    *,
    num_classes: int = 10,
    seed: int = 0,
    max_samples_per_class: int | None = 500,
    linear_accuracy: Mapping[str, float] | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    davies_bouldin_space: Literal["embedding", "features"] = "embedding",
    n_neighbors: int | None = None,
    panel_size: float = 4.0,
    legend_width: float = 1.6,
    dpi: int = 100,
) -> list[PaCMAPPanel]:
    """PaCMAP of ``{name: (features, labels)}`` for ``num_classes`` random classes, one panel per checkpoint.

    Each panel is titled with its name, the Davies-Bouldin index of its classes (lower is tighter, better separated
    clusters) and, when ``linear_accuracy[name]`` (a fraction in [0, 1]) is given, the linear-probe accuracy.
    The index is computed on the plotted 2-D PaCMAP points by default (``davies_bouldin_space="features"`` scores
    the selected features themselves). The PNG is ``dpi * (panel_size * len(checkpoints) + legend_width)`` by
    ``dpi * panel_size`` pixels.
    """
    from sklearn.metrics import davies_bouldin_score

    Figure = _figure_class()
    if not checkpoints:
        raise ValueError("`checkpoints` is empty: pass {name: (features, labels)}")
    if davies_bouldin_space not in ("embedding", "features"):
        raise ValueError(f"`davies_bouldin_space` must be 'embedding' or 'features', got {davies_bouldin_space!r}")
    linear_accuracy = dict(linear_accuracy or {})
    for name, acc in linear_accuracy.items():
        if name not in checkpoints:
            raise ValueError(
                f"`linear_accuracy` names {name!r}, which is not among the checkpoints {list(checkpoints)}"
            )
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"`linear_accuracy[{name!r}]` must be a fraction in [0, 1], got {acc}")
    if max_samples_per_class is not None and max_samples_per_class < 1:
        raise ValueError(f"`max_samples_per_class` must be positive or None, got {max_samples_per_class}")

    arrays = {}
    for name, pair in checkpoints.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"checkpoints[{name!r}] must be a (features, labels) pair")
        feats, labs = _to_numpy(pair[0]), _to_numpy(pair[1]).reshape(-1)
        if feats.ndim != 2 or len(feats) != len(labs):
            raise ValueError(
                f"checkpoints[{name!r}]: features must be (N, D) with one label each, "
                f"got {feats.shape} and {labs.shape}"
            )
        arrays[name] = (feats, labs)
    classes = select_classes([labs for _, labs in arrays.values()], num_classes, seed)

    panels = []
    for name, (feats, labs) in arrays.items():
        keep = sample_indices_per_class(labs, classes, max_samples_per_class, seed)
        x, y = feats[keep], labs[keep]
        embedding = pacmap_embedding(x, seed=seed, n_neighbors=n_neighbors)
        scored = embedding if davies_bouldin_space == "embedding" else x
        db = float(davies_bouldin_score(scored, y))
        panels.append(PaCMAPPanel(name, embedding, y, db, linear_accuracy.get(name)))

    names = _class_name_lookup(class_names)
    colors = _class_colors(len(classes))
    fig = Figure(figsize=(panel_size * len(panels) + legend_width, panel_size), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    space = "2-D" if davies_bouldin_space == "embedding" else "feat."
    point_size = max(2.0, min(12.0, 4000.0 / max(len(p.labels) for p in panels)))
    for ax, panel in zip(axes, panels):
        for color, c in zip(colors, classes):
            pts = panel.embedding[panel.labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=point_size, color=color, label=names(c), alpha=0.8, linewidths=0)
        title = f"{panel.name}\nDB ({space}) {panel.davies_bouldin:.2f}"
        if panel.linear_accuracy is not None:
            title += f" | linear {100 * panel.linear_accuracy:.1f}%"
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside right upper", title="class", fontsize=8,
        markerscale=max(1.0, 24 / point_size) ** 0.5,
    )
    _save(fig, output_path, dpi)
    return panels


def _class_name_lookup(class_names: Sequence[str] | Mapping[int, str] | None):
    def lookup(c) -> str:
        key = int(c) if isinstance(c, (np.integer, int)) else c
        if class_names is None:
            return str(key)
        try:
            return str(class_names[key])
        except (KeyError, IndexError, TypeError):
            return str(key)

    return lookup


# --------------------------------------------------------------------------------------------------------------
# Running a ViT / ViT-MAE encoder unmasked, in patch order
# --------------------------------------------------------------------------------------------------------------


def patch_grid(model: nn.Module, pixel_values: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of the patch grid that ``pixel_values`` (B, C, H, W) gives, checking it fits the model."""
    encoder = load_encoder(model)
    config = encoder.config
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`pixel_values` must be a (B, C, H, W) tensor, got {shape}")
    _, channels, height, width = pixel_values.shape
    if channels != config.num_channels:
        raise ValueError(f"`pixel_values` has {channels} channels, the model expects {config.num_channels}")
    image_size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    if (height, width) != tuple(image_size):
        raise ValueError(f"`pixel_values` are {height}x{width}, the model expects {image_size[0]}x{image_size[1]}")
    patch = config.patch_size if isinstance(config.patch_size, (tuple, list)) else (config.patch_size,) * 2
    return height // patch[0], width // patch[1]


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


@torch.no_grad()
def run_unmasked(model: nn.Module, pixel_values: torch.Tensor, **kwargs) -> Any:
    """`hf_magma.evaluation.run_unmasked` on ``model``'s encoder in eval mode, for images checked to fit it.

    The images are moved to the encoder's device and dtype; the encoder's training mode is restored afterwards.
    Returns the encoder's output (tokens: CLS first, then the patches row by row).
    """
    encoder = load_encoder(model)
    patch_grid(model, pixel_values)
    parameter = next(encoder.parameters())
    pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        return evaluation.run_unmasked(encoder, pixel_values, **kwargs)
    finally:
        encoder.train(was_training)


# --------------------------------------------------------------------------------------------------------------
# Key PCA (paper Fig. 5)
# --------------------------------------------------------------------------------------------------------------


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
    with _attention_implementation(encoder, "eager"):
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


# --------------------------------------------------------------------------------------------------------------
# Drawing images and maps
# --------------------------------------------------------------------------------------------------------------


def images_for_display(
    pixel_values: torch.Tensor, image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None
) -> np.ndarray:
    """(B, C, H, W) model inputs -> (B, H, W, 3) floats in [0, 1]: un-normalised with mean/std when given,
    else stretched per image; one channel is repeated to grey RGB."""
    x = pixel_values.detach().float().cpu()
    if (image_mean is None) != (image_std is None):
        raise ValueError("Pass both `image_mean` and `image_std`, or neither")
    if image_mean is not None:
        mean = torch.as_tensor(image_mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = torch.as_tensor(image_std, dtype=x.dtype).reshape(1, -1, 1, 1)
        if mean.shape[1] not in (1, x.shape[1]) or std.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"`image_mean`/`image_std` must have 1 or {x.shape[1]} values")
        x = (x * std + mean).clamp(0, 1)
    else:
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-12)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x[:, :3]
    return x.permute(0, 2, 3, 1).numpy()


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (..., rows, cols) patch-grid maps to the image's (H, W)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *size)


def _normalise(m: np.ndarray) -> np.ndarray:
    low, high = float(m.min()), float(m.max())
    return (m - low) / (high - low) if high > low else np.zeros_like(m)


def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not models:
        raise ValueError("`models` is empty: pass {name: model}")
    for name, model in models.items():
        load_encoder(model)


def plot_key_pca(
    models: Mapping[str, nn.Module],
    pixel_values: torch.Tensor,
    output_path: str | os.PathLike,
    *,
    layers: Sequence[int] | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    panel_size: float = 1.4,
    cmap: str = "viridis",
    dpi: int = 100,
) -> dict[str, torch.Tensor]:
    """Key PCA heat maps: for each image, one row per checkpoint with the image then one panel per block.

    Each panel is the first principal component of that block's attention keys over the image's patches,
    upsampled bilinearly to the image and min-max scaled. The PNG is ``dpi * panel_size * (1 + layers)`` by
    ``dpi * panel_size * images * checkpoints`` pixels (plus ``dpi * panel_size * 0.3`` for the column titles).
    Returns ``{name: (B, layers, rows, cols)}``, the maps before upsampling.
    """
    Figure = _figure_class()
    _check_models(models)
    maps = {name: key_pca_maps(model, pixel_values, layers) for name, model in models.items()}
    blocks = {name: _layer_indices(len(load_encoder(m).layers), layers) for name, m in models.items()}
    shown = images_for_display(pixel_values, image_mean, image_std)
    height, width = pixel_values.shape[-2:]
    num_images = len(pixel_values)
    ncols = 1 + max(len(b) for b in blocks.values())
    nrows = num_images * len(models)

    fig = Figure(figsize=(panel_size * ncols, panel_size * (nrows + 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i in range(num_images):
        for j, (name, m) in enumerate(maps.items()):
            row = axes[i * len(maps) + j]
            up = upsample_maps(m[i], (height, width)).numpy()
            row[0].imshow(shown[i])
            row[0].set_ylabel(f"{name}\nimage {i}" if num_images > 1 else name, fontsize=8)
            for k, block in enumerate(blocks[name]):
                row[k + 1].imshow(_normalise(up[k]), cmap=cmap, vmin=0, vmax=1)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in row[1 + len(blocks[name]) :]:
                ax.set_axis_off()
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
    alpha: float = 0.6,
    panel_size: float = 1.4,
    cmap: str = "inferno",
    dpi: int = 100,
) -> dict[str, torch.Tensor]:
    """CLS-to-patch attention of every head of the last block, upsampled and overlaid on the image.

    For each image, one row per checkpoint: the image, then one panel per head (each min-max scaled). The PNG is
    ``dpi * panel_size * (1 + heads)`` by ``dpi * panel_size * (images * checkpoints + 0.3)`` pixels. Returns
    ``{name: (B, heads, rows, cols)}``, the attention before upsampling.
    """
    Figure = _figure_class()
    _check_models(models)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}")
    maps = {name: cls_attention_maps(model, pixel_values, layer) for name, model in models.items()}
    shown = images_for_display(pixel_values, image_mean, image_std)
    height, width = pixel_values.shape[-2:]
    num_images = len(pixel_values)
    ncols = 1 + max(m.shape[1] for m in maps.values())
    nrows = num_images * len(maps)
    block = {name: _layer_indices(len(load_encoder(m).layers), [layer])[0] for name, m in models.items()}

    fig = Figure(figsize=(panel_size * ncols, panel_size * (nrows + 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i in range(num_images):
        for j, (name, m) in enumerate(maps.items()):
            row = axes[i * len(maps) + j]
            up = upsample_maps(m[i], (height, width)).numpy()
            row[0].imshow(shown[i])
            label = f"{name}\nlayer {block[name] + 1}"
            row[0].set_ylabel(f"{label}, image {i}" if num_images > 1 else label, fontsize=8)
            for h in range(up.shape[0]):
                row[h + 1].imshow(shown[i])
                row[h + 1].imshow(_normalise(up[h]), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in row[1 + up.shape[0] :]:
                ax.set_axis_off()
    axes[0][0].set_title("image", fontsize=8)
    for h in range(ncols - 1):
        axes[0][h + 1].set_title(f"head {h + 1}", fontsize=8)
    fig.suptitle("CLS attention per head", fontsize=9)
    _save(fig, output_path, dpi)
    return maps


# --------------------------------------------------------------------------------------------------------------
# Training curves (paper Fig. 2)
# --------------------------------------------------------------------------------------------------------------


def _checkpoint_step(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1


def find_trainer_state(path: str | os.PathLike) -> Path:
    """The ``trainer_state.json`` of a run: the file itself, the one in a directory, or that of its last checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "trainer_state.json").is_file():
        return path / "trainer_state.json"
    checkpoints = sorted(
        (p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").is_file()), key=_checkpoint_step
    )
    if checkpoints:
        return checkpoints[-1] / "trainer_state.json"
    raise FileNotFoundError(f"No trainer_state.json in {str(path)!r} or in its checkpoint-* folders")


def load_log_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``log_history`` list that `transformers.Trainer` saved in a run's ``trainer_state.json``."""
    state_path = find_trainer_state(path)
    with open(state_path) as f:
        state = json.load(f)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{str(state_path)!r} has no `log_history` list; is it a transformers trainer_state.json?")
    return history


def _series(history: Sequence[Mapping[str, Any]], metric: str, x_axis: str) -> tuple[np.ndarray, np.ndarray]:
    points = [
        (float(entry[x_axis]), float(entry[metric]))
        for entry in history
        if isinstance(entry.get(metric), (int, float)) and isinstance(entry.get(x_axis), (int, float))
    ]
    if not points:
        return np.empty(0), np.empty(0)
    xs, ys = np.array(points).T
    return xs, ys


def active_intervals(xs: np.ndarray, weights: np.ndarray) -> list[tuple[float, float]]:
    """The x intervals over which ``weights > 0``, each from its first to its last positive log point."""
    intervals = []
    start = None
    for k, (x, w) in enumerate(zip(xs, weights)):
        if w > 0 and start is None:
            start = x
        if start is not None and (w <= 0 or k == len(xs) - 1):
            end = x if w > 0 else xs[k - 1]
            intervals.append((float(start), float(end)))
            start = None
    return intervals


_METRIC_LABELS = {
    "reconstruction_loss": "reconstruction loss",
    "magma_loss": "MAGMA loss",
    "magma_weight": "MAGMA weight",
    "online_accuracy": "online accuracy",
    "uniformity_loss": "uniformity loss",
}


def plot_training_curves(
    runs: Mapping[str, str | os.PathLike | Sequence[Mapping[str, Any]]],
    output_path: str | os.PathLike,
    *,
    metrics: Sequence[str] = DEFAULT_CURVE_METRICS,
    x_axis: Literal["step", "epoch"] = "step",
    weight_metric: str = "magma_weight",
    panel_size: float = 3.5,
    dpi: int = 100,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Curves of ``metrics`` logged by `transformers.Trainer`, one panel per metric, runs overlaid with a legend.

    ``runs`` maps a name to a run directory, a ``trainer_state.json`` or a ``log_history`` list. Metrics no run
    logged get no panel. The span where a run's ``magma_weight`` is positive is shaded in its colour, and the MAGMA
    loss is drawn dashed where it was only measured (weight 0) and solid where it was trained on, as in the paper's
    Fig. 2a. The PNG is ``dpi * panel_size * 1.3 * panels`` by ``dpi * panel_size`` pixels. Returns
    ``{name: {metric: (x, y)}}``.
    """
    Figure = _figure_class()
    if not runs:
        raise ValueError("`runs` is empty: pass {name: run directory or trainer_state.json}")
    if x_axis not in ("step", "epoch"):
        raise ValueError(f"`x_axis` must be 'step' or 'epoch', got {x_axis!r}")
    histories = {
        name: load_log_history(run) if isinstance(run, (str, os.PathLike)) else list(run)
        for name, run in runs.items()
    }
    curves = {name: {m: _series(h, m, x_axis) for m in metrics} for name, h in histories.items()}
    weights = {name: _series(h, weight_metric, x_axis) for name, h in histories.items()}
    present = [m for m in metrics if any(len(curves[name][m][0]) for name in curves)]
    if not present:
        raise ValueError(
            f"None of the runs logged any of {list(metrics)} against {x_axis!r}; "
            f"logged keys: {sorted({k for h in histories.values() for e in h for k in e})}"
        )

    from matplotlib import colormaps

    palette = colormaps["tab10"]
    fig = Figure(figsize=(panel_size * 1.3 * len(present), panel_size), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for r, name in enumerate(curves):
        color = palette(r % 10)
        wx, wy = weights[name]
        spans = active_intervals(wx, wy) if len(wx) else []
        for ax, metric in zip(axes, present):
            xs, ys = curves[name][metric]
            for k, (lo, hi) in enumerate(spans):
                ax.axvspan(lo, hi, color=color, alpha=0.12, linewidth=0,
                           label=f"{name}: {weight_metric} > 0" if k == 0 and metric == present[0] else None)
            if not len(xs):
                continue
            if metric == "magma_loss" and len(wx):
                on = np.interp(xs, wx, (wy > 0).astype(float)) > 0.5
                _plot_split(ax, xs, ys, on, color, name)
            else:
                ax.plot(xs, ys, color=color, linewidth=1.4, label=name, marker="." if len(xs) < 30 else None)
    for ax, metric in zip(axes, present):
        ax.set_title(_METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel(x_axis)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if "magma_loss" in present and any(len(w[0]) for w in weights.values()):
        axes[present.index("magma_loss")].text(
            0.99, 0.99, "dashed: not trained on", transform=axes[present.index("magma_loss")].transAxes,
            ha="right", va="top", fontsize=7, color="0.3",
        )
    _save(fig, output_path, dpi)
    return curves


def _plot_split(ax, xs: np.ndarray, ys: np.ndarray, on: np.ndarray, color, name: str) -> None:
    """Solid where ``on``, dashed elsewhere, joined at the switches so the curve stays continuous."""
    active = np.where(on, ys, np.nan)
    inactive = np.where(~on, ys, np.nan)
    for k in range(1, len(xs)):
        if on[k] != on[k - 1]:  # join the two styles across the switch
            inactive[k if on[k] else k - 1] = ys[k if on[k] else k - 1]
    ax.plot(xs, active, color=color, linewidth=1.4, label=name, marker="." if len(xs) < 30 else None)
    ax.plot(xs, inactive, color=color, linewidth=1.4, linestyle="--", marker="." if len(xs) < 30 else None)


# --------------------------------------------------------------------------------------------------------------
# Writing the figures of checkpoints (scripts, model cards)
# --------------------------------------------------------------------------------------------------------------

#: The figures `write_figures` can draw, with the file name and the caption each gets.
FIGURES: dict[str, tuple[str, str]] = {
    "pacmap": ("pacmap.png", "PaCMAP of the encoder's features with the Davies-Bouldin index"),
    "keys": ("key_pca.png", "First principal component of the attention keys, per layer"),
    "attention": ("attention_maps.png", "Last-layer CLS attention, per head"),
    "curves": ("training_curves.png", "Training curves: reconstruction loss, MAGMA loss and weight"),
}


@dataclass
class VisualizationArguments:
    """Options of ``scripts/visualize.py``, parsed by ``HfArgumentParser`` beside `hf_magma.data.ImageDataArguments`."""

    model_name_or_path: list[str] = field(
        metadata={"help": "Checkpoints (local folders or Hub ids) to compare side by side, in panel order."}
    )
    names: list[str] | None = field(
        default=None, metadata={"help": "A panel title per checkpoint (default: the folder or repo name)."}
    )
    figures: str = field(
        default="all", metadata={"help": f"Comma-separated figures among {', '.join(FIGURES)}, or 'all'."}
    )
    output_dir: str = field(default="figures", metadata={"help": "Where the PNG files are written."})
    split: str = field(default="validation", metadata={"help": "The dataset split the images and features come from."})
    runs: list[str] | None = field(
        default=None,
        metadata={"help": "Run folders or trainer_state.json files for the curves, one per checkpoint "
                  "(default: the checkpoint folders that hold a trainer_state.json)."},
    )
    linear_accuracy: list[float] | None = field(
        default=None, metadata={"help": "Linear-probe accuracy (fraction) per checkpoint, shown in the PaCMAP titles."}
    )
    num_classes: int = field(default=10, metadata={"help": "How many random classes the PaCMAP plot shows."})
    max_samples_per_class: int = field(default=200, metadata={"help": "Images per class in the PaCMAP plot."})
    davies_bouldin_space: str = field(
        default="embedding",
        metadata={"help": "Where the Davies-Bouldin index is computed: 'embedding' (the plotted 2-D PaCMAP points) "
                  "or 'features' (the encoder features)."},
    )
    pooling: str = field(default="cls", metadata={"help": "Feature pooling for PaCMAP: 'cls' or 'mean'."})
    num_images: int = field(default=2, metadata={"help": "Images (seeded picks) in the key-PCA and attention figures."})
    image_indices: list[int] | None = field(
        default=None, metadata={"help": "Dataset indices of the images to show (instead of --num_images picks)."}
    )
    batch_size: int = field(default=256, metadata={"help": "Batch size of the feature extraction."})
    seed: int = field(default=0, metadata={"help": "Seed of the class, image and sample picks and of PaCMAP."})
    dpi: int = field(default=100, metadata={"help": "Resolution of the PNG files."})

    def __post_init__(self) -> None:
        parse_figures(self.figures)
        if self.names is not None and len(self.names) != len(self.model_name_or_path):
            raise ValueError(f"--names has {len(self.names)} entries for {len(self.model_name_or_path)} checkpoints")
        for option in ("runs", "linear_accuracy"):
            value = getattr(self, option)
            if value is not None and len(value) != len(self.model_name_or_path):
                raise ValueError(f"--{option} needs one entry per checkpoint ({len(self.model_name_or_path)})")
        if self.davies_bouldin_space not in ("embedding", "features"):
            raise ValueError(
                f"--davies_bouldin_space must be 'embedding' or 'features', got {self.davies_bouldin_space!r}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be 'cls' or 'mean', got {self.pooling!r}")

    def checkpoint_names(self) -> list[str]:
        """The panel titles: ``names`` or each checkpoint's last path component, made unique."""
        if self.names is not None:
            names = list(self.names)
        else:
            names = [Path(str(p).rstrip("/")).name or str(p) for p in self.model_name_or_path]
        if len(set(names)) != len(names):
            raise ValueError(f"Checkpoint names must be unique, got {names}: pass --names")
        return names


def parse_figures(figures: str | Sequence[str] | None) -> list[str] | None:
    """``"pacmap,keys"`` or ``["pacmap", "keys"]`` -> a checked list; ``None`` or ``"all"`` -> ``None`` (all)."""
    if figures is None:
        return None
    names = [f.strip() for f in figures.split(",")] if isinstance(figures, str) else [str(f).strip() for f in figures]
    names = [n for n in names if n]
    if names == ["all"]:
        return None
    unknown = [n for n in names if n not in FIGURES]
    if unknown or not names:
        raise ValueError(f"Unknown figure(s) {unknown or names}: choose among {', '.join(FIGURES)} (or 'all')")
    return list(dict.fromkeys(names))


def sample_indices_per_class(
    labels: np.ndarray, classes: np.ndarray, max_per_class: int | None, seed: int
) -> np.ndarray:
    """Indices of at most ``max_per_class`` examples (seeded) of each of ``classes``, in dataset order."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if max_per_class is not None and len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def write_figures(
    checkpoints: Mapping[str, str | os.PathLike | nn.Module],
    output_dir: str | os.PathLike,
    *,
    figures: str | Sequence[str] | None = None,
    dataset: Any = None,
    image_processor: Any = None,
    image_column: str | None = None,
    label_column: str | None = None,
    runs: Mapping[str, str | os.PathLike] | None = None,
    linear_accuracy: Mapping[str, float] | None = None,
    num_classes: int = 10,
    max_samples_per_class: int | None = 200,
    image_indices: Sequence[int] | None = None,
    num_images: int = 2,
    pooling: Pooling = "cls",
    batch_size: int = 256,
    davies_bouldin_space: Literal["embedding", "features"] = "embedding",
    seed: int = 0,
    dpi: int = 100,
) -> dict[str, Path]:
    """Draw the requested figures (`FIGURES`) for ``{name: checkpoint path or model}`` into ``output_dir``.

    ``dataset`` (a map-style ``datasets.Dataset``, e.g. a validation split) supplies the images of the key-PCA
    and attention figures (``image_indices``, else ``num_images`` seeded picks) and the labelled features of the
    PaCMAP figure, extracted with `hf_magma.evaluation.extract_features` from ``max_samples_per_class`` images of
    ``num_classes`` random classes. Images are prepared like evaluation images with ``image_processor`` (default:
    the first checkpoint's, else ViT's defaults, at the model's image size). Curves read ``runs`` (default: each
    checkpoint directory holding a ``trainer_state.json``). With ``figures=None`` every figure the inputs allow is drawn and the others are
    skipped; a figure asked for by name whose inputs are missing raises ``ValueError``. Returns
    ``{figure: png path}``.
    """
    from .data import ImageTransform, find_image_column, find_label_column

    if not checkpoints:
        raise ValueError("`checkpoints` is empty: pass {name: checkpoint path or model}")
    requested = parse_figures(figures)
    wanted = requested or list(FIGURES)
    output_dir = Path(output_dir)

    if runs is None:
        runs = {}
        for name, source in checkpoints.items():
            if isinstance(source, (str, os.PathLike)):
                with contextlib.suppress(FileNotFoundError):
                    runs[name] = find_trainer_state(source)

    def unavailable(figure: str, reason: str) -> None:
        if requested is not None:
            raise ValueError(f"Cannot draw the {figure!r} figure: {reason}")
        logger.info("Skipping the %s figure: %s", figure, reason)

    needs_data = [f for f in wanted if f in ("pacmap", "keys", "attention")]
    if needs_data and dataset is None:
        for figure in needs_data:
            unavailable(figure, "no dataset was given")
        needs_data = []
    if needs_data and not hasattr(dataset, "__getitem__"):
        for figure in needs_data:
            unavailable(figure, "it needs a map-style dataset (not a streamed one)")
        needs_data = []

    written: dict[str, Path] = {}
    if "curves" in wanted:
        if runs:
            path = output_dir / FIGURES["curves"][0]
            plot_training_curves(runs, path, dpi=dpi)
            written["curves"] = path
        else:
            unavailable("curves", "no checkpoint holds a trainer_state.json and no `runs` were given")
    if not needs_data:
        return written

    models = {name: load_encoder(source) for name, source in checkpoints.items()}
    if image_processor is None:
        first = next(iter(checkpoints.values()))
        if not isinstance(first, (str, os.PathLike)):
            raise ValueError("Pass `image_processor` when the checkpoints are model objects")
        image_processor = load_image_processor(first, next(iter(models.values())).config.image_size)
    channels = next(iter(models.values())).config.num_channels
    transform = ImageTransform.from_image_processor(image_processor, train=False, num_channels=channels)
    image_column = image_column or find_image_column(dataset)
    mean, std = transform.mean.flatten().tolist(), transform.std.flatten().tolist()

    image_figures = [f for f in needs_data if f in ("keys", "attention")]
    if image_figures:
        if image_indices is None:
            if num_images < 1:
                raise ValueError(f"`num_images` must be positive, got {num_images}")
            count = min(num_images, len(dataset))
            image_indices = sorted(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False).tolist())
        for i in image_indices:
            if not 0 <= i < len(dataset):
                raise ValueError(f"Image index {i} is outside the dataset (0..{len(dataset) - 1})")
        pixel_values = torch.stack([transform(dataset[int(i)][image_column]) for i in image_indices])
        if "keys" in image_figures:
            path = output_dir / FIGURES["keys"][0]
            plot_key_pca(models, pixel_values, path, image_mean=mean, image_std=std, dpi=dpi)
            written["keys"] = path
        if "attention" in image_figures:
            path = output_dir / FIGURES["attention"][0]
            plot_attention_maps(models, pixel_values, path, image_mean=mean, image_std=std, dpi=dpi)
            written["attention"] = path

    if "pacmap" in needs_data:
        if label_column is None:
            with contextlib.suppress(ValueError):
                label_column = find_label_column(dataset)
        if label_column is None:
            unavailable("pacmap", "the dataset has no label column")
        else:
            labels = np.asarray(dataset[label_column])
            classes = select_classes([labels], num_classes, seed)
            subset = dataset.select(sample_indices_per_class(labels, classes, max_samples_per_class, seed).tolist())
            features = {
                name: extract_features(
                    model, subset, pooling=pooling, batch_size=batch_size, transform=transform,
                    image_column=image_column, label_column=label_column,
                )
                for name, model in models.items()
            }
            class_names = None
            feature = getattr(dataset, "features", {}).get(label_column)
            if feature is not None and hasattr(feature, "names"):
                class_names = feature.names
            path = output_dir / FIGURES["pacmap"][0]
            panels = plot_pacmap(
                features, path, num_classes=num_classes, seed=seed, max_samples_per_class=None,
                linear_accuracy=linear_accuracy, class_names=class_names,
                davies_bouldin_space=davies_bouldin_space, dpi=dpi,
            )
            # The panels' scores beside the figure, for tables (`hf_magma.comparison`).
            scores = {p.name: {"davies_bouldin": p.davies_bouldin, "davies_bouldin_space": davies_bouldin_space,
                               "num_points": int(len(p.labels))} for p in panels}
            path.with_suffix(".json").write_text(json.dumps(scores, indent=2) + "\n")
            written["pacmap"] = path
    return {f: written[f] for f in FIGURES if f in written}


def write_checkpoint_figures(
    checkpoint_dir: str | os.PathLike,
    dataset: Any = None,
    *,
    figures: str | Sequence[str] | None = None,
    name: str | None = None,
    subfolder: str = "figures",
    update_model_card: bool = True,
    **kwargs: Any,
) -> dict[str, str]:
    """Write a checkpoint's figures into ``checkpoint_dir/subfolder`` and embed them in its model card.

    For the end of a pretraining or evaluation run: ``write_figures`` for this one checkpoint (``kwargs`` are
    passed on), then, when ``checkpoint_dir`` has a ``README.md`` and ``update_model_card``, the figures are
    added to it with `hf_magma.model_card.add_figures`. Returns ``{caption: path relative to checkpoint_dir}``.
    """
    from .model_card import add_figures

    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise FileNotFoundError(f"No checkpoint directory {str(checkpoint_dir)!r}")
    name = name or checkpoint_dir.name
    written = write_figures(
        {name: checkpoint_dir}, checkpoint_dir / subfolder, figures=figures, dataset=dataset, **kwargs
    )
    relative = {FIGURES[f][1]: path.relative_to(checkpoint_dir).as_posix() for f, path in written.items()}
    if relative and update_model_card and (checkpoint_dir / "README.md").is_file():
        add_figures(checkpoint_dir, relative)
    return relative

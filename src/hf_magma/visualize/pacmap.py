"""PaCMAP of the encoders' features with the Davies-Bouldin index (paper Fig. 4)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..data.labels import sample_per_class
from ..utils.checks import check_number
from .drawing import _class_colors, _figure_class, _pacmap_class, _save, _to_numpy


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
    if davies_bouldin_space not in ("embedding", "features"):
        raise ValueError(f"`davies_bouldin_space` must be 'embedding' or 'features', got {davies_bouldin_space!r}")
    arrays, linear_accuracy = _checked_inputs(checkpoints, linear_accuracy, max_samples_per_class)
    classes = select_classes([labs for _, labs in arrays.values()], num_classes, seed)

    panels = []
    for name, (feats, labs) in arrays.items():
        keep = sample_per_class(labs, max_samples_per_class, classes=classes, seed=seed).numpy()
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
    for ax, panel in zip(axes, panels, strict=True):
        for color, c in zip(colors, classes, strict=True):
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


def _checked_inputs(
    checkpoints: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    linear_accuracy: Mapping[str, float] | None,
    max_samples_per_class: int | None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """``{name: (features (N, D), labels (N,))}`` as arrays and the linear accuracies, checked."""
    if not checkpoints:
        raise ValueError("`checkpoints` is empty: pass {name: (features, labels)}")
    linear_accuracy = dict(linear_accuracy or {})
    for name, acc in linear_accuracy.items():
        if name not in checkpoints:
            raise ValueError(
                f"`linear_accuracy` names {name!r}, which is not among the checkpoints {list(checkpoints)}"
            )
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"`linear_accuracy[{name!r}]` must be a fraction in [0, 1], got {acc}")
    if max_samples_per_class is not None:
        check_number("max_samples_per_class", max_samples_per_class, sign="positive", integer=True)
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
    return arrays, linear_accuracy


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

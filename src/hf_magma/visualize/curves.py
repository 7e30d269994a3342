"""Training curves of `transformers.Trainer` runs, with the MAGMA window shaded (paper Fig. 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..records.logged_metrics import DEFAULT_CURVE_METRICS, METRIC_LABELS
from ..records.trainer_state import load_log_history
from .drawing import _figure_class, _save


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
    for k, (x, w) in enumerate(zip(xs, weights, strict=True)):
        if w > 0 and start is None:
            start = x
        if start is not None and (w <= 0 or k == len(xs) - 1):
            end = x if w > 0 else xs[k - 1]
            intervals.append((float(start), float(end)))
            start = None
    return intervals



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
        for ax, metric in zip(axes, present, strict=True):
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
    for ax, metric in zip(axes, present, strict=True):
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
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

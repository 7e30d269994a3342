"""The grid's results folder read back: the cells' JSONs, the pixel floor, and the Markdown summary (a table of
mean +- std per method and the provenance of every number)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..records.model_card import magma_method_name

#: Which of the recipe's two terms each method keeps: (MAGMA, uniformity).
METHODS: dict[str, tuple[bool, bool]] = {
    "mae": (False, False),
    "m-mae": (True, False),
    "u-mae": (False, True),
    "mu-mae": (True, True),
}

def method_title(method: str) -> str:
    """The paper's name of a grid method (``m-mae`` -> ``M-MAE``); an unknown one as is."""
    return magma_method_name(*(float(term) for term in METHODS[method])) if method in METHODS else method


PIXELS_FILE = "pixels.json"




def load_cells(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every cell JSON in ``results_dir``."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*_seed*.json"))]


def _mean_std(values: Sequence[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _fraction_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    keys = {k for r in records for k in (r.get("results") or {}) if k.startswith("linear_accuracy_")}
    return sorted(keys, key=lambda k: float(k[len("linear_accuracy_"):-len("pct")]))


def summary_table(cells: Sequence[dict[str, Any]], pixels: dict[str, Any] | None = None) -> str:
    """A Markdown table: per method, n seeds, linear and k-NN top-1 (%) as mean +- sample std (and the linear
    probe on each label fraction the cells have), mean times; with ``pixels``, the model-free floor's row."""
    fractions = _fraction_keys([*cells, *([pixels] if pixels else [])])
    titles = "".join(f" linear, {k[len('linear_accuracy_'):-len('pct')]}% labels (%) |" for k in fractions)
    rows = [
        f"| method | n | seeds | linear top-1 (%) | k-NN top-1 (%) |{titles} pretraining (s) | evaluation (s) |",
        "|---|---|---|---|---|" + "---|" * len(fractions) + "---|---|",
    ]
    for method in METHODS:
        mine = sorted((c for c in cells if c["method"] == method), key=lambda c: c["seed"])
        if not mine:
            continue
        extra = "".join(
            " " + (_mean_std([c["results"][k] for c in mine]) if all(k in (c.get("results") or {}) for c in mine)
                   else "-") + " |"
            for k in fractions
        )
        rows.append(
            f"| {method_title(method)} | {len(mine)} | {', '.join(str(c['seed']) for c in mine)} "
            f"| {_mean_std([c['linear_top1'] for c in mine])} | {_mean_std([c['knn_top1'] for c in mine])} |{extra}"
            f" {statistics.mean(c['pretrain_seconds'] for c in mine):.0f} "
            f"| {statistics.mean(c['eval_seconds'] for c in mine):.0f} |"
        )
    if pixels is not None:
        extra = "".join(f" {_mean_std([pixels['results'][k]]) if k in pixels['results'] else '-'} |"
                        for k in fractions)
        rows.append(
            f"| pixels (no model, {pixels['feature_dim']} values) | - | - | {_mean_std([pixels['linear_top1']])} "
            f"| {_mean_std([pixels['knn_top1']])} |{extra} - | {pixels['eval_seconds']:.0f} |"
        )
    return "\n".join(rows)


def load_pixels(results_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The pixel floor of ``results_dir`` (``pixels.json``), or None."""
    path = Path(results_dir) / PIXELS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_summary(results_dir: str | os.PathLike) -> Path:
    """Write ``summary.md`` in ``results_dir`` from its cell JSONs: the table and its provenance."""
    cells = load_cells(results_dir)
    pixels = load_pixels(results_dir)
    path = Path(results_dir) / "summary.md"
    if not cells:
        raise ValueError(f"{results_dir} holds no cell results to summarise")
    commands = sorted({c["command"] for c in cells})
    commits = sorted({str(c["git_commit"]) for c in cells})
    machines = sorted({f"{c['machine']['cpu']}, {c['machine']['cpu_count']} cores, torch {c['machine']['torch']}"
                       + (f", {c['machine']['gpu']}" if "gpu" in c["machine"] else "") for c in cells})
    dates = sorted(c["date"] for c in cells)
    first = cells[0]["settings"]
    # lambda and mu are the recipe's values, used by the methods that keep the term (MAE's cells record 0).
    recipe = {k: v for k, v in first["training"].items() if k not in ("seed", "magma_weight", "uniformity_weight")}
    recipe["magma_weight"] = max(c["settings"]["training"]["magma_weight"] for c in cells)
    recipe["uniformity_weight"] = max(c["settings"]["training"]["uniformity_weight"] for c in cells)
    lines = [
        f"# Reproduction: {first['data']['dataset_name'] or first['data']['train_dir'] or 'Fashion-MNIST (offline)'}",
        "",
        "Top-1 accuracy on the test split, mean +- sample standard deviation over seeds "
        f"(linear probe {first['evaluation']['linear_epochs']} epochs, k-NN k={first['evaluation']['knn_k']}).",
        "",
        summary_table(cells, pixels),
        "",
        "Cells (top-1 %, linear / k-NN): "
        + "; ".join(
            f"{method_title(c['method'])} seed {c['seed']}: {100 * c['linear_top1']:.2f} / "
            f"{100 * c['knn_top1']:.2f}"
            for c in sorted(cells, key=lambda c: (list(METHODS).index(c["method"]), c["seed"]))
        )
        + ".",
        "",
        "## Provenance",
        "",
        f"- command: {'; '.join(f'`{c}`' for c in commands)}",
        f"- git commit: {', '.join(commits)}",
        f"- machine: {'; '.join(machines)}",
        f"- dates: {dates[0]} to {dates[-1]}",
        f"- model: `{first['model']['config_overrides']}`, mask {first['model']['mask_ratio']}, "
        f"norm-pix {first['model']['norm_pix_loss']}",
        f"- training (every cell; the methods switch lambda = magma_weight and mu = uniformity_weight off): "
        f"{json.dumps(recipe)}",
        "",
        "One JSON per (method, seed) in this folder holds every setting, the losses and the training curve.",
    ]
    if pixels is not None:
        lines += [
            "",
            f"The pixel row (`{PIXELS_FILE}`): the same protocol on the {pixels['feature_dim']} normalised pixel "
            f"values ({pixels['transform']}); `{pixels['command']}`, commit {pixels['git_commit']}, "
            f"{pixels['date']}, {pixels['eval_seconds']:.0f} s.",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path

"""Print one table of a results folder of scripts/reproduce.py: linear and k-NN top-1 per method, the
Davies-Bouldin index of its PaCMAP panel (from the pacmap.json that scripts/visualize.py writes beside
pacmap.png) and the pixel floor.

Installed as the `hf-magma-compare` command; `python scripts/compare_runs.py` and
`python -m hf_magma.cli.compare_runs` are the same program.

Examples:

    # the demo's closing table (bash scripts/demo.sh runs recipes/reproduce_fashion_mnist_demo.yaml first)
    python scripts/compare_runs.py --results_dir outputs/demo/results --pacmap_scores outputs/demo/figures/pacmap.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from .grid_results import METHODS, load_cells, load_pixels, method_title
from .parser import SHOW_TRACEBACK, run_program


def comparison_rows(
    results_dir: str | os.PathLike, pacmap_scores: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Per method in ``results_dir`` (in `METHODS` order), then the pixel floor when ``pixels.json`` is there.

    Args:
        results_dir: a folder of `scripts/reproduce.py` cell JSONs.
        pacmap_scores: the ``pacmap.json`` written beside a PaCMAP figure, whose panels are named by the methods'
            titles (MAE, M-MAE, ...).

    Returns:
        Rows ``{"name", "seeds", "linear", "knn", "davies_bouldin"}``, accuracies in percent (None where absent).
    """
    cells = load_cells(results_dir)
    if not cells:
        raise ValueError(f"{results_dir} holds no cell results (<method>_seed<n>.json): "
                         "run scripts/reproduce.py first")
    scores = json.loads(Path(pacmap_scores).read_text()) if pacmap_scores is not None else {}
    rows = []
    for method in METHODS:
        mine = [c for c in cells if c["method"] == method]
        if not mine:
            continue
        title = method_title(method)
        rows.append({
            "name": title,
            "seeds": sorted(c["seed"] for c in mine),
            "linear": 100 * statistics.mean(c["linear_top1"] for c in mine),
            "knn": 100 * statistics.mean(c["knn_top1"] for c in mine),
            "davies_bouldin": scores.get(title, {}).get("davies_bouldin"),
        })
    pixels = load_pixels(results_dir)
    if pixels is not None:
        rows.append({"name": f"pixels ({pixels['feature_dim']} values, no model)", "seeds": [],
                     "linear": 100 * pixels["linear_top1"], "knn": 100 * pixels["knn_top1"], "davies_bouldin": None})
    return rows


def comparison_table(results_dir: str | os.PathLike, pacmap_scores: str | os.PathLike | None = None) -> str:
    """`comparison_rows` as a Markdown table (top-1 %, Davies-Bouldin: lower = better separated classes)."""
    lines = ["| | linear top-1 (%) | k-NN top-1 (%) | Davies-Bouldin (PaCMAP 2-D) |", "|---|---|---|---|"]
    for row in comparison_rows(results_dir, pacmap_scores):
        seeds = f" (seed {', '.join(map(str, row['seeds']))})" if row["seeds"] else ""
        db = "-" if row["davies_bouldin"] is None else f"{row['davies_bouldin']:.2f}"
        lines.append(f"| {row['name']}{seeds} | {row['linear']:.2f} | {row['knn']:.2f} | {db} |")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``--results_dir`` and ``--pacmap_scores``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", required=True, help="A folder of cell JSONs written by scripts/reproduce.py.")
    parser.add_argument("--pacmap_scores", default=None, help="The pacmap.json written beside a PaCMAP figure.")
    parser.add_argument(SHOW_TRACEBACK, action="store_true", help="Show a refusal's traceback (as HF_MAGMA_DEBUG=1).")
    return parser


def main(argv: list[str] | None = None) -> str:
    """Parse ``argv``, print the comparison table and return it."""
    args = make_parser().parse_args(argv)
    table = comparison_table(args.results_dir, args.pacmap_scores)
    print(table)
    return table


def entry_point() -> None:
    """The `hf-magma-compare` console command."""
    run_program(main)


if __name__ == "__main__":
    entry_point()

"""Print one table of a results folder of scripts/reproduce.py: linear and k-NN top-1 per method, the
Davies-Bouldin index of its PaCMAP panel (from the pacmap.json that scripts/visualize.py writes beside
pacmap.png) and the pixel floor.

Installed as the `hf-magma-compare` command; `python scripts/compare_runs.py` is the same program.

Examples:

    # the demo's closing table (bash scripts/demo.sh runs recipes/reproduce_fashion_mnist_demo.yaml first)
    python scripts/compare_runs.py --results_dir outputs/demo/results --pacmap_scores outputs/demo/figures/pacmap.json
"""

from __future__ import annotations

import argparse

from ..cli.comparison import comparison_table


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", required=True, help="A folder of cell JSONs written by scripts/reproduce.py.")
    parser.add_argument("--pacmap_scores", default=None, help="The pacmap.json written beside a PaCMAP figure.")
    return parser


def main(argv: list[str] | None = None) -> str:
    """Parse ``argv``, print the comparison table and return it."""
    args = make_parser().parse_args(argv)
    table = comparison_table(args.results_dir, args.pacmap_scores)
    print(table)
    return table


def entry_point() -> None:
    """The `hf-magma-compare` console command."""
    main()

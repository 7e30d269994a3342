#!/usr/bin/env python
"""Print one table of a results folder of scripts/reproduce.py: linear and k-NN top-1 per method, the
Davies-Bouldin index of its PaCMAP panel (from the pacmap.json that scripts/visualize.py writes beside
pacmap.png) and the pixel floor.

Example:

    python scripts/compare_runs.py --results_dir outputs/demo/results --pacmap_scores outputs/demo/figures/pacmap.json
"""

from __future__ import annotations

import argparse

from hf_magma.cli.comparison import comparison_table


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", required=True, help="A folder of cell JSONs written by scripts/reproduce.py.")
    parser.add_argument("--pacmap_scores", default=None, help="The pacmap.json written beside a PaCMAP figure.")
    args = parser.parse_args(argv)
    table = comparison_table(args.results_dir, args.pacmap_scores)
    print(table)
    return table


if __name__ == "__main__":
    main()

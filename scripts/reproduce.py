#!/usr/bin/env python
"""Reproduce the paper's MAE / M-MAE / U-MAE / MU-MAE comparison with one recipe over seeds: pretrain each cell,
evaluate it (linear probe and k-NN on the train/test splits), write one JSON per (method, seed) and summary.md.

The program is `hf_magma.commands.reproduce`, also installed as the `hf-magma-reproduce` command; `--help`
lists examples and options.
"""

from hf_magma.commands.reproduce import main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

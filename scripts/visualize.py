#!/usr/bin/env python
"""Draw the paper's figures for one or several checkpoints side by side: PaCMAP with the Davies-Bouldin index,
the key PCA per layer, the last layer's attention maps and the training curves.

The program is `hf_magma.commands.visualize`, also installed as the `hf-magma-visualize` command; `--help`
lists examples and options.
"""

from hf_magma.commands.visualize import main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

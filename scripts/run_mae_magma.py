#!/usr/bin/env python
"""Pretrain a ViT-MAE with MAGMA (M-MAE; MU-MAE with --uniformity_weight 0.01; plain MAE with --magma_weight 0).

The program is `hf_magma.commands.run_mae_magma`, also installed as the `hf-magma-pretrain` command; `--help`
lists examples and options.
"""

from hf_magma.commands.run_mae_magma import main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

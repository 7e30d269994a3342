#!/usr/bin/env python
"""Pretrain a ViT with SimCLR or VICReg plus MAGMA (M-SimCLR, M-VICReg; the plain objective with --magma_weight 0).

The program is `hf_magma.commands.run_ssl_magma`, also installed as the `hf-magma-pretrain-ssl` command; `--help`
lists examples and options.
"""

from hf_magma.commands.run_ssl_magma import main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

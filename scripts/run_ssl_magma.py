#!/usr/bin/env python
"""The `hf-magma-pretrain-ssl` command (hf_magma/cli/run_ssl_magma.py); `--help` lists its examples and options."""

from hf_magma.cli.run_ssl_magma import entry_point, main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    entry_point()

#!/usr/bin/env python
"""The `hf-magma-visualize` command (hf_magma/cli/visualize.py); `--help` lists its examples and options."""

from hf_magma.cli.visualize import entry_point, main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    entry_point()

#!/usr/bin/env python
"""The `hf-magma-eval` command (hf_magma/cli/run_eval.py); `--help` lists its examples and options."""

from hf_magma.cli.run_eval import entry_point, main, make_parser

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    entry_point()

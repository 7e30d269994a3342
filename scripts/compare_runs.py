#!/usr/bin/env python
"""Print one table of a results folder of scripts/reproduce.py (see `hf_magma.commands.compare_runs`)."""

from hf_magma.commands.compare_runs import main, make_parser  # noqa: F401

if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Evaluate a checkpoint's frozen features the paper's way: k-NN and linear probe (optionally on 1/5/10/100% of
the labels), and optionally full fine-tuning. Writes eval_results.json and records the results in the model card.

The program is `hf_magma.commands.run_eval`, also installed as the `hf-magma-eval` command; `--help`
lists examples and options.
"""

import sys

from hf_magma.commands.run_eval import main, make_parser
from hf_magma.evaluation import HubPushError

__all__ = ["main", "make_parser"]

if __name__ == "__main__":
    try:
        main(*make_parser().parse_args_and_config())
    except HubPushError as error:
        sys.exit(f"run_eval: {error}")

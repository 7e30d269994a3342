#!/usr/bin/env python
"""Evaluate a checkpoint's frozen features the paper's way: k-NN and linear probe (optionally on 1/5/10/100% of
the labels), and optionally full fine-tuning. Writes eval_results.json and records the results in the model card.

Examples:

    # a local checkpoint on the offline Fashion-MNIST
    python scripts/run_eval.py --model_name_or_path outputs/m-mae-fmnist --output_dir outputs/eval

    # the model-free floor: the same protocol on the normalised pixels (28 x 28, one channel)
    python scripts/run_eval.py --pixels --output_dir results/fashion_mnist/pixels

    # a Hub checkpoint on CIFAR-100, low-label regime, card pushed back to the Hub
    python scripts/run_eval.py --model_name_or_path user/m-mae-cifar100 --dataset_name uoft-cs/cifar100 \\
        --label_fractions 0.01 0.05 0.1 1 --output_dir outputs/eval --push_to_hub
"""

from __future__ import annotations

import sys

from hf_magma.cli import evaluation as command
from hf_magma.cli.parser import MAGMAArgumentParser
from hf_magma.evaluation import HubPushError

main = command.main


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


if __name__ == "__main__":
    try:
        main(*make_parser().parse_args_and_config())
    except HubPushError as error:
        sys.exit(f"run_eval: {error}")

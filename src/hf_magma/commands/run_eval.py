"""Evaluate a checkpoint's frozen features the paper's way: k-NN and linear probe (optionally on 1/5/10/100% of
the labels), and optionally full fine-tuning. Writes eval_results.json and records the results in the model card.

Installed as the `hf-magma-eval` command; `python scripts/run_eval.py` is the same program.

Examples:

    # a local checkpoint on the offline Fashion-MNIST
    python scripts/run_eval.py --model_name_or_path outputs/m-mae-fashion-mnist --output_dir outputs/eval

    # a Hub checkpoint on CIFAR-100, low-label regime, card pushed back to the Hub
    python scripts/run_eval.py --model_name_or_path user/m-mae-cifar100 --dataset_name uoft-cs/cifar100 \\
        --label_fractions 0.01 0.05 0.1 1 --output_dir outputs/eval --push_to_hub

    # the model-free floor: the same protocol on the normalised pixels (28 x 28 grey values for Fashion-MNIST)
    python scripts/run_eval.py --pixels --output_dir outputs/pixels
"""

from __future__ import annotations

import sys

from ..cli import evaluation as command
from ..cli.parser import MAGMAArgumentParser

main = command.main


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


def entry_point() -> None:
    """The `hf-magma-eval` console command."""
    from ..evaluation import HubPushError

    try:
        main(*make_parser().parse_args_and_config())
    except HubPushError as error:
        sys.exit(f"hf-magma-eval: {error}")

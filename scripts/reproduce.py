#!/usr/bin/env python
"""Reproduce the paper's MAE / M-MAE / U-MAE / MU-MAE comparison with one recipe over seeds: pretrain each cell,
evaluate it (linear probe and k-NN on the train/test splits), write one JSON per (method, seed) and summary.md.

Examples:

    # the Fashion-MNIST grid on CPU (4 methods x 3 seeds); finished cells are skipped
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml

    # one cell
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml --methods m-mae --seeds 0

    # the paper's CIFAR-100 ViT-Tiny setting on a GPU machine with a network
    python scripts/reproduce.py --config recipes/reproduce_cifar100_gpu.yaml
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hf_magma.cli import MAGMAArgumentParser
from hf_magma.data import ImageDataArguments
from hf_magma.model_config import MAGMAModelArguments
from hf_magma.cli.reproduce import ReproduceArguments, run_grid
from hf_magma.trainer import MAGMATrainingArguments


def main(
    reproduce_args: ReproduceArguments,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    command: str | None = None,
) -> dict:
    """Run the selected cells that are not done yet and rewrite the summary; returns the cells' records."""
    command = command or shlex.join(["python", "scripts/reproduce.py", *sys.argv[1:]])
    return run_grid(reproduce_args, data_args, training_args, model_args, command=command)


def make_parser() -> MAGMAArgumentParser:
    return MAGMAArgumentParser(
        (ReproduceArguments, ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

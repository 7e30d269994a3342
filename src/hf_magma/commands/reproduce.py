"""Reproduce the paper's MAE / M-MAE / U-MAE / MU-MAE comparison with one recipe over seeds: pretrain each cell,
evaluate it (linear probe and k-NN on the train/test splits), write one JSON per (method, seed) and summary.md.

Installed as the `hf-magma-reproduce` command; `python scripts/reproduce.py` is the same program.

Examples:

    # the Fashion-MNIST grid on CPU (4 methods x 3 seeds); finished cells are skipped
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml

    # one cell
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml --methods m-mae --seeds 0

    # the paper's CIFAR-100 ViT-Tiny setting on a GPU machine with a network
    python scripts/reproduce.py --config recipes/reproduce_cifar100_gpu.yaml
"""

from __future__ import annotations

from ..cli import reproduce as command
from ..cli.parser import MAGMAArgumentParser

main = command.main


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


def entry_point() -> None:
    """The `hf-magma-reproduce` console command."""
    main(*make_parser().parse_args_and_config())

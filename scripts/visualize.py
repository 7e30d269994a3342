#!/usr/bin/env python
"""Draw the paper's figures for one or several checkpoints side by side: PaCMAP with the Davies-Bouldin index,
the key PCA per layer, the last layer's attention maps and the training curves.

Examples:

    # MAE vs M-MAE on the offline Fashion-MNIST test images
    python scripts/visualize.py --model_name_or_path runs/mae runs/m-mae --names MAE M-MAE --output_dir figures

    # only the curves and the attention maps, on a Hub dataset's validation split
    python scripts/visualize.py --model_name_or_path runs/m-mae --figures curves,attention \\
        --dataset_name uoft-cs/cifar100 --split test
"""

from __future__ import annotations

from hf_magma.cli import visualize as command
from hf_magma.cli.parser import MAGMAArgumentParser

main = command.main


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())

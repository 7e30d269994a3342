"""Draw the paper's figures for one or several checkpoints side by side: PaCMAP with the Davies-Bouldin index,
the key PCA per layer, the last layer's attention maps and the training curves.

Installed as the `hf-magma-visualize` command; `python scripts/visualize.py` is the same program.

Examples:

    # MAE vs M-MAE on the offline Fashion-MNIST test images
    python scripts/visualize.py --model_name_or_path runs/mae runs/m-mae --names MAE M-MAE --output_dir figures

    # only the curves and the attention maps, on a Hub dataset's validation split
    python scripts/visualize.py --model_name_or_path runs/m-mae --figures curves,attention \\
        --dataset_name uoft-cs/cifar100 --split test
"""

from __future__ import annotations

from ..cli import visualize as command
from ..cli.parser import MAGMAArgumentParser

main = command.main


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


def entry_point() -> None:
    """The `hf-magma-visualize` console command."""
    main(*make_parser().parse_args_and_config())

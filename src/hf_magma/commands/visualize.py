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

import logging
import sys

from hf_magma.cli import MAGMAArgumentParser
from hf_magma.commands import script_parser
from hf_magma.data import ImageDataArguments, load_image_datasets
from hf_magma.visualize import FIGURES, VisualizationArguments, parse_figures, write_figures

logger = logging.getLogger("visualize")


def main(script_args: VisualizationArguments, data_args: ImageDataArguments) -> dict[str, str]:
    """Write the figures into ``--output_dir``; returns ``{figure: path}``."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)], level=logging.INFO)
    names = script_args.checkpoint_names()
    figures = parse_figures(script_args.figures)
    dataset = None
    if figures is None or set(figures) - {"curves"}:
        splits = load_image_datasets(data_args, seed=script_args.seed)
        if script_args.split not in splits:
            raise ValueError(f"The dataset has no {script_args.split!r} split; it has {sorted(splits)}")
        dataset = splits[script_args.split]
    written = write_figures(
        dict(zip(names, script_args.model_name_or_path)),
        script_args.output_dir,
        figures=figures,
        dataset=dataset,
        image_column=data_args.image_column_name,
        label_column=data_args.label_column_name,
        runs=dict(zip(names, script_args.runs)) if script_args.runs else None,
        linear_accuracy=dict(zip(names, script_args.linear_accuracy)) if script_args.linear_accuracy else None,
        num_classes=script_args.num_classes,
        max_samples_per_class=script_args.max_samples_per_class,
        image_indices=script_args.image_indices,
        num_images=script_args.num_images,
        pooling=script_args.pooling,
        batch_size=script_args.batch_size,
        davies_bouldin_space=script_args.davies_bouldin_space,
        seed=script_args.seed,
        dpi=script_args.dpi,
    )
    for figure, path in written.items():
        logger.info("%s: %s (%s)", figure, path, FIGURES[figure][1])
    return {figure: str(path) for figure, path in written.items()}


def make_parser() -> MAGMAArgumentParser:
    return script_parser((VisualizationArguments, ImageDataArguments), __doc__)


def entry_point() -> None:
    """The `hf-magma-visualize` console command."""
    main(*make_parser().parse_args_and_config())


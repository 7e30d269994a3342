"""Draw the paper's figures for one or several checkpoints side by side: PaCMAP with the Davies-Bouldin index,
the key PCA per layer, the last layer's attention maps, the training curves and MAE's reconstructions.

Installed as the `hf-magma-visualize` command; `python scripts/visualize.py` and
`python -m hf_magma.cli.visualize` are the same program.

Examples:

    # MAE vs M-MAE on the offline Fashion-MNIST test images
    python scripts/visualize.py --model_name_or_path runs/mae runs/m-mae --names MAE M-MAE --output_dir figures

    # only the curves and the attention maps, on a Hub dataset's validation split
    python scripts/visualize.py --model_name_or_path runs/m-mae --figures curves,attention \\
        --dataset_name uoft-cs/cifar100 --split test

    # MAE's and M-MAE's reconstructions of 8 test images under the same seeded mask
    python scripts/visualize.py --model_name_or_path runs/mae runs/m-mae --names MAE M-MAE \
        --figures reconstructions --num_images 8 --split test
"""

from __future__ import annotations

import argparse
import logging

from ..data.arguments import ImageDataArguments
from ..data.loading import load_image_datasets
from ..records.figure_options import FIGURES, parse_figures
from ..visualize import VisualizationArguments, write_figures
from .parser import MAGMAArgumentParser, run_program, setup_logging

logger = logging.getLogger("visualize")


def make_parser(description: str | None = None) -> MAGMAArgumentParser:
    """The command line: `VisualizationArguments`, `ImageDataArguments`, a YAML ``--config``."""
    return MAGMAArgumentParser(
        (VisualizationArguments, ImageDataArguments),
        description=description or __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(viz_args: VisualizationArguments, data_args: ImageDataArguments) -> dict[str, str]:
    """Write the figures into ``--output_dir``; returns ``{figure: path}``."""
    setup_logging("visualize", logging.INFO, library_level=logging.WARNING)  # faiss's loader etc. stay quiet
    names = viz_args.checkpoint_names()
    figures = parse_figures(viz_args.figures)
    dataset = None
    if figures is None or set(figures) - {"curves"}:
        splits = load_image_datasets(data_args, seed=viz_args.seed)
        if viz_args.split not in splits:
            raise ValueError(f"The dataset has no {viz_args.split!r} split; it has {sorted(splits)}")
        dataset = splits[viz_args.split]
    written = write_figures(
        dict(zip(names, viz_args.model_name_or_path, strict=True)),
        viz_args.output_dir,
        figures=figures,
        dataset=dataset,
        image_column=data_args.image_column_name,
        label_column=data_args.label_column_name,
        runs=dict(zip(names, viz_args.runs, strict=True)) if viz_args.runs else None,
        linear_accuracy=dict(zip(names, viz_args.linear_accuracy, strict=True)) if viz_args.linear_accuracy else None,
        num_classes=viz_args.num_classes,
        max_samples_per_class=viz_args.max_samples_per_class,
        image_indices=viz_args.image_indices,
        num_images=viz_args.num_images,
        display_channels=viz_args.figure_channels,
        pooling=viz_args.pooling,
        batch_size=viz_args.batch_size,
        davies_bouldin_space=viz_args.davies_bouldin_space,
        seed=viz_args.seed,
        dpi=viz_args.dpi,
    )
    for figure, path in written.items():
        logger.info("%s: %s (%s)", figure, path, FIGURES[figure][1])
    return {figure: str(path) for figure, path in written.items()}


def entry_point() -> None:
    """The `hf-magma-visualize` console command."""
    run_program(lambda: main(*make_parser().parse_args_and_config()))


if __name__ == "__main__":
    entry_point()

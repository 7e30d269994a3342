"""Writing the figures of checkpoints: `write_figures` (``scripts/visualize.py``) and `write_checkpoint_figures`
(the end of a pretraining or evaluation run, embedded in the model card), with the script's arguments."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..data.columns import resolve_columns
from ..data.labels import sample_per_class
from ..data.transforms import ImageTransform
from ..encoders.features import extract_features
from ..encoders.loading import load_encoder
from ..losses.pooling import IMAGE_POOLINGS, ImagePooling
from ..models.arguments import load_image_processor
from ..records.card_results import add_figures
from ..records.figure_options import FIGURES, parse_figures
from ..records.trainer_state import find_trainer_state
from ..utils.checks import check_number
from .attention import plot_attention_maps, plot_key_pca
from .curves import plot_training_curves
from .pacmap import plot_pacmap, select_classes
from .reconstructions import load_pretraining_model, plot_reconstructions

logger = logging.getLogger(__name__)


@dataclass
class VisualizationArguments:
    """Options of ``scripts/visualize.py``, parsed by ``HfArgumentParser`` beside
    `hf_magma.data.ImageDataArguments`."""

    model_name_or_path: list[str] = field(
        metadata={"help": "Checkpoints (local folders or Hub ids) to compare side by side, in panel order."}
    )
    names: list[str] | None = field(
        default=None, metadata={"help": "A panel title per checkpoint (default: the folder or repo name)."}
    )
    figures: str = field(
        default="all", metadata={"help": f"Comma-separated figures among {', '.join(FIGURES)}, or 'all'."}
    )
    output_dir: str = field(default="figures", metadata={"help": "Where the PNG files are written."})
    split: str = field(default="validation", metadata={"help": "The dataset split the images and features come from."})
    runs: list[str] | None = field(
        default=None,
        metadata={"help": "Run folders or trainer_state.json files for the curves, one per checkpoint "
                  "(default: the checkpoint folders that hold a trainer_state.json)."},
    )
    linear_accuracy: list[float] | None = field(
        default=None, metadata={"help": "Linear-probe accuracy (fraction) per checkpoint, shown in the PaCMAP titles."}
    )
    num_classes: int = field(default=10, metadata={"help": "How many random classes the PaCMAP plot shows."})
    max_samples_per_class: int = field(default=200, metadata={"help": "Images per class in the PaCMAP plot."})
    davies_bouldin_space: str = field(
        default="embedding",
        metadata={"help": "Where the Davies-Bouldin index is computed: 'embedding' (the plotted 2-D PaCMAP points) "
                  "or 'features' (the encoder features)."},
    )
    pooling: str = field(default="cls", metadata={"help": "Feature pooling for PaCMAP: 'cls' or 'mean'."})
    num_images: int = field(
        default=2, metadata={"help": "Images (seeded picks) in the key-PCA and attention figures."}
    )
    image_indices: list[int] | None = field(
        default=None, metadata={"help": "Dataset indices of the images to show (instead of --num_images picks)."}
    )
    figure_channels: list[int] | None = field(
        default=None,
        metadata={"help": "The image channels the key-PCA, attention and reconstruction figures show as red, green, "
                  "blue (three 0-based indices, e.g. 3 2 1 for a multispectral image's natural colours) or as grey "
                  "(one). Default: the first three."},
    )
    batch_size: int = field(default=256, metadata={"help": "Batch size of the feature extraction."})
    seed: int = field(default=0, metadata={"help": "Seed of the class, image and sample picks and of PaCMAP."})
    dpi: int = field(default=100, metadata={"help": "Resolution of the PNG files."})

    def __post_init__(self) -> None:
        parse_figures(self.figures)
        if self.names is not None and len(self.names) != len(self.model_name_or_path):
            raise ValueError(f"--names has {len(self.names)} entries for {len(self.model_name_or_path)} checkpoints")
        for option in ("runs", "linear_accuracy"):
            value = getattr(self, option)
            if value is not None and len(value) != len(self.model_name_or_path):
                raise ValueError(f"--{option} needs one entry per checkpoint ({len(self.model_name_or_path)})")
        if self.davies_bouldin_space not in ("embedding", "features"):
            raise ValueError(
                f"--davies_bouldin_space must be 'embedding' or 'features', got {self.davies_bouldin_space!r}"
            )
        if self.pooling not in IMAGE_POOLINGS:
            raise ValueError(f"--pooling must be 'cls' or 'mean', got {self.pooling!r}")
        channels = self.figure_channels
        if channels is not None and (len(channels) not in (1, 3) or min(channels) < 0):
            raise ValueError(f"--figure_channels must be 1 or 3 channel indices (0-based), got {channels}")

    def checkpoint_names(self) -> list[str]:
        """The panel titles: ``names`` or each checkpoint's last path component, made unique."""
        if self.names is not None:
            names = list(self.names)
        else:
            names = [Path(str(p).rstrip("/")).name or str(p) for p in self.model_name_or_path]
        if len(set(names)) != len(names):
            raise ValueError(f"Checkpoint names must be unique, got {names}: pass --names")
        return names



def write_figures(
    checkpoints: Mapping[str, str | os.PathLike | nn.Module],
    output_dir: str | os.PathLike,
    *,
    figures: str | Sequence[str] | None = None,
    dataset: Any = None,
    image_processor: Any = None,
    image_column: str | None = None,
    label_column: str | None = None,
    runs: Mapping[str, str | os.PathLike] | None = None,
    linear_accuracy: Mapping[str, float] | None = None,
    num_classes: int = 10,
    max_samples_per_class: int | None = 200,
    image_indices: Sequence[int] | None = None,
    num_images: int = 2,
    display_channels: Sequence[int] | None = None,
    pooling: ImagePooling = "cls",
    batch_size: int = 256,
    davies_bouldin_space: Literal["embedding", "features"] = "embedding",
    seed: int = 0,
    dpi: int = 100,
) -> dict[str, Path]:
    """Draw the requested figures (`FIGURES`) for ``{name: checkpoint path or model}`` into ``output_dir``.

    ``dataset`` (a map-style ``datasets.Dataset``, e.g. a validation split) supplies the images of the key-PCA,
    attention and reconstruction figures (``image_indices``, else ``num_images`` seeded picks; the reconstructions
    need each checkpoint's decoder and use a mask drawn from ``seed``; ``display_channels`` picks the channels they
    show, `images_for_display`) and the labelled features of the PaCMAP
    figure, extracted with `hf_magma.evaluation.extract_features` from ``max_samples_per_class`` images of
    ``num_classes`` random classes. Images are prepared like evaluation images with ``image_processor`` (default:
    the first checkpoint's, else ViT's defaults, at the model's image size). Curves read ``runs`` (default: each
    checkpoint directory holding a ``trainer_state.json``). With ``figures=None`` every figure the inputs allow is
    drawn and the others are skipped; a figure asked for by name whose inputs are missing raises ``ValueError``.
    Returns ``{figure: png path}``.
    """
    if not checkpoints:
        raise ValueError("`checkpoints` is empty: pass {name: checkpoint path or model}")
    requested = parse_figures(figures)
    wanted = requested or list(FIGURES)
    output_dir = Path(output_dir)
    runs = _runs_of(checkpoints) if runs is None else runs

    def unavailable(figure: str, reason: str) -> None:
        if requested is not None:
            raise ValueError(f"Cannot draw the {figure!r} figure: {reason}")
        logger.info("Skipping the %s figure: %s", figure, reason)

    needs_data = [f for f in wanted if f in ("pacmap", "keys", "attention", "reconstructions")]
    reason = "no dataset was given" if dataset is None else (
        None if hasattr(dataset, "__getitem__") else "it needs a map-style dataset (not a streamed one)"
    )
    if needs_data and reason:
        for figure in needs_data:
            unavailable(figure, reason)
        needs_data = []

    written: dict[str, Path] = {}
    if "curves" in wanted:
        if runs:
            written["curves"] = output_dir / FIGURES["curves"][0]
            plot_training_curves(runs, written["curves"], dpi=dpi)
        else:
            unavailable("curves", "no checkpoint holds a trainer_state.json and no `runs` were given")
    if not needs_data:
        return written

    models = {name: load_encoder(source) for name, source in checkpoints.items()}
    transform = _evaluation_transform(checkpoints, models, image_processor)
    image_column, label_column = resolve_columns(dataset, image_column, label_column)

    image_figures = [f for f in needs_data if f in ("keys", "attention", "reconstructions")]
    if image_figures:
        pixel_values = _chosen_images(dataset, image_column, transform, image_indices, num_images, seed)
        mean, std = transform.mean.flatten().tolist(), transform.std.flatten().tolist()
        for figure, plot in (("keys", plot_key_pca), ("attention", plot_attention_maps)):
            if figure in image_figures:
                written[figure] = output_dir / FIGURES[figure][0]
                plot(models, pixel_values, written[figure], image_mean=mean, image_std=std,
                     display_channels=display_channels, dpi=dpi)
        if "reconstructions" in image_figures:
            try:
                pretraining = {name: load_pretraining_model(source) for name, source in checkpoints.items()}
            except ValueError as error:
                unavailable("reconstructions", str(error))
            else:
                written["reconstructions"] = output_dir / FIGURES["reconstructions"][0]
                plot_reconstructions(pretraining, pixel_values, written["reconstructions"], image_mean=mean,
                                     image_std=std, seed=seed, display_channels=display_channels, dpi=dpi)

    if "pacmap" in needs_data:
        if label_column is None:
            unavailable("pacmap", "the dataset has no label column")
        else:
            written["pacmap"] = output_dir / FIGURES["pacmap"][0]
            _pacmap_figure(
                models, dataset, written["pacmap"], transform, image_column, label_column,
                num_classes=num_classes, max_samples_per_class=max_samples_per_class, pooling=pooling,
                batch_size=batch_size, linear_accuracy=linear_accuracy, davies_bouldin_space=davies_bouldin_space,
                seed=seed, dpi=dpi,
            )
    return {f: written[f] for f in FIGURES if f in written}


def _evaluation_transform(
    checkpoints: Mapping[str, str | os.PathLike | nn.Module], models: Mapping[str, nn.Module], image_processor: Any,
) -> ImageTransform:
    """The evaluation transform of ``image_processor``, by default the first checkpoint's at its model's size."""
    first_model = next(iter(models.values()))
    if image_processor is None:
        first = next(iter(checkpoints.values()))
        if not isinstance(first, (str, os.PathLike)):
            raise ValueError("Pass `image_processor` when the checkpoints are model objects")
        image_processor = load_image_processor(first, first_model.config.image_size)
    return ImageTransform.from_image_processor(
        image_processor, train=False, num_channels=first_model.config.num_channels
    )


def _pacmap_figure(
    models: Mapping[str, nn.Module], dataset: Any, path: Path, transform: ImageTransform, image_column: str,
    label_column: str, *, num_classes: int, max_samples_per_class: int | None, pooling: ImagePooling,
    batch_size: int, linear_accuracy: Mapping[str, float] | None, davies_bouldin_space: str, seed: int, dpi: int,
) -> None:
    """`plot_pacmap` of the models' features of ``max_samples_per_class`` images of ``num_classes`` random classes;
    the panels' Davies-Bouldin indices go to a ``.json`` beside the figure."""
    labels = np.asarray(dataset[label_column])
    classes = select_classes([labels], num_classes, seed)
    subset = dataset.select(sample_per_class(labels, max_samples_per_class, classes=classes, seed=seed).tolist())
    features = {
        name: extract_features(
            model, subset, pooling=pooling, batch_size=batch_size, transform=transform,
            image_column=image_column, label_column=label_column,
        )
        for name, model in models.items()
    }
    feature = getattr(dataset, "features", {}).get(label_column)
    panels = plot_pacmap(
        features, path, num_classes=num_classes, seed=seed, max_samples_per_class=None,
        linear_accuracy=linear_accuracy, class_names=getattr(feature, "names", None),
        davies_bouldin_space=davies_bouldin_space, dpi=dpi,
    )
    # The panels' scores beside the figure, for tables (`hf_magma.cli.compare_runs`).
    scores = {p.name: {"davies_bouldin": p.davies_bouldin, "davies_bouldin_space": davies_bouldin_space,
                       "num_points": int(len(p.labels))} for p in panels}
    path.with_suffix(".json").write_text(json.dumps(scores, indent=2) + "\n")


def _runs_of(checkpoints: Mapping[str, str | os.PathLike | nn.Module]) -> dict[str, Path]:
    """The ``trainer_state.json`` of each checkpoint folder that has one."""
    runs = {}
    for name, source in checkpoints.items():
        if isinstance(source, (str, os.PathLike)):
            with contextlib.suppress(FileNotFoundError):
                runs[name] = find_trainer_state(source)
    return runs


def _chosen_images(
    dataset: Any, image_column: str, transform: ImageTransform, image_indices: Sequence[int] | None,
    num_images: int, seed: int,
) -> torch.Tensor:
    """(B, C, H, W) model inputs of the images at ``image_indices``, else of ``num_images`` seeded picks."""
    if image_indices is None:
        check_number("num_images", num_images, sign="positive", integer=True)
        count = min(num_images, len(dataset))
        image_indices = sorted(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False).tolist())
    for i in image_indices:
        if not 0 <= i < len(dataset):
            raise ValueError(f"Image index {i} is outside the dataset (0..{len(dataset) - 1})")
    return torch.stack([transform(dataset[int(i)][image_column]) for i in image_indices])


def write_checkpoint_figures(
    checkpoint_dir: str | os.PathLike,
    dataset: Any = None,
    *,
    figures: str | Sequence[str] | None = None,
    name: str | None = None,
    subfolder: str = "figures",
    update_model_card: bool = True,
    **kwargs: Any,
) -> dict[str, str]:
    """Write a checkpoint's figures into ``checkpoint_dir/subfolder`` and embed them in its model card.

    For the end of a pretraining or evaluation run: ``write_figures`` for this one checkpoint (``kwargs`` are
    passed on), then, when ``checkpoint_dir`` has a ``README.md`` and ``update_model_card``, the figures are
    added to it with `hf_magma.records.card_results.add_figures`. Returns ``{caption: path relative to
    checkpoint_dir}``.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise FileNotFoundError(f"No checkpoint directory {str(checkpoint_dir)!r}")
    name = name or checkpoint_dir.name
    written = write_figures(
        {name: checkpoint_dir}, checkpoint_dir / subfolder, figures=figures, dataset=dataset, **kwargs
    )
    relative = {FIGURES[f][1]: path.relative_to(checkpoint_dir).as_posix() for f, path in written.items()}
    if relative and update_model_card and (checkpoint_dir / "README.md").is_file():
        add_figures(checkpoint_dir, relative)
    return relative

"""The model-free floor of the evaluation protocol: k-NN and linear probe on the normalised pixels.

Every encoder in a results table is read against this row: the same splits, the same eval transform (resize,
centre crop, the image processor's mean/std, at the checkpoints' resolution), the same `evaluate_features`, but the
features are the flattened pixels instead of an encoder's output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import PIL.Image
from transformers import AutoConfig, TrainingArguments, set_seed

from ..data import FASHION_MNIST_HUB_ID, ImageDataArguments, ImageTransform, decode_image
from ..evaluation import EvaluationArguments, evaluate_features
from ..model_config import load_image_processor
from .evaluation import evaluation_splits, format_results_table

logger = logging.getLogger(__name__)

#: The resolution of the Fashion-MNIST checkpoints (and of the raw images), used when no other size is given.
DEFAULT_PIXEL_SIZE = 28


def pixel_features(
    dataset: Any,
    transform: ImageTransform,
    *,
    image_column: str,
    label_column: str,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened normalised pixels and labels of a ``datasets.Dataset``.

    Args:
        dataset: the split, with images in ``image_column`` and class ids in ``label_column``.
        transform: the eval `ImageTransform` (resize, centre crop, normalise) that encoders see.
        image_column: the image column.
        label_column: the label column.
        batch_size: images transformed per batch (the result does not depend on it).

    Returns:
        ``(features, labels)``: float32 (N, C * H * W) and int64 (N,).
    """
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for batch in dataset.iter(batch_size=batch_size):
        pixels = torch.stack([transform(image) for image in batch[image_column]])
        features.append(pixels.flatten(1).float())
        labels.append(torch.as_tensor(batch[label_column]).long())
    if not features:
        raise ValueError("the dataset is empty: no images to take pixels from")
    return torch.cat(features), torch.cat(labels)


def image_channels(value: Any) -> int:
    """1 for a grey image (2-D array, one-channel array, PIL mode ``L``/``1``/``I``/``F``), else 3."""
    image = decode_image(value)
    if isinstance(image, PIL.Image.Image):
        return 1 if image.mode in ("L", "1", "I", "F", "I;16") else 3
    return 1 if image.ndim == 2 or image.shape[-1] == 1 else 3


def pixel_transform(image_processor_name: str | None, image_size: int, num_channels: int) -> ImageTransform:
    """The eval transform of the pixel floor: the image processor's statistics (ViT's defaults without one)."""
    processor = load_image_processor(image_processor_name, image_size, required=image_processor_name is not None)
    return ImageTransform.from_image_processor(processor, train=False, num_channels=num_channels)


def run_pixel_evaluation(
    eval_args: EvaluationArguments,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
    *,
    image_size: int | None = None,
    num_channels: int | None = None,
) -> dict[str, Any]:
    """`run_evaluation`'s protocol (k-NN, linear probe per label fraction) on the normalised pixels; writes
    ``eval_results.json`` in ``training_args.output_dir`` and prints the table.

    ``eval_args.model_name_or_path``, when given, names the image processor (mean/std) to normalise with, as the
    checkpoint's evaluation would, and its config the resolution; without it, ViT's defaults (mean 0.5, std 0.5),
    which the Fashion-MNIST recipes use, at ``image_size`` (default 28). ``num_channels`` defaults to the images'
    own: 1 when the first 32 training images are all grey (an RGB encoder sees three copies of the same values),
    else 3.

    Returns:
        The record written: settings, sizes, ``results`` (``knn_accuracy``, ``linear_accuracy[_<p>pct]``) and the
        feature-extraction and scoring times in seconds.
    """
    set_seed(training_args.seed)
    train, test, test_name, image_column, label_column = evaluation_splits(eval_args, data_args, training_args.seed)
    if image_size is None:
        source = eval_args.model_name_or_path
        image_size = AutoConfig.from_pretrained(source).image_size if source is not None else DEFAULT_PIXEL_SIZE
    if num_channels is None:  # grey data stays one channel; any colour image among the first 32 makes it three
        num_channels = max(image_channels(value) for value in train.select(range(min(32, len(train))))[image_column])
    transform = pixel_transform(eval_args.model_name_or_path, image_size, num_channels)

    begin = time.perf_counter()
    train_x, train_y = pixel_features(train, transform, image_column=image_column, label_column=label_column)
    test_x, test_y = pixel_features(test, transform, image_column=image_column, label_column=label_column)
    extract_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    results = evaluate_features(train_x, train_y, test_x, test_y, eval_args, seed=training_args.seed,
                                show_progress=not training_args.disable_tqdm)
    score_seconds = time.perf_counter() - begin

    record = {
        "model_name_or_path": "pixels",
        "image_processor": eval_args.model_name_or_path or "ViT defaults",
        "dataset": data_args.dataset_name or data_args.train_dir or FASHION_MNIST_HUB_ID,
        "train_split": data_args.train_split,
        "test_split": test_name,
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "transform": repr(transform),
        "settings": dataclasses.asdict(eval_args),
        "results": results,
        "extract_seconds": round(extract_seconds, 1),
        "score_seconds": round(score_seconds, 1),
    }
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "eval_results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(format_results_table(results))
    logger.info("Pixel floor written to %s", output_dir / "eval_results.json")
    return record

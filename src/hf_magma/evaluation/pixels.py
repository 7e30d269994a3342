"""The features of the model-free floor: the images themselves after the eval transform, flattened.

Every encoder in a results table is read against the k-NN and linear probe on these features (the same splits and
`evaluate_features`); the run is `hf_magma.cli.run_eval.run_pixel_evaluation` (``scripts/run_eval.py --pixels``).
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch

from ..data.decoding import decode_image
from ..data.transforms import ImageTransform
from ..models.arguments import load_image_processor

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

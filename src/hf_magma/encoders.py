"""ViT encoders for frozen features and figures: loading one from any ViT / ViT-MAE checkpoint or model, the one
unmasked in-order forward (`run_unmasked`), pooled features of a batch (`encode`) and of a dataset
(`extract_features`).

Evaluation (`hf_magma.evaluation`) and figures (`hf_magma.visualize`) both build on this module and never on
each other.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Sized
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, PreTrainedModel, ViTMAEModel, ViTModel

from .checks import check_number, named_weights_errors
from .data import ImageTransform, check_label_feature, resolve_columns
from .transforms import UNREADABLE_IMAGE_ERRORS, image_name
from .losses import IMAGE_POOLINGS, ImagePooling, pool_hidden_state
from .modeling import ViTMAEEncoder

SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")

Encoder = ViTMAEModel | ViTModel

def check_local_path(source: str | os.PathLike) -> None:
    """Raise naming ``source`` when it is written as a local path (not a Hub id ``name`` / ``org/name``) that does
    not exist, instead of the Hub client's complaint about the form of repo ids."""
    text = os.fspath(source)
    looks_local = (isinstance(source, os.PathLike) or os.path.isabs(text) or text.startswith((".", "~"))
                   or text.count("/") > 1 or os.sep != "/" and os.sep in text)
    if looks_local and not os.path.exists(os.path.expanduser(text)):
        raise FileNotFoundError(
            f"--model_name_or_path {text}: no such folder. Give a checkpoint folder that exists (the output_dir of "
            "a pretraining run, or one of its checkpoint-N folders) or a Hub model id such as org/name."
        )

logger = logging.getLogger(__name__)


def load_encoder(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Encoder:
    """The ViT encoder of a checkpoint (local path or Hub id) or of a model object, ready for frozen features.

    Accepts ViT-MAE checkpoints (ours or plain ``vit_mae``) and ViT checkpoints (``ViTModel``,
    ``ViTForImageClassification``...). Checkpoints loaded here get ``mask_ratio = 0``; `encode` keeps every
    token in its original order for any encoder. Anything that is not a ViT raises ``ValueError``.

    Args:
        model_name_or_path_or_model: a checkpoint folder, a Hub model id, or a model (a ``ViTMAEModel`` /
            ``ViTModel``, or one holding it as ``.vit``).
        revision, token: for Hub checkpoints.

    Returns:
        The ``ViTMAEModel`` or ``ViTModel`` (checkpoints: in eval mode; a model object's own encoder as it is).
    """
    source = model_name_or_path_or_model
    if isinstance(source, nn.Module):
        return _encoder_of(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"expected a checkpoint path, a Hub model id or a model, got {type(source).__name__}"
        )
    check_local_path(source)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, token=token)
    except OSError as error:
        if os.path.exists(os.path.expanduser(os.fspath(source))):
            raise
        raise OSError(
            f"--model_name_or_path {os.fspath(source)}: no local folder of that name, and the Hub could not give a "
            f"model of that id ({error}). Check the spelling: a local checkpoint folder (the output_dir of a "
            "pretraining run, or one of its checkpoint-N folders; ./name for one in the current folder) or a Hub "
            "model id such as org/name."
        ) from error
    model_type = getattr(config, "model_type", None)
    if model_type == "vit_mae":
        encoder_class: type[PreTrainedModel] = ViTMAEEncoder  # the decoder's weights are dropped without a report
        kwargs: dict[str, Any] = {}
        config.mask_ratio = 0.0
    elif model_type == "vit":
        encoder_class, kwargs = ViTModel, {"add_pooling_layer": False}
    else:
        raise ValueError(
            f"{os.fspath(source)!r} is a `{model_type}` checkpoint, not a ViT: evaluation needs one of "
            f"{SUPPORTED_MODEL_TYPES} (a ViT-MAE or ViT encoder)"
        )
    with named_weights_errors(source):
        encoder, info = encoder_class.from_pretrained(
            source, config=config, revision=revision, token=token, output_loading_info=True, **kwargs
        )
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise ValueError(
            f"{os.fspath(source)!r} does not hold a complete {model_type} encoder; missing weights: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    return encoder.eval()


def _encoder_of(model: nn.Module) -> Encoder:
    if isinstance(model, (ViTMAEModel, ViTModel)):
        return model
    inner = getattr(model, "vit", None)
    if isinstance(inner, (ViTMAEModel, ViTModel)):
        return inner
    raise ValueError(
        f"{type(model).__name__} is not a ViT: evaluation needs a ViTMAEModel, ViTModel or a model holding one "
        "as `.vit` (ViTMAEForPreTraining, ViTMAEWithMAGMA, ViTForImageClassification...)"
    )


@contextlib.contextmanager
def _unmasked(encoder: Encoder):
    """Temporarily set a ViT-MAE encoder's mask ratio to 0 (restored afterwards: the model may be in training)."""
    if not isinstance(encoder, ViTMAEModel):
        yield
        return
    config = encoder.embeddings.config
    saved = config.mask_ratio
    config.mask_ratio = 0.0
    try:
        yield
    finally:
        config.mask_ratio = saved



def patch_grid(model: nn.Module, pixel_values: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of the patch grid that ``pixel_values`` (B, C, H, W) gives, checking it fits the model.

    Args:
        model: a ViT / ViT-MAE encoder or a model holding one as ``.vit``.
        pixel_values: images of shape (B, C, H, W) with the model's channels and image size.

    Returns:
        ``(H // patch_height, W // patch_width)``.
    """
    config = load_encoder(model).config
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"`pixel_values` must be a (B, C, H, W) tensor (batch, channels, height, width), got {shape}"
        )
    _, channels, height, width = pixel_values.shape
    if channels != config.num_channels:
        raise ValueError(f"`pixel_values` has {channels} channels, the model expects {config.num_channels}")
    image_size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    if (height, width) != tuple(image_size):
        raise ValueError(f"`pixel_values` are {height}x{width}, the model expects {image_size[0]}x{image_size[1]}")
    patch = config.patch_size if isinstance(config.patch_size, (tuple, list)) else (config.patch_size,) * 2
    return height // patch[0], width // patch[1]


def run_unmasked(model: nn.Module, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
    """The encoder's output on every patch of ``pixel_values``, in the original order and with nothing masked.

    The encoder (``model`` itself or its ``.vit``) runs in eval mode on the images moved to its device and dtype;
    its training mode is restored afterwards, as is a ViT-MAE encoder's mask ratio (the model may be in
    training). A ViT-MAE encoder runs with its mask ratio at 0 and an increasing ``noise``, since it shuffles
    tokens by ``argsort(noise)`` even with nothing masked; the returned ``ids_restore`` is checked to be the
    identity. Gradients follow the caller's grad mode.

    Args:
        model: a ViT / ViT-MAE encoder or a model holding one as ``.vit`` (``ViTMAEWithMAGMA``...).
        pixel_values: images of shape (B, C, H, W) that fit the model (checked by `patch_grid`).
        **kwargs: passed to the encoder (e.g. ``output_attentions=True``, ``output_hidden_states=True``).

    Returns:
        The encoder's output; ``last_hidden_state`` is (B, 1 + P, D): the CLS token, then the P patches row by row.
    """
    encoder = load_encoder(model)
    patch_grid(encoder, pixel_values)
    parameter = next(encoder.parameters())
    pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        if not isinstance(encoder, ViTMAEModel):
            return encoder(pixel_values=pixel_values, **kwargs)
        num_patches = encoder.embeddings.patch_embeddings.num_patches
        order = torch.arange(num_patches, device=pixel_values.device).expand(pixel_values.shape[0], num_patches)
        with _unmasked(encoder):
            outputs = encoder(pixel_values=pixel_values, noise=order.float(), **kwargs)
    finally:
        encoder.train(was_training)
    if outputs.ids_restore is None or not torch.equal(outputs.ids_restore, order):
        raise RuntimeError("The encoder reordered the patch tokens although order-preserving noise was passed")
    return outputs


def encode(encoder: nn.Module, pixel_values: torch.Tensor, pooling: ImagePooling = "cls") -> torch.Tensor:
    """Pooled features of one batch: all patches, in their original order, no masking (`run_unmasked`).

    Args:
        encoder: a ViT / ViT-MAE encoder or a model holding one as ``.vit``.
        pixel_values: images of shape (B, C, H, W).
        pooling: ``cls``, the CLS token after the final LayerNorm; ``mean``, the mean of the patch tokens after it.

    Returns:
        Features of shape (B, D).
    """
    if pooling not in IMAGE_POOLINGS:
        raise ValueError(f"`pooling` must be one of {IMAGE_POOLINGS}, got {pooling!r}")
    return pool_hidden_state(run_unmasked(encoder, pixel_values).last_hidden_state, pooling)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def extract_features(
    model: str | os.PathLike | nn.Module,
    dataset_or_loader: Any,
    *,
    pooling: ImagePooling = "cls",
    batch_size: int = 256,
    transform: Callable[[Any], torch.Tensor] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frozen features (N, D) and labels (N,) of a dataset, batched under ``torch.inference_mode``.

    ``dataset_or_loader`` is a ``datasets.Dataset``/``IterableDataset`` (images in ``image_column`` go through
    ``transform``, by default an eval `ImageTransform` at the model's size with ImageNet statistics; the
    columns are auto-detected when not given), a torch ``Dataset`` of ``(image, label)`` pairs, or an
    iterable of batches (dicts with ``pixel_values``/``labels`` or ``(pixel_values, labels)`` tuples). Every
    image is encoded on its own footing, so the result does not depend on ``batch_size``. Labels are ``None``
    when the data has none. Features are float32 on the CPU.

    Args:
        model: a checkpoint path, a Hub id or a model (see `load_encoder`).
        dataset_or_loader: the images, as above.
        pooling: ``cls`` or ``mean`` (see `encode`).
        batch_size: images per forward pass.
        transform: one image -> (C, H, W) tensor, for datasets of raw images.
        image_column, label_column: the columns of a ``datasets`` dataset (detected when not given).

    Returns:
        ``(features, labels)``: (N, D) float32 and (N,) int64 tensors (labels ``None`` without labels).
    """
    check_number("batch_size", batch_size, sign="positive", integer=True)
    encoder = load_encoder(model)
    device, dtype = _model_device_dtype(encoder)
    if transform is None and _is_hf_dataset(dataset_or_loader):
        config = encoder.config
        transform = ImageTransform(config.image_size, train=False, num_channels=config.num_channels)
    batches, total = _iter_batches(dataset_or_loader, batch_size, transform, image_column, label_column)
    was_training = encoder.training
    encoder.eval()
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for pixel_values, batch_labels in tqdm(
                batches, total=total, desc="Extracting features", unit="batch", disable=not show_progress
            ):
                pixel_values = pixel_values.to(device=device, dtype=dtype)
                features.append(encode(encoder, pixel_values, pooling).float().cpu())
                if batch_labels is not None:
                    labels.append(torch.as_tensor(batch_labels).long().cpu())
    finally:
        encoder.train(was_training)
    if not features:
        raise ValueError("the dataset is empty: no images to extract features from")
    all_features = torch.cat(features)
    if labels and len(labels) != len(features):
        raise ValueError("some batches have labels and others do not")
    return all_features, (torch.cat(labels) if labels else None)


def _is_hf_dataset(data: Any) -> bool:
    return isinstance(data, (datasets.Dataset, datasets.IterableDataset))


def _iter_batches(
    data: Any,
    batch_size: int,
    transform: Callable[[Any], torch.Tensor] | None,
    image_column: str | None,
    label_column: str | None,
) -> tuple[Iterable[tuple[torch.Tensor, Any]], int | None]:
    """Normalise the accepted inputs into an iterable of ``(pixel_values, labels or None)`` and its length."""
    if _is_hf_dataset(data):
        return _iter_hf_dataset(data, batch_size, transform, image_column, label_column)
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        total = len(data)
    except TypeError:
        total = None
    return (_unpack_batch(batch, transform) for batch in data), total


def _unpack_batch(batch: Any, transform: Callable[[Any], torch.Tensor] | None) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, dict):
        if "pixel_values" not in batch:
            raise ValueError(f"batches given as dicts need a `pixel_values` entry, got keys {sorted(batch)}")
        pixel_values, labels = batch["pixel_values"], batch.get("labels", batch.get("label"))
    elif isinstance(batch, (tuple, list)):
        pixel_values, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        pixel_values, labels = batch, None
    if transform is not None and not isinstance(pixel_values, torch.Tensor):
        pixel_values = torch.stack([transform(image) for image in pixel_values])
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`pixel_values` must be a tensor (or pass a `transform`), got {type(pixel_values).__name__}")
    return pixel_values, labels


def _iter_hf_dataset(data, batch_size, transform, image_column, label_column):
    image_column, label_column = resolve_columns(data, image_column, label_column)
    if label_column is not None:
        check_label_feature(data.features, label_column)
    if isinstance(data, Sized) and len(data) == 0:
        raise ValueError("the dataset is empty: no images to extract features from")
    total = math.ceil(len(data) / batch_size) if isinstance(data, Sized) else None

    def batches():
        skipped = 0
        for batch in data.iter(batch_size=batch_size):
            # An unreadable image is left out with its label and named, as in pretraining.
            kept, labels = [], []
            for index, image in enumerate(batch[image_column]):
                try:
                    kept.append(transform(image))
                except UNREADABLE_IMAGE_ERRORS as error:
                    skipped += 1
                    logger.warning("Skipping unreadable image %s (%s); %d skipped so far", image_name(image), error,
                                   skipped)
                    continue
                if label_column is not None:
                    labels.append(batch[label_column][index])
            if kept:
                yield torch.stack(kept), (labels if label_column is not None else None)

    return batches(), total

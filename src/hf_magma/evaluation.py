"""Frozen-feature evaluation of ViT encoders: feature extraction, k-NN, linear probe and label fractions.

The paper's protocol (linear probe and k-NN on frozen features, Tables 1-3) runs here on features extracted once
and cached in memory, so a 100-epoch probe costs seconds instead of 100 passes of the encoder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, Literal

import datasets
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, create_repo, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTMAEModel,
    ViTModel,
    set_seed,
)

from .data import (
    FASHION_MNIST_HUB_ID,
    ImageDataArguments,
    ImageTransform,
    find_image_column,
    find_label_column,
    load_image_datasets,
)
from .hub import push_model_card
from .losses import IMAGE_POOLINGS as POOLINGS
from .losses import ImagePooling as Pooling
from .losses import pool_hidden_state
from .model_card import add_evaluation_results
from .model_config import load_image_processor

KNNWeighting = Literal["distance", "uniform"]

KNN_WEIGHTINGS: tuple[str, ...] = ("distance", "uniform")
# The k-NN vote weight 1 / (distance + KNN_DISTANCE_EPS) used by the authors' tooling.
KNN_DISTANCE_EPS = 1e-5
SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")

Encoder = ViTMAEModel | ViTModel
logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------------------


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
    """
    source = model_name_or_path_or_model
    if isinstance(source, nn.Module):
        return _encoder_of(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"expected a checkpoint path, a Hub model id or a model, got {type(source).__name__}"
        )
    config = AutoConfig.from_pretrained(source, revision=revision, token=token)
    model_type = getattr(config, "model_type", None)
    if model_type == "vit_mae":
        encoder_class: type[PreTrainedModel] = ViTMAEModel
        kwargs: dict[str, Any] = {}
        config.mask_ratio = 0.0
    elif model_type == "vit":
        encoder_class, kwargs = ViTModel, {"add_pooling_layer": False}
    else:
        raise ValueError(
            f"{os.fspath(source)!r} is a `{model_type}` checkpoint, not a ViT: evaluation needs one of "
            f"{SUPPORTED_MODEL_TYPES} (a ViT-MAE or ViT encoder)"
        )
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


def run_unmasked(encoder: Encoder, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
    """The encoder's output on every patch of ``pixel_values``, in the original order and with nothing masked.

    A ViT-MAE encoder runs with its mask ratio at 0 (restored afterwards: the model may be in training) and an
    increasing ``noise``, since it shuffles tokens by ``argsort(noise)`` even with nothing masked; the returned
    ``ids_restore`` is checked to be the identity. A plain ViT encoder runs as is. ``kwargs`` go to the encoder
    (e.g. ``output_attentions=True``). The tokens are the CLS token, then the patches row by row.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`pixel_values` must have shape (batch, channels, height, width), got {shape}")
    if not isinstance(encoder, ViTMAEModel):
        return encoder(pixel_values=pixel_values, **kwargs)
    num_patches = encoder.embeddings.patch_embeddings.num_patches
    order = torch.arange(num_patches, device=pixel_values.device).expand(pixel_values.shape[0], num_patches)
    with _unmasked(encoder):
        outputs = encoder(pixel_values=pixel_values, noise=order.float(), **kwargs)
    if outputs.ids_restore is None or not torch.equal(outputs.ids_restore, order):
        raise RuntimeError("The encoder reordered the patch tokens although order-preserving noise was passed")
    return outputs


def encode(encoder: Encoder, pixel_values: torch.Tensor, pooling: Pooling = "cls") -> torch.Tensor:
    """Pooled (B, D) features of one batch: all patches, in their original order, no masking (`run_unmasked`).

    ``cls``: the CLS token after the final LayerNorm; ``mean``: the mean of the patch tokens after it.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
    return pool_hidden_state(run_unmasked(encoder, pixel_values).last_hidden_state, pooling)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def extract_features(
    model: str | os.PathLike | nn.Module,
    dataset_or_loader: Any,
    *,
    pooling: Pooling = "cls",
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
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
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
    image_column = image_column or find_image_column(data)
    label_column = label_column or find_label_column(data)
    if label_column is not None:
        check_label_feature(data.features, label_column)
    if isinstance(data, Sized) and len(data) == 0:
        raise ValueError("the dataset is empty: no images to extract features from")
    total = math.ceil(len(data) / batch_size) if isinstance(data, Sized) else None

    def batches():
        for batch in data.iter(batch_size=batch_size):
            images = batch[image_column]
            pixel_values = torch.stack([transform(image) for image in images])
            yield pixel_values, (batch[label_column] if label_column is not None else None)

    return batches(), total


def check_label_feature(features: Any, label_column: str) -> None:
    """Raise ``ValueError`` unless ``label_column`` of a ``datasets`` schema holds integer class ids."""

    if features is None:
        return
    if label_column not in features:
        raise ValueError(f"label column {label_column!r} not in the dataset's columns {list(features)}")
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return
    raise ValueError(
        f"label column {label_column!r} holds {feature}, not integer classes: cast it to `datasets.ClassLabel` "
        "(e.g. `dataset.class_encode_column(...)`) or pass another `label_column`"
    )


def _check_features_labels(name: str, features: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"`{name}_x` must be a (N, D) tensor of features, got {shape}")
    if features.shape[0] == 0:
        raise ValueError(f"`{name}_x` is empty: no {name} examples")
    if not torch.isfinite(features).all():
        raise ValueError(f"`{name}_x` holds NaN or infinite values")
    _check_labels(f"{name}_y", labels, features.shape[0])


def _check_labels(name: str, labels: torch.Tensor, length: int | None = None) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"`{name}` must be a 1-D tensor of class ids, got {shape}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class ids, got dtype {labels.dtype}")
    if length is not None and labels.shape[0] != length:
        raise ValueError(f"`{name}` has {labels.shape[0]} labels for {length} feature rows")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"`{name}` holds negative class ids (min {labels.min().item()})")


# --------------------------------------------------------------------------------------------------------------
# k-NN
# --------------------------------------------------------------------------------------------------------------


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    *,
    k: int = 10,
    weighting: KNNWeighting = "distance",
    num_classes: int | None = None,
    chunk_size: int = 4096,
    train_chunk_size: int = 16384,
    show_progress: bool = False,
) -> torch.Tensor:
    """k-NN class predictions (M,) for ``test_x`` by Euclidean distance to ``train_x``.

    Votes are weighted by ``1 / (distance + 1e-5)`` (``distance``, the authors' tooling) or equal (``uniform``);
    ties go to the smallest class id. Distances are computed in (test chunk x train chunk) blocks and the k
    nearest are merged across train chunks with ``torch.topk``, so memory is
    ``chunk_size x train_chunk_size`` floats whatever the data size.
    """
    if weighting not in KNN_WEIGHTINGS:
        raise ValueError(f"`weighting` must be one of {KNN_WEIGHTINGS}, got {weighting!r}")
    _check_labels("train_y", train_y, train_x.shape[0] if train_x.dim() == 2 else None)
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"`{name}` must be a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= train_x.shape[0]:
        raise ValueError(f"`k` must be an integer in [1, {train_x.shape[0]}] (the number of train examples), got {k!r}")
    if chunk_size < 1 or train_chunk_size < 1:
        raise ValueError("`chunk_size` and `train_chunk_size` must be positive")
    num_classes = int(train_y.max()) + 1 if num_classes is None else num_classes
    test_x = test_x.to(train_x.dtype)
    train_y = train_y.to(train_x.device)
    train_sq = train_x.pow(2).sum(dim=1)
    predictions = []
    for start in tqdm(
        range(0, test_x.shape[0], chunk_size), desc="k-NN", unit="chunk", disable=not show_progress
    ):
        queries = test_x[start : start + chunk_size].to(train_x.device)
        best_d: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for t0 in range(0, train_x.shape[0], train_chunk_size):
            keys = train_x[t0 : t0 + train_chunk_size]
            # ||q||^2 is constant per query row: rank by ||k||^2 - 2 q.k and add it back for the k kept.
            partial = torch.addmm(train_sq[t0 : t0 + train_chunk_size], queries, keys.T, beta=1.0, alpha=-2.0)
            d, i = partial.topk(min(k, partial.shape[1]), dim=1, largest=False)
            i = i + t0
            if best_d is not None:
                d, i = torch.cat([best_d, d], dim=1), torch.cat([best_i, i], dim=1)
                d, pick = d.topk(min(k, d.shape[1]), dim=1, largest=False)
                i = i.gather(1, pick)
            best_d, best_i = d, i
        distances = (best_d + queries.pow(2).sum(dim=1, keepdim=True)).clamp_min(0).sqrt()
        if weighting == "distance":
            weights = 1.0 / (distances + KNN_DISTANCE_EPS)
        else:
            weights = torch.ones_like(distances)
        votes = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, train_y[best_i], weights)
        predictions.append(votes.argmax(dim=1).cpu())
    return torch.cat(predictions)


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 10,
    weighting: KNNWeighting = "distance",
    chunk_size: int = 4096,
    train_chunk_size: int = 16384,
    show_progress: bool = False,
) -> float:
    """Top-1 accuracy (in [0, 1]) of `knn_predict` on ``test_x``/``test_y``."""
    _check_features_labels("train", train_x, train_y)
    _check_features_labels("test", test_x, test_y)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    predictions = knn_predict(
        train_x,
        train_y,
        test_x,
        k=k,
        weighting=weighting,
        num_classes=num_classes,
        chunk_size=chunk_size,
        train_chunk_size=train_chunk_size,
        show_progress=show_progress,
    )
    return top1_accuracy(predictions, test_y)


def top1_accuracy(predictions: torch.Tensor, references: torch.Tensor) -> float:
    """Fraction of ``predictions`` equal to ``references``.

    Computed directly: ``evaluate.load("accuracy")`` fetches its metric script from the Hub, which fails
    offline, and the metric is a one-line mean.
    """
    if predictions.shape != references.shape:
        raise ValueError(f"{tuple(predictions.shape)} predictions for {tuple(references.shape)} references")
    if predictions.numel() == 0:
        raise ValueError("no predictions to score")
    return (predictions.cpu() == references.cpu()).double().mean().item()


# --------------------------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------------------------


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    batch_size: int = 256,
    milestones: Sequence[int] = (60, 80),
    gamma: float = 0.1,
    weight_decay: float = 0.0,
    standardize: bool = False,
    seed: int = 0,
    num_classes: int | None = None,
    show_progress: bool = False,
) -> dict[str, float]:
    """Train one ``nn.Linear`` on frozen features with the paper's recipe and report top-1 accuracy.

    SGD (``lr``, ``momentum``, ``weight_decay``), mini-batches of ``batch_size`` drawn by a seeded shuffle each
    epoch, lr x ``gamma`` at each epoch in ``milestones``. Features stay in memory, so an epoch is a few
    matrix products rather than a pass of the encoder. The paper probes raw features (the default);
    ``standardize=True`` scales them by the train set's mean and std first (like MAE's BatchNorm head).
    Returns ``accuracy`` (test top-1), ``train_accuracy`` and ``train_loss`` (last epoch's mean).
    """
    _check_features_labels("train", train_x, train_y)
    _check_features_labels("test", test_x, test_y)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
    if sorted(milestones) != list(milestones):
        raise ValueError(f"`milestones` must be increasing epochs, got {list(milestones)}")
    largest = int(max(train_y.max(), test_y.max())) + 1
    num_classes = largest if num_classes is None else num_classes
    if num_classes < largest:
        raise ValueError(f"`num_classes`={num_classes} but the labels go up to {largest - 1}")

    train_x = train_x.float()
    test_x = test_x.float().to(train_x.device)
    train_y = train_y.long().to(train_x.device)
    if standardize:
        mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-6)
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std

    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(train_x.shape[1], num_classes).to(train_x.device)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)

    with _one_cpu_thread():
        train_loss = _train_head(
            head, optimizer, scheduler, train_x, train_y, epochs, batch_size, generator, show_progress
        )

    with torch.inference_mode():
        train_pred = _predict_in_chunks(head, train_x)
        test_pred = _predict_in_chunks(head, test_x)
    return {
        "accuracy": top1_accuracy(test_pred, test_y),
        "train_accuracy": top1_accuracy(train_pred, train_y),
        "train_loss": train_loss,
    }


@contextlib.contextmanager
def _one_cpu_thread():
    """Run CPU ops on one thread: for (256 x D) @ (D x C) products, OpenMP's synchronisation costs more than
    the work, and on a loaded machine two threads were measured 10-40x slower than one."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _train_head(head, optimizer, scheduler, train_x, train_y, epochs, batch_size, generator, show_progress) -> float:
    n = train_x.shape[0]
    train_loss = float("nan")
    for _ in tqdm(range(epochs), desc="Linear probe", unit="epoch", disable=not show_progress):
        order = torch.randperm(n, generator=generator).to(train_x.device)
        total = torch.zeros((), device=train_x.device)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * idx.numel()
        scheduler.step()
        train_loss = (total / n).item()
        if not math.isfinite(train_loss):
            raise ValueError(
                f"the linear probe diverged (loss {train_loss}): lower `lr` or pass `standardize=True`"
            )
    return train_loss


def _predict_in_chunks(head: nn.Module, x: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
    return torch.cat([head(part).argmax(dim=1) for part in x.split(chunk_size)])


# --------------------------------------------------------------------------------------------------------------
# Label fractions (low-label regime)
# --------------------------------------------------------------------------------------------------------------


def sample_label_fraction(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a subset with the same number of examples from every class (paper Table 3).

    Each class gives ``round(fraction * N / C)`` examples (at least 1), drawn by a per-class permutation seeded
    by ``seed``: the draw is reproducible and smaller fractions are subsets of larger ones. ``fraction=1``
    returns every index. A class with too few examples for its share raises ``ValueError``.
    """
    _check_labels("labels", labels)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}")
    if labels.numel() == 0:
        raise ValueError("`labels` is empty: nothing to sample from")
    labels = labels.cpu()
    if fraction == 1:
        return torch.arange(labels.numel())
    classes = labels.unique(sorted=True)
    per_class = max(1, round(fraction * labels.numel() / classes.numel()))
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for cls in classes.tolist():
        members = (labels == cls).nonzero(as_tuple=True)[0]
        if members.numel() < per_class:
            raise ValueError(
                f"class {cls} has {members.numel()} examples, fewer than the {per_class} per class that "
                f"fraction {fraction} needs"
            )
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(picked).sort().values


# --------------------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationArguments:
    """What to evaluate and how (parsed by ``HfArgumentParser``); defaults are the paper's protocol."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder or Hub model id: ours, a plain ViT-MAE, or a ViT. With --pixels: "
                  "optional, the image processor whose mean/std normalise the pixels."},
    )
    pixels: bool = field(
        default=False,
        metadata={"help": "Score the normalised pixels instead of an encoder's features (the model-free floor): "
                  "same splits, k-NN and linear probe."},
    )
    revision: str | None = field(default=None, metadata={"help": "The Hub revision of the checkpoint."})
    pooling: str = field(
        default="cls",
        metadata={"help": "`cls`: the CLS token after the final LayerNorm; `mean`: the mean of the patch tokens."},
    )
    batch_size: int = field(default=256, metadata={"help": "Images per batch for feature extraction."})
    test_split: str | None = field(
        default=None,
        metadata={"help": "The split to score on: default the source's `test` split, else the validation split."},
    )
    knn_k: int = field(default=10, metadata={"help": "Neighbours of the k-NN classifier (0 skips k-NN)."})
    knn_weighting: str = field(
        default="distance", metadata={"help": "`distance`: votes weighted by 1/(d + 1e-5); `uniform`: equal votes."}
    )
    linear_epochs: int = field(default=100, metadata={"help": "Epochs of the linear probe (0 skips it)."})
    linear_lr: float = field(default=0.1, metadata={"help": "SGD learning rate of the linear probe."})
    linear_momentum: float = field(default=0.9, metadata={"help": "SGD momentum of the linear probe."})
    linear_batch_size: int = field(default=256, metadata={"help": "Mini-batch size of the linear probe."})
    linear_milestones: list[int] = field(
        default_factory=lambda: [60, 80], metadata={"help": "Epochs at which the probe's lr is multiplied by gamma."}
    )
    linear_gamma: float = field(default=0.1, metadata={"help": "The probe's lr factor at each milestone."})
    linear_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the linear probe."})
    standardize: bool = field(
        default=False,
        metadata={"help": "Standardise features with the train set's mean/std before probing (the paper does not)."},
    )
    label_fractions: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Fractions of the train labels for the linear probe, e.g. 0.01 0.05 0.1 1 (Table 3)."},
    )
    figures: str | None = field(
        default=None,
        metadata={"help": "For a local checkpoint: figures drawn on the test split into <checkpoint>/figures and "
                  "embedded in its model card, comma-separated among pacmap, keys, attention, curves, or 'all' "
                  "(the PaCMAP title shows the linear accuracy; needs hf-magma[viz])."},
    )
    finetune: bool = field(
        default=False,
        metadata={"help": "Also fine-tune a ViTForImageClassification from the encoder (TrainingArguments apply)."},
    )

    def __post_init__(self) -> None:
        if self.model_name_or_path is None and not self.pixels:
            raise ValueError("--model_name_or_path is required (a checkpoint to evaluate), unless --pixels scores "
                             "the raw pixels")
        if self.pixels and (self.finetune or self.figures):
            raise ValueError("--pixels scores the pixels with k-NN and the linear probe only; drop --finetune/--figures")
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.knn_weighting not in KNN_WEIGHTINGS:
            raise ValueError(f"--knn_weighting must be one of {KNN_WEIGHTINGS}, got {self.knn_weighting!r}")
        for name in ("batch_size", "linear_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("knn_k", "linear_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 skips it), got {getattr(self, name)}")
        if not self.label_fractions or any(not 0 < f <= 1 for f in self.label_fractions):
            raise ValueError(f"--label_fractions must be in (0, 1], got {self.label_fractions}")


def fraction_suffix(fraction: float) -> str:
    """``0.01`` -> ``"1pct"``: the key suffix of a label fraction's result."""
    return f"{fraction * 100:g}pct"


def evaluate_features(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    args: EvaluationArguments,
    *,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, float]:
    """k-NN and linear-probe top-1 accuracies on cached features, with the settings of ``args``.

    Keys: ``knn_accuracy``; ``linear_accuracy`` (all labels) and ``linear_accuracy_<p>pct`` for each other
    fraction, whose subset is drawn by `sample_label_fraction` with ``seed``.
    """
    results: dict[str, float] = {}
    if args.knn_k > 0:
        results["knn_accuracy"] = knn_accuracy(
            train_x, train_y, test_x, test_y, k=args.knn_k, weighting=args.knn_weighting, show_progress=show_progress
        )
    if args.linear_epochs > 0:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
        for fraction in args.label_fractions:
            subset = sample_label_fraction(train_y, fraction, seed=seed)
            probe = linear_probe(
                train_x[subset],
                train_y[subset],
                test_x,
                test_y,
                epochs=args.linear_epochs,
                lr=args.linear_lr,
                momentum=args.linear_momentum,
                batch_size=args.linear_batch_size,
                milestones=args.linear_milestones,
                gamma=args.linear_gamma,
                weight_decay=args.linear_weight_decay,
                standardize=args.standardize,
                seed=seed,
                num_classes=num_classes,
                show_progress=show_progress,
            )
            key = "linear_accuracy" if fraction == 1 else f"linear_accuracy_{fraction_suffix(fraction)}"
            results[key] = probe["accuracy"]
    return results


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------------------


def image_classifier_from_encoder(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    num_labels: int,
    *,
    id2label: dict[int, str] | None = None,
    revision: str | None = None,
) -> ViTForImageClassification:
    """A `ViTForImageClassification` whose encoder is the checkpoint's (every encoder weight copied, checked),
    with a freshly initialised classifier: the starting point of full fine-tuning (paper Table 2)."""
    if num_labels < 2:
        raise ValueError(f"fine-tuning needs at least 2 classes, got num_labels={num_labels}")
    encoder = load_encoder(model_name_or_path_or_model, revision=revision)
    source = encoder.config
    config = ViTConfig(
        hidden_size=source.hidden_size,
        num_hidden_layers=source.num_hidden_layers,
        num_attention_heads=source.num_attention_heads,
        intermediate_size=source.intermediate_size,
        hidden_act=source.hidden_act,
        hidden_dropout_prob=source.hidden_dropout_prob,
        attention_probs_dropout_prob=source.attention_probs_dropout_prob,
        initializer_range=source.initializer_range,
        layer_norm_eps=source.layer_norm_eps,
        image_size=source.image_size,
        patch_size=source.patch_size,
        num_channels=source.num_channels,
        qkv_bias=source.qkv_bias,
        num_labels=num_labels,
        id2label=id2label or {i: str(i) for i in range(num_labels)},
        label2id={v: k for k, v in (id2label or {i: str(i) for i in range(num_labels)}).items()},
    )
    model = ViTForImageClassification(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = model.vit.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the encoder's weights do not map onto ViTForImageClassification: missing {missing}, "
            f"unexpected {unexpected}"
        )
    return model


def classification_accuracy(eval_prediction: Any) -> dict[str, float]:
    """``compute_metrics`` for `transformers.Trainer`: top-1 accuracy of the logits."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": top1_accuracy(torch.as_tensor(logits).argmax(-1), torch.as_tensor(labels))}


def finetune(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    training_args: TrainingArguments,
    *,
    train_transform: Callable[[Any], torch.Tensor],
    eval_transform: Callable[[Any], torch.Tensor],
    image_column: str,
    label_column: str,
    num_labels: int,
    revision: str | None = None,
) -> dict[str, float]:
    """Fully fine-tune `image_classifier_from_encoder` with the transformers `Trainer`; returns
    ``finetune_accuracy`` (top-1 on ``eval_dataset``). Hyperparameters come from ``training_args``."""
    model = image_classifier_from_encoder(model_name_or_path_or_model, num_labels, revision=revision)

    def with_pixels(transform):
        def apply(batch):
            return {
                "pixel_values": [transform(image) for image in batch[image_column]],
                "labels": batch[label_column],
            }

        return apply

    # The transform adds the model's inputs on the fly, so the raw columns must reach it; the classifier is
    # saved in output_dir, but only the model card is pushed.
    args = dataclasses.replace(training_args, remove_unused_columns=False, push_to_hub=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset.with_transform(with_pixels(train_transform)),
        eval_dataset=eval_dataset.with_transform(with_pixels(eval_transform)),
        compute_metrics=classification_accuracy,
    )
    trainer.train()
    metrics = trainer.evaluate()
    return {"finetune_accuracy": float(metrics["eval_accuracy"])}


def _minimal_card(directory: Path, model_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    card = ModelCard(
        f"---\nlibrary_name: transformers\ntags:\n- image-feature-extraction\n---\n\n# {model_id}\n\n"
        "Evaluated with hf-magma's frozen-feature protocol.\n"
    )
    card.save(directory / "README.md")


def record_results_in_card(
    model_name_or_path: str,
    results: dict[str, float],
    *,
    dataset_name: str,
    dataset_split: str,
    output_dir: str | os.PathLike,
    revision: str | None = None,
    push_to: str | None = None,
    token: str | None = None,
) -> Path:
    """Record ``results`` in the checkpoint's model card and return the card's path.

    A local checkpoint's own ``README.md`` is updated; a Hub checkpoint's card is fetched into ``output_dir``
    and updated there. A checkpoint without a card gets a short one. With ``push_to`` the card is uploaded to
    that Hub repo (created if needed).
    """
    if os.path.isdir(model_name_or_path):
        card_dir = Path(model_name_or_path)
        if not (card_dir / "README.md").is_file():
            _minimal_card(card_dir, card_dir.resolve().name)
    else:
        card_dir = Path(output_dir)
        card_dir.mkdir(parents=True, exist_ok=True)
        try:
            fetched = hf_hub_download(model_name_or_path, "README.md", revision=revision, token=token)
            shutil.copyfile(fetched, card_dir / "README.md")
        except EntryNotFoundError:
            _minimal_card(card_dir, model_name_or_path)
    add_evaluation_results(card_dir, results, dataset_name=dataset_name, dataset_split=dataset_split)
    if push_to is not None:
        create_repo(push_to, exist_ok=True, token=token)
        push_model_card(push_to, card_dir, token=token, commit_message="Add evaluation results")
    return card_dir / "README.md"


def format_results_table(results: dict[str, float]) -> str:
    """A two-column text table of the results, accuracies in percent."""
    width = max(len("metric"), *(len(name) for name in results))
    lines = [f"{'metric':<{width}}  top-1 (%)", f"{'-' * width}  ---------"]
    lines += [f"{name:<{width}}  {100 * value:9.2f}" for name, value in results.items()]
    return "\n".join(lines)


def load_evaluation_splits(
    eval_args: EvaluationArguments, data_args: ImageDataArguments, *, seed: int
) -> tuple[Any, Any, str, str, str]:
    """The labelled train split and the split scored on (``--test_split``, else ``test``, else ``validation``).

    Returns:
        ``(train, test, test_split_name, image_column, label_column)``; a missing split or label column raises
        ``ValueError`` naming the fix.
    """
    splits = load_image_datasets(data_args, seed=seed)
    test_name = eval_args.test_split or ("test" if "test" in splits else "validation")
    if test_name not in splits:
        raise ValueError(f"no {test_name!r} split to evaluate on; the data has {sorted(splits)}")
    train, test = splits["train"], splits[test_name]
    image_column = data_args.image_column_name or find_image_column(train)
    label_column = data_args.label_column_name or find_label_column(train)
    if label_column is None:
        raise ValueError(
            f"the dataset has no label column (columns: {train.column_names}): evaluation needs class labels; "
            "pass --label_column_name if they have an unusual name"
        )
    for name, split in (("train", train), (test_name, test)):
        if split.features is not None and label_column not in split.features:
            raise ValueError(f"the {name} split has no label column {label_column!r}")
        check_label_feature(split.features, label_column)
    return train, test, test_name, image_column, label_column


def run_evaluation(
    eval_args: EvaluationArguments, data_args: ImageDataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """The whole evaluation of ``scripts/run_eval.py``: load the data and the encoder, extract features once,
    run k-NN and the linear probe(s) (and fine-tuning with ``finetune``), write ``eval_results.json``, print a
    table, and record the results in the model card (pushed with ``push_to_hub``)."""
    model_id = eval_args.model_name_or_path
    is_local = os.path.isdir(model_id)
    push_to = None
    if training_args.push_to_hub:
        push_to = training_args.hub_model_id or (None if is_local else model_id)
        if push_to is None:
            raise ValueError("--push_to_hub with a local checkpoint needs --hub_model_id (the repo to update)")
    if eval_args.figures:
        from .visualize import parse_figures  # visualize builds on this module

        parse_figures(eval_args.figures)
        if not is_local:
            raise ValueError("--figures needs a local checkpoint folder (its model card receives the figures)")
    set_seed(training_args.seed)

    # Features are extracted on the run's device (a GPU when there is one); k-NN and the probe run on the CPU.
    encoder = load_encoder(model_id, revision=eval_args.revision).to(training_args.device)
    train, test, test_name, image_column, label_column = load_evaluation_splits(
        eval_args, data_args, seed=training_args.seed
    )
    processor = load_image_processor(model_id, encoder.config.image_size, revision=eval_args.revision)
    train_transform, eval_transform = (
        ImageTransform.from_image_processor(processor, train=train, num_channels=encoder.config.num_channels)
        for train in (True, False)
    )

    def features_of(split):
        return extract_features(
            encoder,
            split,
            pooling=eval_args.pooling,
            batch_size=eval_args.batch_size,
            transform=eval_transform,
            image_column=image_column,
            label_column=label_column,
        )

    train_x, train_y = features_of(train)
    test_x, test_y = features_of(test)
    results = evaluate_features(train_x, train_y, test_x, test_y, eval_args, seed=training_args.seed)
    if eval_args.finetune:
        num_labels = int(max(train_y.max(), test_y.max())) + 1
        results.update(
            finetune(
                model_id,
                train,
                test,
                training_args,
                train_transform=train_transform,
                eval_transform=eval_transform,
                image_column=image_column,
                label_column=label_column,
                num_labels=num_labels,
                revision=eval_args.revision,
            )
        )

    dataset_name = data_args.dataset_name or data_args.train_dir or FASHION_MNIST_HUB_ID
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model_name_or_path": model_id,
        "dataset": dataset_name,
        "train_split": data_args.train_split,
        "test_split": test_name,
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "settings": dataclasses.asdict(eval_args),
        "results": results,
    }
    (output_dir / "eval_results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(format_results_table(results))
    card = record_results_in_card(
        model_id,
        results,
        dataset_name=dataset_name,
        dataset_split=test_name,
        output_dir=output_dir,
        revision=eval_args.revision,
        push_to=push_to,
        token=training_args.hub_token,
    )
    logger.info("Results written to %s and recorded in %s", output_dir / "eval_results.json", card)
    if eval_args.figures:
        from .visualize import write_checkpoint_figures

        accuracy = results.get("linear_accuracy")
        # The figures see the images exactly as the features above did.
        written = write_checkpoint_figures(
            model_id, test, figures=eval_args.figures, image_column=image_column, label_column=label_column,
            image_processor=processor,
            linear_accuracy=None if accuracy is None else {Path(model_id).name: accuracy}, pooling=eval_args.pooling,
            seed=training_args.seed,
        )
        logger.info("Figures written and embedded in the model card: %s", ", ".join(written.values()))
    return results

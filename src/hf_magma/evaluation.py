"""Frozen-feature evaluation of ViT encoders: feature extraction, k-NN, linear probe and label fractions.

The paper's protocol (linear probe and k-NN on frozen features, Tables 1-3) runs here on features extracted once
and cached in memory, so a 100-epoch probe costs seconds instead of 100 passes of the encoder.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
    ViTMAEConfig,
    ViTMAEModel,
    ViTModel,
)

from .losses import pool_hidden_state

Pooling = Literal["cls", "mean"]
KNNWeighting = Literal["distance", "uniform"]

POOLINGS: tuple[str, ...] = ("cls", "mean")
KNN_WEIGHTINGS: tuple[str, ...] = ("distance", "uniform")
# The k-NN vote weight 1 / (distance + KNN_DISTANCE_EPS) used by the authors' tooling.
KNN_DISTANCE_EPS = 1e-5
SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")

Encoder = ViTMAEModel | ViTModel


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


def encode(encoder: Encoder, pixel_values: torch.Tensor, pooling: Pooling = "cls") -> torch.Tensor:
    """Pooled (B, D) features of one batch: all patches, in their original order, no masking.

    ``cls``: the CLS token after the final LayerNorm; ``mean``: the mean of the patch tokens after it.
    ViT-MAE shuffles tokens by ``noise`` even with nothing masked, so an identity-order noise is passed.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
    if pixel_values.dim() != 4:
        raise ValueError(f"`pixel_values` must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}")
    kwargs: dict[str, Any] = {}
    if isinstance(encoder, ViTMAEModel):
        num_patches = encoder.embeddings.patch_embeddings.num_patches
        kwargs["noise"] = torch.arange(num_patches, device=pixel_values.device, dtype=torch.float32).expand(
            pixel_values.shape[0], num_patches
        )
    with _unmasked(encoder):
        hidden = encoder(pixel_values=pixel_values, **kwargs).last_hidden_state
    return pool_hidden_state(hidden, pooling)


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
    ``transform``; labels come from ``label_column``), a torch ``Dataset`` of ``(image, label)`` pairs, or an
    iterable of batches (dicts with ``pixel_values``/``labels`` or ``(pixel_values, labels)`` tuples). Every
    image is encoded on its own footing, so the result does not depend on ``batch_size``. Labels are ``None``
    when the data has none. Features are float32 on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
    encoder = load_encoder(model)
    device, dtype = _model_device_dtype(encoder)
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


def _iter_batches(
    data: Any,
    batch_size: int,
    transform: Callable[[Any], torch.Tensor] | None,
    image_column: str | None,
    label_column: str | None,
) -> tuple[Iterable[tuple[torch.Tensor, Any]], int | None]:
    """Normalise the accepted inputs into an iterable of ``(pixel_values, labels or None)`` and its length."""
    import datasets

    if isinstance(data, (datasets.Dataset, datasets.IterableDataset)):
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
    from .data import find_image_column, find_label_column

    features = data.features
    columns = list(features) if features is not None else list(data.column_names or [])
    image_column = image_column or find_image_column(features if features is not None else columns)
    if label_column is None:
        try:
            label_column = find_label_column(features if features is not None else columns)
        except ValueError:
            label_column = None
    if label_column is not None:
        check_label_feature(features, label_column)
    total = math.ceil(len(data) / batch_size) if isinstance(data, Sized) else None

    def batches():
        for batch in data.iter(batch_size=batch_size):
            images = batch[image_column]
            if transform is not None:
                pixel_values = torch.stack([transform(image) for image in images])
            else:
                pixel_values = torch.as_tensor(images)
                if pixel_values.dtype == torch.uint8:
                    raise TypeError(f"column {image_column!r} holds raw images: pass a `transform`")
            yield pixel_values, (batch[label_column] if label_column is not None else None)

    return batches(), total


def check_label_feature(features: Any, label_column: str) -> None:
    """Raise ``ValueError`` unless ``label_column`` of a ``datasets`` schema holds integer class ids."""
    import datasets

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

    with torch.inference_mode():
        train_pred = _predict_in_chunks(head, train_x)
        test_pred = _predict_in_chunks(head, test_x)
    return {
        "accuracy": top1_accuracy(test_pred, test_y),
        "train_accuracy": top1_accuracy(train_pred, train_y),
        "train_loss": train_loss,
    }


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

"""Scoring classifiers on features: checks of (features, labels) pairs and top-1 accuracy."""

from __future__ import annotations

from typing import Any

import torch

from ..data.labels import check_labels


def check_features_labels(name: str, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``features`` is a finite, non-empty (N, D) tensor with N labels in ``labels``."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"`{name}_x` must be a (N, D) tensor of features, got {shape}")
    if features.shape[0] == 0:
        raise ValueError(f"`{name}_x` is empty: no {name} examples")
    if not torch.isfinite(features).all():
        raise ValueError(f"`{name}_x` holds NaN or infinite values")
    check_labels(f"{name}_y", labels, features.shape[0])


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



def classification_accuracy(eval_prediction: Any) -> dict[str, float]:
    """``compute_metrics`` for `transformers.Trainer`: top-1 accuracy of the logits."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": top1_accuracy(torch.as_tensor(logits).argmax(-1), torch.as_tensor(labels))}

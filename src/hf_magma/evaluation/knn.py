"""k-NN classification of frozen features (the paper's protocol, weighted votes as in the authors' tooling)."""

from __future__ import annotations

from typing import Literal

import torch
from tqdm.auto import tqdm

from ..data.labels import check_labels, class_count
from ..utils.checks import check_number
from .metrics import check_features_labels, top1_accuracy

KNNWeighting = Literal["distance", "uniform"]

KNN_WEIGHTINGS: tuple[str, ...] = ("distance", "uniform")
# The k-NN vote weight 1 / (distance + KNN_DISTANCE_EPS) used by the authors' tooling.
KNN_DISTANCE_EPS = 1e-5


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
    check_labels("train_y", train_y, train_x.shape[0] if train_x.dim() == 2 else None)
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"`{name}` must be a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= train_x.shape[0]:
        raise ValueError(
            f"`k` must be an integer in [1, {train_x.shape[0]}] (the number of train examples), got {k!r}"
        )
    check_number("chunk_size", chunk_size, sign="positive", integer=True)
    check_number("train_chunk_size", train_chunk_size, sign="positive", integer=True)
    num_classes = class_count(train_y) if num_classes is None else num_classes
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
    """Top-1 accuracy of `knn_predict` on ``test_x``/``test_y``.

    Args:
        train_x, test_x: (N, D) and (M, D) features.
        train_y, test_y: (N,) and (M,) integer class ids.
        k: neighbours (1..N); weighting: ``distance`` (1 / (d + 1e-5)) or ``uniform`` votes.
        chunk_size, train_chunk_size: block sizes of the distance computation (memory only).

    Returns:
        The fraction of test examples classified correctly, in [0, 1].
    """
    check_features_labels("train", train_x, train_y)
    check_features_labels("test", test_x, test_y)
    num_classes = class_count(train_y, test_y)
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

"""The linear probe on frozen features (SGD with the paper's recipe) and the label fractions of the low-label
regime (paper Table 3)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.labels import check_labels, class_count, sample_per_class
from ..utils.checks import check_fraction, check_number
from .metrics import check_features_labels, top1_accuracy


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
    Args:
        train_x, test_x: (N, D) and (M, D) frozen features.
        train_y, test_y: (N,) and (M,) integer class ids.
        epochs, lr, momentum, batch_size, milestones, gamma, weight_decay: the SGD recipe.
        standardize: scale the features by the train set's mean and std first.
        seed: the head's initialisation and the batch order.
        num_classes: the head's outputs (default: the largest label + 1).

    Returns:
        ``{"accuracy": test top-1, "train_accuracy": train top-1, "train_loss": last epoch's mean loss}``.
    """
    check_features_labels("train", train_x, train_y)
    check_features_labels("test", test_x, test_y)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    check_number("epochs", epochs, sign="positive", integer=True)
    check_number("batch_size", batch_size, sign="positive", integer=True)
    check_number("lr", lr, sign="positive")
    if sorted(milestones) != list(milestones):
        raise ValueError(f"`milestones` must be increasing epochs, got {list(milestones)}")
    largest = class_count(train_y, test_y)
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



def sample_label_fraction(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a subset with the same number of examples from every class (paper Table 3).

    Each class gives ``round(fraction * N / C)`` examples (at least 1), drawn by a per-class permutation seeded
    by ``seed``: the draw is reproducible and smaller fractions are subsets of larger ones. ``fraction=1``
    returns every index. A class with too few examples for its share raises ``ValueError``.

    Args:
        labels: (N,) integer class ids.
        fraction: the share of the labels kept, in (0, 1].
        seed: the per-class draws.

    Returns:
        (M,) int64 indices into ``labels``, increasing.
    """
    check_labels("labels", labels)
    check_fraction("fraction", fraction)
    if labels.numel() == 0:
        raise ValueError("`labels` is empty: nothing to sample from")
    if fraction == 1:
        return torch.arange(labels.numel())
    per_class = max(1, round(fraction * labels.numel() / labels.unique().numel()))
    try:
        return sample_per_class(labels, per_class, seed=seed, strict=True)
    except ValueError as error:
        raise ValueError(f"{error} (label fraction {fraction})") from None

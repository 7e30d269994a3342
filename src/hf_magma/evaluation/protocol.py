"""The evaluation protocol: its arguments (`EvaluationArguments`) and `evaluate_features`, k-NN and the linear
probe(s) on cached features with those settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ..data.labels import class_count
from ..losses.pooling import IMAGE_POOLINGS
from ..records.figure_options import FIGURES
from ..utils.checks import check_fractions, check_number
from .knn import KNN_WEIGHTINGS, knn_accuracy
from .probe import linear_probe, sample_label_fraction

logger = logging.getLogger(__name__)

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
                  f"embedded in its model card, comma-separated among {', '.join(FIGURES)}, or 'all' "
                  "(the PaCMAP title shows the linear accuracy; needs hf-magma[viz])."},
    )
    finetune: bool = field(
        default=False,
        metadata={"help": "Also fine-tune a ViTForImageClassification from the encoder (TrainingArguments apply)."},
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Evaluate (and fine-tune) at this resolution instead of the checkpoint's: images resized "
                  "and centre-cropped to it, position embeddings interpolated (bicubic, as transformers' "
                  "interpolate_pos_encoding). A multiple of the patch size. With --pixels: the pixels' size."},
    )

    def __post_init__(self) -> None:
        if self.model_name_or_path is None and not self.pixels:
            raise ValueError("--model_name_or_path is required (a checkpoint to evaluate), unless --pixels scores "
                             "the raw pixels")
        if self.pixels and (self.finetune or self.figures):
            raise ValueError("--pixels scores the pixels with k-NN and the linear probe only; "
                             "drop --finetune/--figures")
        if self.pooling not in IMAGE_POOLINGS:
            raise ValueError(f"--pooling must be one of {IMAGE_POOLINGS}, got {self.pooling!r}")
        if self.knn_weighting not in KNN_WEIGHTINGS:
            raise ValueError(f"--knn_weighting must be one of {KNN_WEIGHTINGS}, got {self.knn_weighting!r}")
        for name in ("batch_size", "linear_batch_size"):
            check_number(f"--{name}", getattr(self, name), sign="positive", integer=True)
        for name in ("knn_k", "linear_epochs"):  # 0 skips it
            check_number(f"--{name}", getattr(self, name), integer=True)
        check_fractions("--label_fractions", self.label_fractions)
        if self.image_size is not None:
            check_number("--image_size", self.image_size, sign="positive", integer=True)


def fraction_suffix(fraction: float) -> str:
    """``0.01`` -> ``"1pct"``: the key suffix of a label fraction's result."""
    return f"{fraction * 100:g}pct"


def _warn_unseen_classes(train_y: torch.Tensor, test_y: torch.Tensor) -> None:
    unseen = sorted(set(test_y.unique().tolist()) - set(train_y.unique().tolist()))
    if unseen:
        missing = torch.isin(test_y, torch.tensor(unseen, dtype=test_y.dtype))
        logger.warning(
            "The test split has %d images of classes %s that the training split lacks: no classifier trained on "
            "it can get them right, so every accuracy is at most %.2f %%. Check that both splits use the same "
            "classes (same class folder names, same label column).",
            int(missing.sum()), unseen, 100 * float((~missing).float().mean()),
        )


def evaluate_features(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    args: EvaluationArguments,
    *,
    seed: int = 0,
    show_progress: bool = True,
    label_subsets: dict[str, dict[str, float]] | None = None,
) -> dict[str, float]:
    """k-NN and linear-probe top-1 accuracies on cached features, with the settings of ``args``.

    Keys: ``knn_accuracy``; ``linear_accuracy`` (all labels) and ``linear_accuracy_<p>pct`` for each other
    fraction, whose subset is drawn by `sample_label_fraction` with ``seed``. Test classes absent from the training
    labels are warned about (no classifier can get them right).

    Args:
        train_x, test_x: (N, D) and (M, D) features; train_y, test_y: (N,) and (M,) integer class ids.
        args: the protocol (k-NN, linear-probe recipe, label fractions).
        seed: the label-fraction draws and the probe's initialisation.
        label_subsets: when given, filled with ``{key: {"requested_fraction", "num_labelled", "fraction"}}``: the
            subset really used (at least one example per class, which can lift a small fraction; also logged).

    Returns:
        ``{metric: top-1 accuracy in [0, 1]}``.
    """
    results: dict[str, float] = {}
    _warn_unseen_classes(train_y, test_y)
    if args.knn_k > 0:
        results["knn_accuracy"] = knn_accuracy(
            train_x, train_y, test_x, test_y, k=args.knn_k, weighting=args.knn_weighting, show_progress=show_progress
        )
    if args.linear_epochs > 0:
        num_classes = class_count(train_y, test_y)
        for fraction in args.label_fractions:
            subset = sample_label_fraction(train_y, fraction, seed=seed)
            key = "linear_accuracy" if fraction == 1 else f"linear_accuracy_{fraction_suffix(fraction)}"
            real = subset.numel() / train_y.numel()
            if label_subsets is not None:
                label_subsets[key] = {"requested_fraction": fraction, "num_labelled": int(subset.numel()),
                                      "fraction": real}
            if real > 1.5 * fraction:
                logger.warning(
                    "--label_fractions %g: %d of the %d training labels (%.3g %%), not %.3g %%: every class keeps at "
                    "least one example. %s is measured with that many labels.",
                    fraction, subset.numel(), train_y.numel(), 100 * real, 100 * fraction, key,
                )
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
            results[key] = probe["accuracy"]
    return results

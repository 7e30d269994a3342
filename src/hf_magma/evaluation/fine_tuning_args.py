"""The options of MAE-style fine-tuning (`FineTuningArguments`): layer-wise learning-rate decay, drop path,
mixup / cutmix, RandAugment and the base-lr rule. Every default leaves fine-tuning as a plain `Trainer` run.

Label smoothing and the warm-up + cosine schedule are the `TrainingArguments`' own ``--label_smoothing_factor``,
``--lr_scheduler_type cosine`` and ``--warmup_steps``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..utils.checks import check_number

logger = logging.getLogger(__name__)


@dataclass
class FineTuningArguments:
    """How ``--finetune`` trains (parsed by ``HfArgumentParser``); the defaults switch every MAE addition off."""

    layer_decay: float | None = field(
        default=None,
        metadata={"help": "Layer-wise learning-rate decay (MAE: 0.65 for ViT-B, 0.75 for ViT-L): with L blocks, "
                  "block i (1..L) learns at lr x decay^(L + 1 - i), the embeddings at lr x decay^(L + 1), the final "
                  "LayerNorm and the classifier at lr. Also drops weight decay on biases, norms, the CLS token and "
                  "position embeddings, as MAE does. Default: off (the Trainer's own parameter groups)."},
    )
    drop_path_rate: float = field(
        default=0.0,
        metadata={"help": "Stochastic depth: the largest rate at which a block's attention and MLP branches are "
                  "dropped per image, rising linearly from 0 at the first block (MAE: 0.1 for ViT-B)."},
    )
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "Mixup's Beta(alpha, alpha) (MAE: 0.8); 0 turns mixup off."}
    )
    cutmix_alpha: float = field(
        default=0.0, metadata={"help": "CutMix's Beta(alpha, alpha) (MAE: 1.0); 0 turns CutMix off."}
    )
    mixup_prob: float = field(
        default=1.0, metadata={"help": "The share of training batches that are mixed (with mixup or CutMix)."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With both on: the share of mixed batches that use CutMix instead of mixup."}
    )
    rand_augment_ops: int = field(
        default=0,
        metadata={"help": "RandAugment (kornia): operations applied to each training image (MAE: 2); 0: off."},
    )
    rand_augment_magnitude: int = field(
        default=9, metadata={"help": "RandAugment's magnitude, 1-29 (MAE: 9)."}
    )
    rand_augment_group_size: int = field(
        default=1,
        metadata={"help": "Images that share one draw of RandAugment's operations (kornia draws once per call): 1 "
                  "is a draw per image, as MAE; larger groups are faster on a CPU."},
    )
    base_learning_rate: float | None = field(
        default=None,
        metadata={"help": "MAE's base rate of fine-tuning (MAE: 5e-4 for ViT-B): when set, learning_rate = "
                  "base_learning_rate x total batch / 256, replacing --learning_rate."},
    )

    def __post_init__(self) -> None:
        if self.layer_decay is not None:
            check_number("layer_decay", self.layer_decay, sign="positive")
            if self.layer_decay > 1:
                raise ValueError(f"`layer_decay` must be in (0, 1] (MAE: 0.65 or 0.75), got {self.layer_decay}")
        check_number("drop_path_rate", self.drop_path_rate)
        if self.drop_path_rate >= 1:
            raise ValueError(f"`drop_path_rate` must be in [0, 1) (MAE: 0.1), got {self.drop_path_rate}")
        for name in ("mixup_alpha", "cutmix_alpha"):
            check_number(name, getattr(self, name))
        for name in ("mixup_prob", "mixup_switch_prob"):
            if check_number(name, getattr(self, name)) > 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}")
        check_number("rand_augment_ops", self.rand_augment_ops, integer=True)
        check_number("rand_augment_group_size", self.rand_augment_group_size, sign="positive", integer=True)
        check_number("rand_augment_magnitude", self.rand_augment_magnitude, integer=True)
        if not 0 < self.rand_augment_magnitude < 30:
            raise ValueError(f"`rand_augment_magnitude` must be in 1..29 (MAE: 9), got {self.rand_augment_magnitude}")
        if self.base_learning_rate is not None:
            check_number("base_learning_rate", self.base_learning_rate, sign="positive")

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (mixup or CutMix on)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mixup_prob > 0

    def changed(self) -> list[str]:
        """The options set away from their defaults, as ``--name`` strings."""
        defaults = FineTuningArguments()
        return [f"--{f.name}" for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(defaults, f.name)]


def finetune_learning_rate(training_args: TrainingArguments, options: FineTuningArguments) -> float:
    """The peak learning rate of fine-tuning: ``--learning_rate``, or ``base_learning_rate x total batch / 256``.

    Args:
        training_args: the batch size, gradient accumulation and process count, and ``learning_rate``.
        options: ``base_learning_rate`` (``None``: ``training_args.learning_rate`` is used as it is).

    Returns:
        The learning rate the top layers get.
    """
    if options.base_learning_rate is None:
        return float(training_args.learning_rate)
    total_batch = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                   * training_args.world_size)
    rate = options.base_learning_rate * total_batch / 256
    logger.info("Fine-tuning learning_rate = base_learning_rate %g x total batch %d / 256 = %g",
                options.base_learning_rate, total_batch, rate)
    return rate

"""The data arguments of the pretraining and evaluation programs (`ImageDataArguments`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..utils.checks import check_number
from .crop import MAE_CROP_SCALE, check_crop_settings
from .fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_HUB_ID

logger = logging.getLogger(__name__)


@dataclass
class ImageDataArguments:
    """Where the images come from and how much of them to use (parsed by ``HfArgumentParser``).

    With neither ``dataset_name`` nor ``train_dir`` the offline Fashion-MNIST copy is used.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A dataset on the Hub (or a local dataset script/folder) to load with `datasets.load_dataset`. "
            "Without it and without --train_dir, the offline Fashion-MNIST in "
            f"{FASHION_MNIST_DIR} is used (the Hub's {FASHION_MNIST_HUB_ID})."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "A folder of training images (`imagefolder`)."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder of validation images."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "The column holding the images (auto-detected when absent)."}
    )
    label_column_name: str | None = field(
        default=None,
        metadata={"help": "The column holding class labels, if any (auto-detected; used by the online probe)."},
    )
    train_split: str = field(default="train", metadata={"help": "The split to pretrain on."})
    validation_split: str | None = field(
        default=None,
        metadata={
            "help": "The split to validate on. Default: `validation` when the source has it, else `test`, else "
            "--validation_split_percentage of the training split (streamed: each example held out by a seeded "
            "hash of its image, so the two stay disjoint through every shuffle; the first --max_eval_samples, or "
            "1,000, of those validate)."
        },
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Percentage of the training split held out for validation when the source has none."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the dataset instead of downloading it (needs --max_steps); sharded per process."},
    )
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "Buffer size of the approximate shuffle of a streamed training set."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Keep only this many training examples, drawn at random with --seed, at least one of every "
                  "class (debugging, quick runs). Streamed: drawn through the --shuffle_buffer_size shuffle buffer."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep only this many validation examples, drawn like --max_train_samples."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes used to prepare an image folder or non-streamed dataset."}
    )
    in_memory: str = field(
        default="auto",
        metadata={
            "help": "Decode the images once into a uint8 tensor held in RAM and augment whole batches on the training "
            "device (`true`), decode and augment in DataLoader workers (`false`), or `auto`: in memory when the "
            "data is not streamed, its images share one size and the decoded training and validation images fit "
            "in --in_memory_max_gb (Fashion-MNIST, CIFAR, STL-10, Tiny-ImageNet do).",
            "choices": ["auto", "true", "false"],
        },
    )
    in_memory_max_gb: float = field(
        default=4.0,
        metadata={"help": "RAM budget of --in_memory (GiB, per process): N x C x H x W bytes of decoded images."},
    )
    random_crop: bool = field(
        default=True,
        metadata={"help": "Augment with a random resized crop (false: the whole image, resized to the model's)."},
    )
    crop_scale: list[float] | None = field(
        default=None,
        metadata={"help": "The random resized crop's (min, max) fraction of the image area (default: MAE's 0.2 1; "
                  "SimCLR's 0.08 1 for the two-view objectives)."},
    )
    crop_ratio: list[float] = field(
        default_factory=lambda: [3 / 4, 4 / 3],
        metadata={"help": "The random resized crop's (min, max) aspect ratio, width / height."},
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "Flip images left-right with probability 0.5 (false: never)."}
    )
    image_mean: list[str] | None = field(
        default=None,
        metadata={"help": "The per-channel mean that normalises the images (one value per channel, or one for all), "
                  "on the documented pixel scale (uint8 / 255, uint16 / 65535, floats as they are); `auto`: the "
                  "mean and std of --image_stats_samples training images drawn with --seed. Saved in the "
                  "checkpoint's image processor. Default: the image processor's (ImageNet's)."},
    )
    image_std: list[str] | None = field(
        default=None,
        metadata={"help": "The per-channel standard deviation, as --image_mean (`auto` with --image_mean auto)."},
    )
    image_stats_samples: int = field(
        default=1000, metadata={"help": "How many training images --image_mean auto computes the statistics on."}
    )


    def __post_init__(self) -> None:
        if self.dataset_name is not None and self.train_dir is not None:
            raise ValueError("Give either --dataset_name or --train_dir, not both")
        if self.validation_dir is not None and self.train_dir is None:
            raise ValueError("--validation_dir needs --train_dir")
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}"
            )
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None:
                check_number(f"--{name}", getattr(self, name), sign="positive", integer=True)
        check_number("--shuffle_buffer_size", self.shuffle_buffer_size, sign="positive", integer=True)
        if self.streaming and self.dataset_name is None and self.train_dir is None:
            raise ValueError("--streaming needs --dataset_name or --train_dir (the offline default is in memory)")
        if self.in_memory not in ("auto", "true", "false"):
            raise ValueError(f"--in_memory must be auto, true or false, got {self.in_memory!r}")
        if self.in_memory == "true" and self.streaming:
            raise ValueError("--in_memory true cannot hold a streamed dataset: drop --streaming or --in_memory")
        check_number("--in_memory_max_gb", self.in_memory_max_gb, sign="positive")
        check_crop_settings(1, [0.0], [1.0], self.crop_scale or MAE_CROP_SCALE, self.crop_ratio)
        check_number("--image_stats_samples", self.image_stats_samples, sign="positive", integer=True)
        self.image_statistics()

    def image_statistics(self) -> tuple[list[float] | str | None, list[float] | None]:
        """``(mean, std)`` of --image_mean / --image_std: two lists of floats, ``("auto", None)`` or
        ``(None, None)``."""
        mean, std = _statistic("--image_mean", self.image_mean), _statistic("--image_std", self.image_std)
        if mean == "auto" or std == "auto":
            if mean != "auto" or std not in ("auto", None):
                raise ValueError("--image_std auto needs --image_mean auto (both are computed together); give both "
                                 "as values, or --image_mean auto")
            return "auto", None
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ValueError(f"Give --image_mean and --image_std together, one value per channel each (got "
                             f"{self.image_mean} and {self.image_std})")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"--image_std must be positive, got {std}")
        return mean, std

    def augmentation_settings(self, default_scale: Sequence[float] = MAE_CROP_SCALE) -> dict[str, Any]:
        """The crop and flip options as keyword arguments of `ImageTransform`/`BatchImageTransform`/
        `TwoViewAugmentation` (``scale``, ``ratio``, ``hflip``, ``random_crop``)."""
        return {"scale": tuple(self.crop_scale or default_scale), "ratio": tuple(self.crop_ratio),
                "hflip": 0.5 if self.horizontal_flip else 0.0, "random_crop": self.random_crop}


def _statistic(name: str, value: Any) -> list[float] | str | None:
    """Values of --image_mean / --image_std from the command line (strings), a YAML list or ``"0.5,0.5"``."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    items = [part for item in items for part in str(item).replace(",", " ").split()]
    if not items:
        raise ValueError(f"{name} needs values (one per channel) or auto")
    if [str(item).lower() for item in items] == ["auto"]:
        return "auto"
    try:
        return [float(item) for item in items]
    except ValueError:
        raise ValueError(f"{name} must be numbers (one per channel) or auto, got {value!r}") from None

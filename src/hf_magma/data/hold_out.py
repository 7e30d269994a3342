"""The validation examples held out of a stream that has no validation split.

A stream has no length to take a percentage of, and its order is not fixed: it is shuffled afresh each epoch,
split per process and per DataLoader worker, so "its first N examples" are neither a fair sample (a class-sorted
folder holds out whole classes) nor the same examples from one epoch to the next. Here an example is held out by
what it is: a seeded hash of its image (the file's path, else its bytes or array) puts it in the validation split
with probability ``--validation_split_percentage``, whatever the order it arrives in, so the two splits stay
disjoint through every shuffle and shard.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from datasets import IterableDataset


class HeldOut:
    """``HeldOut(percentage, seed, validation)(image)``: whether an image entry belongs to the split (the held-out
    one when ``validation``, else the rest). Picklable, for DataLoader workers.

    Args:
        percentage: the held-out share, in percent (0-100).
        seed: the draw's seed; another seed holds out other examples.
        validation: True for the held-out split, False for the training split.
    """

    def __init__(self, percentage: float, seed: int, validation: bool) -> None:
        self.threshold = int(percentage / 100 * 2**64)
        self.salt = int(seed).to_bytes(8, "little", signed=True)
        self.validation = validation

    def __call__(self, image: Any) -> bool:
        digest = hashlib.blake2b(image_key(image), digest_size=8, salt=self.salt).digest()
        return (int.from_bytes(digest, "little") < self.threshold) == self.validation


def image_key(image: Any) -> bytes:
    """What identifies an image entry: an undecoded ``{"bytes", "path"}`` entry's path when it has no bytes, else its
    bytes; an array's dtype, shape and values."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return bytes(image["bytes"])
        if image.get("path"):
            return str(image["path"]).encode()
        raise ValueError(f"an image entry with neither bytes nor a path cannot be held out: {image!r}")
    if isinstance(image, (bytes, str)):
        return image.encode() if isinstance(image, str) else image
    array = np.asarray(image)
    return f"{array.dtype}{array.shape}".encode() + array.tobytes()


def hold_out_stream(
    stream: IterableDataset, image_column: str, percentage: float, seed: int, source: str
) -> tuple[IterableDataset, IterableDataset]:
    """Split a stream into training and validation examples, by `HeldOut`.

    Args:
        stream: the training stream, its image column undecoded.
        image_column: the column hashed.
        percentage: ``--validation_split_percentage``.
        seed: the run's seed.
        source: names the data in errors.

    Returns:
        ``(train, validation)``, both lazily filtered views of ``stream``.

    Raises:
        ValueError: one of the two is empty (the stream is smaller than what is held out, or too small for any
            example to fall in ``percentage``), naming the options that fix it.
    """
    train = stream.filter(HeldOut(percentage, seed, validation=False), input_columns=[image_column])
    validation = stream.filter(HeldOut(percentage, seed, validation=True), input_columns=[image_column])
    if next(iter(train), None) is None:
        raise ValueError(
            f"{source}: holding out --validation_split_percentage {percentage:g} of the stream left no training "
            "examples: lower it, or give a validation split (--validation_dir or --validation_split)"
        )
    if next(iter(validation), None) is None:
        raise ValueError(
            f"{source}: no example of the stream fell in the --validation_split_percentage {percentage:g} held out "
            "for validation (the stream is small): raise it, or give a validation split (--validation_dir or "
            "--validation_split)"
        )
    return train, validation

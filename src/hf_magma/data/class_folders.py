"""Class folders: which images a folder holds and which class each belongs to.

`datasets`' ``imagefolder`` labels an image by the name of the folder it sits in, and only when every image sits
at the same depth in two or more folders: a class folder with a subfolder (``train/b/more/deeper/x.png``) drops the
labels of the whole dataset without a word, and one class folder gives no labels either. `scan_class_folders` reads
the layout first; `load_class_folders` labels each image by its top-level folder, for the layouts ``imagefolder``
would get wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, IterableDatasetDict
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

logger = logging.getLogger(__name__)

_EXTENSIONS = frozenset(ImageFolder.EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class ClassFolderLayout:
    """The images of one or more folders (``--train_dir``, ``--validation_dir``) and their classes.

    Attributes:
        files: split name -> its image files, sorted.
        labels: split name -> the top-level folder of each of its files (None for an image directly in the folder).
        classes: the top-level subfolders holding images, over all splits, sorted; empty when the images sit
            directly in the folders (no labels).
        nested: the top-level class folders whose images sit at more than one depth, or below a subfolder.
    """

    files: dict[str, list[str]]
    labels: dict[str, list[str | None]]
    classes: list[str]
    nested: list[str]

    @property
    def needs_own_labels(self) -> bool:
        """Whether ``imagefolder`` would drop or misname the labels: class folders holding subfolders."""
        return bool(self.nested) and len(self.classes) > 1


def _images(option: str, folder: str) -> list[str]:
    """The image files below ``folder`` (by extension), sorted; raises naming ``--option`` when there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"--{option} {folder} does not exist or is not a folder: give a folder of images (one subfolder per "
            "class for labels)"
        )
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    if not files:
        raise ValueError(f"--{option} {folder} holds no files: put the images there (one subfolder per class)")
    images = sorted(path for path in files if os.path.splitext(path)[1].lower() in _EXTENSIONS)
    if not images:
        raise ValueError(
            f"--{option} {folder} holds no image files ({len(files)} other files, e.g. {files[0]}): images are found "
            "by their extension (.png, .jpg, .jpeg, .webp, .tif, ...); put the images there (one subfolder per class)"
        )
    return images


def scan_class_folders(folders: dict[str, tuple[str, str]]) -> ClassFolderLayout:
    """Read the layout of image folders.

    Args:
        folders: split name -> ``(option, folder)``, e.g. ``{"train": ("train_dir", "data/train")}``; the option
            names the folder in errors.

    Returns:
        The `ClassFolderLayout`.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a folder holds no image file, or images both directly and in subfolders (no one way to label
            them), naming one of each.
    """
    files: dict[str, list[str]] = {}
    labels: dict[str, list[str | None]] = {}
    classes: set[str] = set()
    depths: dict[str, set[int]] = {}
    for split, (option, folder) in folders.items():
        files[split] = _images(option, folder)
        loose, foldered = [], []
        labels[split] = []
        for path in files[split]:
            parts = Path(path).relative_to(folder).parts
            labels[split].append(parts[0] if len(parts) > 1 else None)
            if len(parts) == 1:
                loose.append(path)
            else:
                foldered.append(path)
                classes.add(parts[0])
                depths.setdefault(parts[0], set()).add(len(parts))
        if loose and foldered:
            raise ValueError(
                f"--{option} {folder} holds images both directly ({loose[0]}) and in subfolders ({foldered[0]}): put "
                "every image in a class folder (labels by folder), or all of them directly in the folder (no labels)"
            )
    nested = sorted(name for name, seen in depths.items() if seen != {2})
    return ClassFolderLayout(files=files, labels=labels, classes=sorted(classes), nested=nested)


def load_class_folders(layout: ClassFolderLayout, *, streaming: bool = False) -> DatasetDict | IterableDatasetDict:
    """The images of ``layout`` with an ``image`` column (paths, decoded on access) and a ``label`` column, each
    image labelled by its top-level folder: ``train/b/more/deeper/x.png`` is of class ``b``.

    Args:
        layout: from `scan_class_folders`.
        streaming: IterableDatasets (one shard per image, as ``imagefolder`` streams) instead of Datasets.

    Returns:
        split name -> its dataset, its ``label`` a ``ClassLabel`` of ``layout.classes``.
    """
    features = Features({"image": Image(), "label": ClassLabel(names=layout.classes)})
    splits = {}
    for split, paths in layout.files.items():
        if None in layout.labels[split]:
            unlabelled = layout.files[split][layout.labels[split].index(None)]
            raise ValueError(
                f"{unlabelled} is in no class folder, but the other folder's images are: give both folders one "
                "subfolder per class"
            )
        dataset = Dataset.from_dict({"image": paths, "label": layout.labels[split]}, features=features)
        splits[split] = dataset.to_iterable_dataset(num_shards=len(paths)) if streaming else dataset
    return IterableDatasetDict(splits) if streaming else DatasetDict(splits)


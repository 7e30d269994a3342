import logging

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_magma.data.arguments import ImageDataArguments
from hf_magma.data.class_folders import scan_class_folders
from hf_magma.data.loading import load_image_datasets


def write_images(folder, n, value=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), value + i, dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def nested(tmp_path):
    train = tmp_path / "train"
    write_images(train / "a", 3)
    write_images(train / "b", 2, value=50)
    write_images(train / "b" / "more" / "deeper", 3, value=100)
    write_images(train / "c", 3, value=200)
    return train


def test_nested_class_folders_are_labelled_by_their_top_level_folder(nested, caplog):
    args = ImageDataArguments(train_dir=str(nested), validation_split_percentage=20)
    with caplog.at_level(logging.INFO, logger="hf_magma"):
        splits = load_image_datasets(args, seed=0)
    assert "the class folders b hold subfolders; every image is labelled by its top-level folder" in caplog.text
    data = datasets.concatenate_datasets([splits["train"], splits["validation"]])
    assert data.features["label"].names == ["a", "b", "c"]
    assert data.features["image"].decode is False  # decoded by the collator, as from imagefolder
    names = data.features["label"].int2str
    labels = {entry["path"]: names(label) for entry, label in zip(data["image"], data["label"], strict=True)}
    assert len(labels) == 11
    deep = [path for path in labels if "deeper" in path]
    assert len(deep) == 3 and {labels[path] for path in deep} == {"b"}
    assert {labels[path] for path in labels if "/a/" in path} == {"a"}


def test_nested_class_folders_stream_with_their_labels(nested, tmp_path):
    validation = tmp_path / "validation"
    write_images(validation / "a", 1)
    write_images(validation / "c" / "sub", 1)
    args = ImageDataArguments(train_dir=str(nested), validation_dir=str(validation), streaming=True)
    splits = load_image_datasets(args, seed=0)
    assert isinstance(splits["train"], datasets.IterableDataset)
    rows = list(splits["train"])
    assert len(rows) == 11
    assert sorted(row["label"] for row in rows if "deeper" in row["image"]["path"]) == [1, 1, 1]
    assert sorted(row["label"] for row in splits["validation"]) == [0, 2]


def test_images_both_directly_and_in_class_folders_are_refused(tmp_path):
    write_images(tmp_path / "train" / "a", 2)
    write_images(tmp_path / "train" / "b", 2)
    write_images(tmp_path / "train", 1)
    with pytest.raises(ValueError, match=r"--train_dir .*train holds images both directly \(.*0\.png\) and in "
                                         r"subfolders \(.*a/0\.png\)"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "train")))


def test_class_folders_beside_a_flat_validation_folder_are_refused(nested, tmp_path):
    write_images(tmp_path / "validation", 2)
    args = ImageDataArguments(train_dir=str(nested), validation_dir=str(tmp_path / "validation"))
    with pytest.raises(ValueError, match=r"validation/0\.png is in no class folder"):
        load_image_datasets(args)


def test_one_class_folder_says_so(tmp_path, caplog):
    write_images(tmp_path / "train" / "only", 5)
    with caplog.at_level(logging.WARNING, logger="hf_magma"):
        splits = load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "train")), seed=0)
    assert "holds one class folder (only): the images get no labels" in caplog.text
    assert "label" not in splits["train"].column_names


def test_flat_and_two_level_folders_load_as_imagefolder_does(tmp_path):
    write_images(tmp_path / "flat", 4)
    write_images(tmp_path / "classes" / "x", 3)
    write_images(tmp_path / "classes" / "y", 3)
    flat = scan_class_folders({"train": ("train_dir", str(tmp_path / "flat"))})
    assert flat.classes == [] and not flat.needs_own_labels
    classes = scan_class_folders({"train": ("train_dir", str(tmp_path / "classes"))})
    assert classes.classes == ["x", "y"] and classes.nested == [] and not classes.needs_own_labels
    splits = load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "classes")), seed=0)
    assert splits["train"].features["label"].names == ["x", "y"]

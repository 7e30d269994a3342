"""Tests for hf_magma.data: sources, column detection, transforms, corrupt-image handling."""

import gzip
import io
import os
import subprocess
import sys

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from hf_magma.data.arguments import ImageDataArguments
from hf_magma.data.columns import find_image_column, find_label_column
from hf_magma.data.decoding import to_pil
from hf_magma.data.fashion_mnist import FASHION_MNIST_DIR, load_fashion_mnist
from hf_magma.data.loading import load_image_datasets, select_subset
from hf_magma.data.transforms import ImageCollator, ImageTransform


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(), reason="offline copy absent")
def test_fashion_mnist_default(caplog):
    splits = load_image_datasets(ImageDataArguments())
    assert len(splits["train"]) == 60_000 and len(splits["test"]) == 10_000
    assert len(splits["validation"]) == 10_000  # the test split doubles as validation for the MAE loss
    example = splits["train"][0]
    assert example["image"].shape == (28, 28) and example["image"].dtype == np.uint8
    assert example["label"] == 9  # the first training image is an ankle boot
    assert "Fashion-MNIST" in caplog.text and "zalando-datasets/fashion_mnist" in caplog.text


def test_fashion_mnist_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_image_folder_validation_split_and_columns(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "train", n_per_class=10)
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), validation_split_percentage=20)
    splits = load_image_datasets(args, seed=0)
    assert len(splits["train"]) == 16 and len(splits["validation"]) == 4
    assert find_image_column(splits["train"]) == "image"
    assert find_label_column(splits["train"]) == "label"
    # Undecoded: the collator decodes, once.
    assert isinstance(splits["train"].features["image"], datasets.Image)
    assert splits["train"].features["image"].decode is False


def test_column_detection_errors():
    with pytest.raises(ValueError, match="No image column found among the columns"):
        find_image_column(["text", "id"])
    assert find_label_column(["img", "fine_label", "coarse_label"]) == "fine_label"
    assert find_label_column(["img"]) is None
    with pytest.raises(ValueError, match="--label_column_name"):
        find_label_column(["img"], required=True)
    features = datasets.Features({"photo_bytes": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b"])})
    assert find_image_column(features) == "photo_bytes" and find_label_column(features) == "y"


def test_invalid_arguments():
    with pytest.raises(ValueError, match="not both"):
        ImageDataArguments(dataset_name="a/b", train_dir="x")
    with pytest.raises(ValueError, match="validation_split_percentage"):
        ImageDataArguments(validation_split_percentage=0)
    with pytest.raises(ValueError, match="max_train_samples"):
        ImageDataArguments(max_train_samples=0)
    with pytest.raises(ValueError, match="image_size"):
        ImageTransform(0)
    with pytest.raises(ValueError, match="num_channels"):
        ImageTransform(8, num_channels=0)
    with pytest.raises(ValueError, match="need 2 values each for num_channels 2"):
        ImageTransform(8, num_channels=2)  # ImageNet's three statistics


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_modes_become_rgb(mode):
    image = PIL.Image.new("RGB", (9, 7), (10, 200, 30)).convert(mode)
    assert to_pil(image).mode == "RGB"
    assert to_pil(image, num_channels=1).mode == "L"


def test_transparent_pixels_become_white():
    image = PIL.Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_pil(image).getpixel((0, 0)) == (255, 255, 255)


def test_transform_shapes_and_statistics():
    array = np.full((28, 28), 255, dtype=np.uint8)  # grey array, as Fashion-MNIST is stored
    eval_transform = ImageTransform(16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), train=False)
    out = eval_transform(array)
    assert out.shape == (3, 16, 16) and torch.allclose(out, torch.ones_like(out))
    grey = ImageTransform(16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), train=False, num_channels=1)
    assert grey(array).shape == (1, 16, 16)
    train_transform = ImageTransform((12, 16), train=True)
    rect = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    assert train_transform(rect).shape == (3, 12, 16)
    png = io.BytesIO()
    rect.save(png, format="PNG")
    assert train_transform({"bytes": png.getvalue(), "path": None}).shape == (3, 12, 16)


def test_train_augmentation_is_random_and_flips():
    gradient = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    transform = ImageTransform(16, train=True)
    outputs = torch.stack([transform(gradient) for _ in range(20)])
    assert outputs.std(dim=0).mean() > 0  # different crops
    # Some outputs increase left to right, some (flipped) decrease.
    slopes = (outputs[:, 0, :, -1] - outputs[:, 0, :, 0]).mean(dim=1)
    assert (slopes > 0).any() and (slopes < 0).any()


def test_collator_skips_counts_and_names_corrupt_images(make_image_folder, tmp_path, caplog):
    make_image_folder(tmp_path / "train", n_per_class=3, corrupt=1)
    splits = load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "train"), validation_split_percentage=10))
    dataset = datasets.concatenate_datasets([splits["train"], splits["validation"]])
    collator = ImageCollator(ImageTransform(8, train=True), "image", "label")
    batch = collator([dataset[i] for i in range(len(dataset))])
    assert batch["pixel_values"].shape == (6, 3, 8, 8) and batch["labels"].shape == (6,)
    assert collator.skipped == 2
    assert "broken_0.png" in caplog.text and "2 skipped so far" in caplog.text
    empty = collator([{"image": {"bytes": b"junk", "path": "junk.jpg"}, "label": 0}])
    assert empty["pixel_values"].shape == (0, 3, 8, 8) and collator.skipped == 3


def test_collator_counts_across_dataloader_workers(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "train", n_per_class=4, corrupt=2)
    dataset = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "train"), split="train")
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    collator = ImageCollator(ImageTransform(8, train=False), "image", "label")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collator)
    images = sum(batch["pixel_values"].shape[0] for batch in loader)
    assert images == 8 and collator.skipped == 4


def test_streaming_image_folder(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "train", n_per_class=5)
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), streaming=True, shuffle_buffer_size=4,
                              validation_split_percentage=30)
    splits = load_image_datasets(args, seed=1)
    assert isinstance(splits["train"], datasets.IterableDataset)
    collator = ImageCollator(ImageTransform(8, train=True), "image", "label")
    train, validation = list(splits["train"]), list(splits["validation"])
    assert len(train) + len(validation) == 10 and train and validation
    assert collator(train + validation)["pixel_values"].shape == (10, 3, 8, 8)


def test_a_stream_holds_out_a_seeded_sample_that_stays_apart_from_training(tmp_path):
    # Class-sorted files (as a folder streams them): the first rows are all of one class.
    for label in ("a", "b", "c"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(40):
            PIL.Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(tmp_path / "train" / label / f"{i}.png")
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), streaming=True, validation_split_percentage=20,
                              max_eval_samples=50)
    splits = load_image_datasets(args, seed=0)
    held_out = [(e["image"]["path"], e["label"]) for e in splits["validation"]]
    assert 10 <= len(held_out) <= 40 and {label for _, label in held_out} == {0, 1, 2}
    for epoch in (0, 1, 2):  # reshuffled each epoch; the hold-out does not move with it
        splits["train"].set_epoch(epoch)
        train = [(e["image"]["path"], e["label"]) for e in splits["train"]]
        assert {label for _, label in train} == {0, 1, 2}
        assert not {path for path, _ in train} & {path for path, _ in held_out}
        assert len(train) + len(held_out) == 120
    again = load_image_datasets(args, seed=0)["validation"]
    assert sorted(e["image"]["path"] for e in again) == sorted(path for path, _ in held_out)
    other = load_image_datasets(args, seed=1)["validation"]
    assert sorted(e["image"]["path"] for e in other) != sorted(path for path, _ in held_out)


def test_a_stream_too_small_for_its_hold_out_is_refused(tmp_path):
    (tmp_path / "train").mkdir()
    PIL.Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "train" / "only.png")
    for seed in (0, 1, 2):  # one image: the training or the validation split is empty
        args = ImageDataArguments(train_dir=str(tmp_path / "train"), streaming=True, validation_split_percentage=50)
        with pytest.raises(ValueError, match=r"--validation_split_percentage 50 .*(no training examples|held out "
                                             r"for validation).*--validation_dir"):
            load_image_datasets(args, seed=seed)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_folder_from_the_environment(tmp_path):
    """HF_MAGMA_FASHION_MNIST_DIR points the default data at a folder of the four .gz IDX files."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 3), ("t10k", 2)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) + 4)
    code = ("from hf_magma.data import ImageDataArguments, load_image_datasets; "
            "s = load_image_datasets(ImageDataArguments()); "
            "print(len(s['train']), len(s['test']), list(s['test']['label']))")
    env = {**os.environ, "HF_MAGMA_FASHION_MNIST_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "3 2 [4, 5]"
    with pytest.raises(FileNotFoundError, match="HF_MAGMA_FASHION_MNIST_DIR"):
        load_fashion_mnist(tmp_path / "empty")


def class_sorted_folders(root):
    """train/ (10 per class) and val/ (4 per class) of classes a, b, c: a class-sorted folder's first rows are
    all of class a."""
    for split, per_class in (("train", 10), ("val", 4)):
        for label in ("a", "b", "c"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                PIL.Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"{i}.png")


def test_sample_limits_draw_with_the_seed_and_keep_every_class(tmp_path):
    class_sorted_folders(tmp_path)
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val"),
                              max_train_samples=6, max_eval_samples=3)
    splits = load_image_datasets(args, seed=0)
    names = splits["train"].features["label"].names
    assert len(splits["train"]) == 6 and len(splits["validation"]) == 3
    assert sorted(set(splits["train"]["label"])) == [0, 1, 2] and sorted(splits["validation"]["label"]) == [0, 1, 2]
    assert names == ["a", "b", "c"]
    again = load_image_datasets(args, seed=0)["train"]
    other = load_image_datasets(args, seed=1)["train"]
    paths = [entry["path"] for entry in splits["train"]["image"]]
    assert paths == [entry["path"] for entry in again["image"]]  # reproducible with the seed
    assert paths != [entry["path"] for entry in other["image"]]


def test_streamed_sample_limits_draw_through_the_shuffle_buffer(tmp_path):
    class_sorted_folders(tmp_path)
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val"),
                              streaming=True, max_train_samples=6, max_eval_samples=6)
    splits = load_image_datasets(args, seed=0)
    train, validation = [e["label"] for e in splits["train"]], [e["label"] for e in splits["validation"]]
    assert len(train) == 6 and len(validation) == 6
    assert sorted(set(train)) == [0, 1, 2] and sorted(set(validation)) == [0, 1, 2]
    assert validation == [e["label"] for e in load_image_datasets(args, seed=0)["validation"]]  # the seed's draw


def test_a_subset_as_small_as_the_class_count_holds_every_class():
    # Ten classes of ten, class-sorted; ten drawn at random would all differ in class about once in 1,700 draws.
    labels = datasets.ClassLabel(names=[f"c{i}" for i in range(10)])
    dataset = datasets.Dataset.from_dict({"x": list(range(100)), "label": [i // 10 for i in range(100)]},
                                         features=datasets.Features({"x": datasets.Value("int64"), "label": labels}))
    for seed in range(5):
        subset = select_subset(dataset, 10, seed)
        assert sorted(subset["label"]) == list(range(10))
        assert subset["x"] != select_subset(dataset, 10, seed + 1)["x"]


@pytest.mark.parametrize(
    "pixels, file_format",
    [
        (np.full((8, 8), 32896, dtype=np.uint16), "PNG"),  # 16-bit grey: 32896 / 257 = 128
        (np.full((8, 8), 128 / 255, dtype=np.float32), "TIFF"),  # float in [0, 1]
        (np.full((8, 8), 128.0, dtype=np.float32), "TIFF"),  # float in [0, 255]
    ],
)
def test_wide_images_are_scaled_to_8_bits(pixels, file_format):
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format=file_format)
    for channels, mode in ((3, "RGB"), (1, "L")):
        image = to_pil(PIL.Image.open(io.BytesIO(buffer.getvalue())), num_channels=channels)
        assert image.mode == mode
        assert np.asarray(image).mean() == pytest.approx(128, abs=1)  # not white (255) nor black (0)


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((8, 8, 3), 32896, dtype=np.uint16),  # an array column of 16-bit pixels: 32896 / 257 = 128
        np.full((8, 8, 3), 128 / 255, dtype=np.float32),
        np.full((8, 8), 128, dtype=np.int64),
    ],
)
def test_wide_image_arrays_are_scaled_to_8_bits(pixels):
    assert np.asarray(to_pil(pixels)).mean() == pytest.approx(128, abs=1)  # a uint16 array was clipped to white


def test_the_collator_stops_when_the_data_is_unreadable_as_a_whole():
    transform = ImageTransform(8, train=False)
    broken = {"image": {"bytes": b"not an image", "path": "broken.png"}}
    good = {"image": np.zeros((8, 8, 3), dtype=np.uint8)}
    collator = ImageCollator(transform)
    for _ in range(3):  # a few empty batches in a row are tolerated
        assert collator([broken, broken])["pixel_values"].shape[0] == 0
    with pytest.raises(ValueError, match=r"4 batches in a row held no readable image \(e.g. broken.png.*--train_dir"):
        collator([broken, broken])
    collator = ImageCollator(transform)
    collator([good, broken, broken, broken])  # 3 of 4 skipped: too few images to judge yet
    collator([good] * 4 + [broken] * 4)
    with pytest.raises(ValueError, match=r"9 of the 16 images read so far were unreadable, more than the 50% allowed"):
        collator([good] * 2 + [broken] * 2)
    collator = ImageCollator(transform)
    for _ in range(10):  # a broken image now and then is skipped, as before
        assert collator([good, good, good, broken])["pixel_values"].shape[0] == 3


def test_a_missing_or_empty_train_dir_is_named(make_image_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--train_dir .*nowhere does not exist.*folder of images"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "nowhere")))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"--train_dir .*empty holds no files"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "empty")))
    (tmp_path / "notes" / "cat").mkdir(parents=True)
    (tmp_path / "notes" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"--train_dir .*notes holds no image files "
                                         r"\(1 other files, e.g. .*notes.txt"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "notes")))
    make_image_folder(tmp_path / "images", n_per_class=2)
    with pytest.raises(FileNotFoundError, match=r"--validation_dir .*missing does not exist"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "images"),
                                               validation_dir=str(tmp_path / "missing")))

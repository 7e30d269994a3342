"""Tests for hf_magma.data.channels and the channel counts of both data paths: 1 and 3 channels as before (bit for
bit), any other count from TIFF files and array columns, scaled by dtype, with given or computed statistics."""

import hashlib
import random
from types import SimpleNamespace

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from hf_magma.data.arguments import ImageDataArguments
from hf_magma.data.channels import channel_array, channel_statistics, resolve_image_statistics, to_chw, unit_scale
from hf_magma.data.crop import BatchImageTransform
from hf_magma.data.in_memory import decode_in_memory
from hf_magma.data.loading import load_image_datasets
from hf_magma.data.transforms import ImageCollator, ImageTransform

tifffile = pytest.importorskip("tifffile")

# sha256 (first 16 hex digits) of the batches below, computed with the code from before any channel count was
# accepted: the 1- and 3-channel paths must give exactly these bytes.
REFERENCE = {
    'map c1 train=False': '7939cd36bf817b7a',
    'map c1 train=True': '8cb8a93fc1817247',
    'decoded c1': '769267451fed4103',
    'device c1 train=False': 'a7042cd0a9f74543',
    'device c1 train=True': 'c2d393cec9b86651',
    'map c3 train=False': 'b1614d1f1fb22646',
    'map c3 train=True': '64a0644d8577a487',
    'decoded c3': 'cb9c36ed7d4b7c3a',
    'device c3 train=False': '2a43ccc3032ff910',
    'device c3 train=True': 'ad37ca3e719b8584',
}


def _digest(tensor):
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def test_grey_and_rgb_batches_are_bit_identical_to_before():
    rng = np.random.default_rng(0)
    rgb = [PIL.Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(4)]
    grey = [PIL.Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)) for _ in range(4)]
    wide = [PIL.Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)) for _ in range(2)]
    got = {}
    for channels in (1, 3):
        for train in (False, True):
            transform = ImageTransform(16, train=train, num_channels=channels)
            random.seed(0)
            got[f"map c{channels} train={train}"] = _digest(torch.stack([transform(i) for i in rgb + grey + wide]))
        ds = datasets.Dataset.from_dict({"image": rgb + grey}).cast_column("image", datasets.Image(decode=False))
        images, _, _ = decode_in_memory(ds, "image", num_channels=channels)
        got[f"decoded c{channels}"] = _digest(images)
        for train in (False, True):
            batch = BatchImageTransform(16, train=train, num_channels=channels)
            got[f"device c{channels} train={train}"] = _digest(batch(images, torch.Generator().manual_seed(0)))
    assert got == REFERENCE


def test_values_are_scaled_by_their_dtype():
    assert unit_scale(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert unit_scale(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    assert unit_scale(np.array([-32767, 32767], np.int16)).tolist() == [-1.0, 1.0]
    assert unit_scale(np.array([-3.5, 700.0], np.float64)).tolist() == [-3.5, 700.0]  # floats as they are
    assert unit_scale(np.array([True, False])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        unit_scale(np.array([np.nan], np.float32))


def test_channels_first_and_last_read_the_same():
    chw = np.random.default_rng(0).random((5, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(channel_array(np.moveaxis(chw, 0, -1), 5), chw)
    np.testing.assert_array_equal(channel_array(chw, 5), chw)
    np.testing.assert_array_equal(channel_array(torch.from_numpy(chw), 5), chw)
    with pytest.raises(ValueError, match="--num_channels 4"):
        to_chw(chw, 4)


def _tiff_folder(root, channels=4, size=16, per_class=4, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, np.iinfo(dtype).max, (channels, size, size)).astype(dtype)
            path = root / label / f"{i}.tif"
            tifffile.imwrite(path, array, photometric="minisblack")
            arrays[str(path)] = array
    return arrays


def test_a_tiff_class_folder_of_four_channels_through_both_data_paths(tmp_path):
    arrays = _tiff_folder(tmp_path / "train")
    splits = load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "train"), validation_split_percentage=25))
    train = splits["train"]
    mean, std = [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]
    transform = ImageTransform(16, mean, std, train=False, num_channels=4)
    batch = ImageCollator(transform, "image", "label")([train[i] for i in range(len(train))])
    expected = torch.stack([torch.from_numpy(arrays[train[i]["image"]["path"]] / 65535.0).float()
                            for i in range(len(train))])
    expected = (expected - torch.tensor(mean).view(4, 1, 1)) / torch.tensor(std).view(4, 1, 1)
    assert batch["pixel_values"].shape == (len(train), 4, 16, 16)
    torch.testing.assert_close(batch["pixel_values"], expected)

    images, labels, skipped = decode_in_memory(train, "image", "label", num_channels=4)
    assert images.dtype == torch.float32 and images.shape == (len(train), 4, 16, 16) and skipped == 0
    device = BatchImageTransform(16, mean, std, train=False, num_channels=4)
    torch.testing.assert_close(device(images), expected)
    assert labels.tolist() == batch["labels"].tolist()

    # training crops: the same boxes and flips give the same pixels on both paths
    augment = ImageTransform(16, mean, std, train=True, num_channels=4, hflip=0.0, random_crop=False)
    device_augment = BatchImageTransform(16, mean, std, train=True, num_channels=4, hflip=0.0, random_crop=False)
    torch.testing.assert_close(torch.stack([augment(train[i]["image"]) for i in range(len(train))]),
                               device_augment(images))


def test_an_array_column_of_any_layout_and_dtype(tmp_path):
    rng = np.random.default_rng(1)
    hwc = rng.normal(0, 3, (6, 12, 12, 5)).astype(np.float32)  # floats as they are, even outside [0, 1]
    features = datasets.Features({"image": datasets.Array3D((12, 12, 5), "float32")})
    ds = datasets.Dataset.from_dict({"image": hwc}, features=features)
    ds = ds.with_format("numpy", columns=["image"], output_all_columns=True, dtype=np.float32)
    images, _, _ = decode_in_memory(ds, "image", num_channels=5)
    np.testing.assert_array_equal(images.numpy(), np.moveaxis(hwc, -1, 1))
    transform = ImageTransform(12, [0.0] * 5, [1.0] * 5, train=False, num_channels=5)
    np.testing.assert_allclose(transform(hwc[0]).numpy(), np.moveaxis(hwc[0], -1, 0), rtol=0, atol=1e-6)
    listed = datasets.Dataset.from_dict({"image": [np.moveaxis(a, -1, 0).tolist() for a in hwc]})
    images, _, _ = decode_in_memory(listed, "image", num_channels=5)  # nested lists, (C, H, W)
    np.testing.assert_allclose(images.numpy(), np.moveaxis(hwc, -1, 1), rtol=0, atol=1e-6)


def test_auto_statistics_are_those_of_a_seeded_sample(tmp_path):
    arrays = _tiff_folder(tmp_path / "train", per_class=6)
    splits = load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "train"), validation_split_percentage=25))
    args = SimpleNamespace(image_statistics=lambda: ("auto", None), image_stats_samples=4)
    mean, std = resolve_image_statistics(args, splits["train"], "image", 4, ([0.5] * 3, [0.5] * 3), seed=0)
    picked = np.sort(np.random.default_rng(0).choice(len(splits["train"]), 4, replace=False))
    pixels = np.stack([arrays[splits["train"][int(i)]["image"]["path"]] / 65535.0 for i in picked])
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), rtol=1e-5)
    assert resolve_image_statistics(args, splits["train"], "image", 4, ([0.5] * 3, [0.5] * 3), seed=0) == (mean, std)
    # 8-bit images: the values the 8-bit path reads, / 255
    grey = [PIL.Image.fromarray(np.full((4, 4), value, np.uint8)) for value in (0, 255)]
    assert channel_statistics(grey, 1) == ([0.5], [0.5])


def test_statistics_options_name_the_fix():
    with pytest.raises(ValueError, match="--image_mean and --image_std together"):
        ImageDataArguments(image_mean=["0.5"])
    with pytest.raises(ValueError, match="--image_mean must be numbers"):
        ImageDataArguments(image_mean=["a"], image_std=["1"])
    with pytest.raises(ValueError, match="--image_std auto needs --image_mean auto"):
        ImageDataArguments(image_mean=["0.5"], image_std=["auto"])
    assert ImageDataArguments(image_mean=[0.1, 0.2], image_std="0.3,0.4").image_statistics() == ([0.1, 0.2],
                                                                                                [0.3, 0.4])
    args = ImageDataArguments(image_mean=["0.1", "0.2"], image_std=["1", "1"])
    with pytest.raises(ValueError, match="the model has 4 channels: give 4 values each"):
        resolve_image_statistics(args, None, "image", 4, ([0.5] * 3, [0.5] * 3), seed=0)
    with pytest.raises(ValueError, match="give --image_mean and --image_std with 4 values each, or --image_mean auto"):
        resolve_image_statistics(ImageDataArguments(), None, "image", 4, ([0.5] * 3, [0.5] * 3), seed=0)

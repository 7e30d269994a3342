"""The one random resized crop (hf_magma.data.crop): same crop distribution as before, batched transform, seeding."""

import math
import random

import numpy as np
import pytest
import torch

from hf_magma.data.crop import BatchImageTransform, resized_crop, sample_crop_boxes


def reference_crop_box(width, height, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """The per-image sampler the data pipeline used before the crop was shared (torchvision's algorithm with
    Python's `random`), kept here as the reference distribution."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        w = math.sqrt(target_area * aspect)
        h = math.sqrt(target_area / aspect)
        if 0 < w <= width and 0 < h <= height:
            left = random.uniform(0, width - w)
            top = random.uniform(0, height - h)
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, width / ratio[0]
    elif in_ratio > ratio[1]:
        w, h = height * ratio[1], height
    else:
        w, h = width, height
    return (width - w) / 2, (height - h) / 2, w, h


def box_statistics(boxes, width, height):
    """Quantiles of the area fraction, log aspect ratio and relative centre of (n, 4) boxes."""
    boxes = np.asarray(boxes, dtype=np.float64)
    left, top, w, h = boxes.T
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    return {
        "area": np.quantile(w * h / (width * height), q),
        "log_aspect": np.quantile(np.log(w / h), q),
        "centre_x": np.quantile((left + w / 2) / width, q),
        "centre_y": np.quantile((top + h / 2) / height, q),
    }


@pytest.mark.parametrize("width,height,scale,ratio", [
    (28, 28, (0.2, 1.0), (3 / 4, 4 / 3)),
    (500, 375, (0.2, 1.0), (3 / 4, 4 / 3)),  # a typical ImageNet photo
    (64, 300, (0.08, 1.0), (3 / 4, 4 / 3)),  # a tall image: many draws need the fallback
    (32, 32, (0.5, 0.9), (0.5, 2.0)),
])
def test_crop_boxes_follow_the_previous_distribution(width, height, scale, ratio):
    n = 20_000
    random.seed(0)
    old = [reference_crop_box(width, height, scale, ratio) for _ in range(n)]
    new = sample_crop_boxes(n, height, width, scale, ratio, generator=torch.Generator().manual_seed(0))
    assert new.shape == (n, 4)
    left, top, w, h = new.double().unbind(1)
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + w <= width + 1e-3).all() and (top + h <= height + 1e-3).all()
    old_stats, new_stats = box_statistics(old, width, height), box_statistics(new, width, height)
    for name in old_stats:
        # 20,000 draws: quantiles agree to about 0.01 of their range; a shifted scale or ratio moves them more.
        np.testing.assert_allclose(new_stats[name], old_stats[name], atol=0.02, err_msg=name)


def test_the_statistics_test_sees_a_different_distribution():
    n = 20_000
    random.seed(0)
    old = [reference_crop_box(28, 28) for _ in range(n)]
    shifted = sample_crop_boxes(n, 28, 28, (0.25, 1.0), generator=torch.Generator().manual_seed(0))
    difference = np.abs(box_statistics(shifted, 28, 28)["area"] - box_statistics(old, 28, 28)["area"])
    assert difference.max() > 0.02


def test_per_image_sizes_and_seeding():
    heights, widths = torch.tensor([10, 200, 37]), torch.tensor([300, 20, 37])
    boxes = sample_crop_boxes(3, heights, widths, generator=torch.Generator().manual_seed(1))
    assert (boxes[:, 0] + boxes[:, 2] <= widths + 1e-3).all() and (boxes[:, 1] + boxes[:, 3] <= heights + 1e-3).all()
    again = sample_crop_boxes(3, heights, widths, generator=torch.Generator().manual_seed(1))
    assert torch.equal(boxes, again)


def test_resized_crop_samples_the_box_and_flips():
    image = torch.arange(64.0).view(1, 1, 8, 8)
    whole = resized_crop(image, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), (8, 8))
    torch.testing.assert_close(whole, image, atol=1e-4, rtol=0)
    quarter = resized_crop(image, torch.tensor([[4.0, 0.0, 4.0, 4.0]]), (4, 4))
    torch.testing.assert_close(quarter, image[..., :4, 4:], atol=1e-4, rtol=0)
    flipped = resized_crop(image, torch.tensor([[4.0, 0.0, 4.0, 4.0]]), (4, 4), flip=torch.tensor([True]))
    torch.testing.assert_close(flipped, image[..., :4, 4:].flip(-1), atol=1e-4, rtol=0)


def test_batch_transform_normalises_crops_and_repeats_grey():
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    train = BatchImageTransform(16, (0.5,) * 3, (0.25,) * 3, train=True)
    out = train(images, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], out[:, 1])
    assert out.min() >= -2.0 - 1e-6 and out.max() <= 2.0 + 1e-6
    torch.testing.assert_close(out, train(images, torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert not torch.equal(out, train(images, torch.Generator().manual_seed(1)))

    evaluate = BatchImageTransform(28, (0.5,), (0.25,), train=False, num_channels=1)
    torch.testing.assert_close(evaluate(images), (images.float() / 255 - 0.5) / 0.25)

    plain = BatchImageTransform(28, (0.5,), (0.25,), train=True, num_channels=1, random_crop=False, hflip=0.0)
    torch.testing.assert_close(plain(images), evaluate(images), atol=1e-4, rtol=0)
    flip_only = BatchImageTransform(28, (0.5,), (0.25,), train=True, num_channels=1, random_crop=False, hflip=1.0)
    torch.testing.assert_close(flip_only(images), evaluate(images).flip(-1), atol=1e-4, rtol=0)


def test_bad_crop_settings_name_the_option():
    with pytest.raises(ValueError, match="crop_scale"):
        BatchImageTransform(16, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="crop_ratio"):
        BatchImageTransform(16, ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="hflip"):
        BatchImageTransform(16, hflip=2.0)

"""`TwoViewAugmentation` and `TwoViewCollator`: SimCLR-style views on tensors with kornia, seeded."""

import pytest
import torch

from hf_magma.data.two_views import TwoViewAugmentation, TwoViewCollator

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def normalised(batch: int = 6, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, channels, size, size, generator=g)
    mean = torch.tensor(MEAN[:channels]).view(1, -1, 1, 1)
    std = torch.tensor(STD[:channels]).view(1, -1, 1, 1)
    return (images - mean) / std


def test_views_differ_from_each_other_and_stay_in_range():
    augmentation = TwoViewAugmentation(12, MEAN, STD, seed=0)
    first, second = augmentation(normalised())
    assert first.shape == second.shape == (6, 3, 12, 12)
    assert not torch.allclose(first, second)
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    for view in (first, second):
        per_channel = view.transpose(0, 1).flatten(1)
        assert (per_channel.min(dim=1).values >= low - 1e-5).all()
        assert (per_channel.max(dim=1).values <= high + 1e-5).all()


def test_seed_makes_the_sequence_reproducible_and_independent_of_the_global_rng():
    batch = normalised()
    one, two = TwoViewAugmentation(16, MEAN, STD, seed=7), TwoViewAugmentation(16, MEAN, STD, seed=7)
    first = one(batch)
    torch.manual_seed(123)
    torch.rand(5)
    again = two(batch)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(one(batch)[0], first[0])  # the next call draws new views
    assert not torch.equal(TwoViewAugmentation(16, MEAN, STD, seed=8)(batch)[0], first[0])


def test_identity_settings_return_the_input():
    augmentation = TwoViewAugmentation(
        16, MEAN, STD, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, color_jitter_p=0.0, grayscale_p=0.0, blur_p=0.0
    )
    batch = normalised()
    first, second = augmentation(batch)
    torch.testing.assert_close(first, batch, atol=1e-4, rtol=0)
    torch.testing.assert_close(second, batch, atol=1e-4, rtol=0)


def test_grey_images_are_supported():
    augmentation = TwoViewAugmentation(16, MEAN[:1], STD[:1], seed=0)
    first, second = augmentation(normalised(channels=1))
    assert first.shape == (6, 1, 16, 16)
    assert torch.isfinite(first).all() and not torch.allclose(first, second)


def test_collator_adds_the_second_view_and_keeps_labels():
    base_batch = normalised(batch=4)

    def base_collator(examples):
        return {"pixel_values": base_batch[: len(examples)], "labels": torch.tensor([e["label"] for e in examples])}

    collator = TwoViewCollator(base_collator, TwoViewAugmentation(16, MEAN, STD, seed=0))
    batch = collator([{"label": i} for i in range(4)])
    assert set(batch) == {"pixel_values", "pixel_values_2", "labels"}
    assert batch["pixel_values"].shape == batch["pixel_values_2"].shape == (4, 3, 16, 16)
    assert batch["labels"].tolist() == [0, 1, 2, 3]
    empty = TwoViewCollator(lambda _: {"pixel_values": torch.empty(0, 3, 16, 16)}, collator.augmentation)([])
    assert empty["pixel_values_2"].shape == (0, 3, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=0), "image_size"),
        (dict(mean=(0.5, 0.5)), "mean"),
        (dict(std=(0.0, 1.0, 1.0)), "std"),
        (dict(scale=(0.5, 0.2)), "scale"),
        (dict(blur_p=1.5), "blur_p"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    settings = dict(image_size=16, mean=MEAN, std=STD)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TwoViewAugmentation(**settings)


def test_bad_batches_raise():
    augmentation = TwoViewAugmentation(16, MEAN, STD)
    with pytest.raises(ValueError, match="channels"):
        augmentation(normalised(channels=1))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        augmentation(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="float"):
        augmentation(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))

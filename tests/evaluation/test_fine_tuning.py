"""MAE-style fine-tuning: the layer-decayed rates in the optimizer, mixup / CutMix targets, drop path, RandAugment
and the collator that carries them."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, TrainingArguments, ViTMAEModel

from hf_magma import ViTMAEWithMAGMA
from hf_magma.data.transforms import ImageCollator, ImageTransform
from hf_magma.evaluation.fine_tuning import FineTuningTrainer, image_classifier_from_encoder
from hf_magma.evaluation.fine_tuning_args import FineTuningArguments, finetune_learning_rate
from hf_magma.evaluation.fine_tuning_augment import BatchRandAugment, FineTuningCollator, add_drop_path, mix_batch
from hf_magma.evaluation.layer_decay import layer_id
from hf_magma.models.export import save_encoder
from tests.helpers.tiny import tiny_vit_mae_config


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return image_classifier_from_encoder(ViTMAEModel(tiny_vit_mae_config(mask_ratio=0.0)), num_labels=3)


def test_layer_ids_follow_mae(classifier):
    blocks = classifier.config.num_hidden_layers
    assert layer_id("vit.embeddings.patch_embeddings.projection.weight", blocks) == 0
    assert layer_id("vit.embeddings.cls_token", blocks) == 0
    assert layer_id("vit.layers.0.attention.q_proj.weight", blocks) == 1
    assert layer_id("vit.layers.1.mlp.fc2.bias", blocks) == 2
    assert layer_id("vit.layernorm.weight", blocks) == blocks + 1
    assert layer_id("classifier.weight", blocks) == blocks + 1


def test_the_optimizer_gets_the_layer_decayed_rates(classifier, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.01, weight_decay=0.05, use_cpu=True,
                             report_to="none")
    trainer = FineTuningTrainer(model=classifier, args=args, layer_decay=0.5)
    optimizer = trainer.create_optimizer()
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(classifier.named_parameters())
    # Two blocks: embeddings 0.5^3, block 1 0.5^2, block 2 0.5, final norm and head 1.
    expected = {
        "vit.embeddings.patch_embeddings.projection.weight": 0.01 * 0.125,
        "vit.embeddings.cls_token": 0.01 * 0.125,
        "vit.layers.0.mlp.fc1.weight": 0.01 * 0.25,
        "vit.layers.1.attention.q_proj.weight": 0.01 * 0.5,
        "vit.layernorm.weight": 0.01,
        "classifier.weight": 0.01,
    }
    for name, rate in expected.items():
        assert rate_of[id(named[name])] == pytest.approx(rate), name
    assert len(rate_of) == len(named)  # every parameter, once
    assert decay_of[id(named["vit.layers.0.mlp.fc1.weight"])] == 0.05
    for name in ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings", "vit.layers.0.mlp.fc1.bias",
                 "vit.layernorm.weight"):
        assert decay_of[id(named[name])] == 0.0, name
    # The scheduler keeps the ratios: it scales each group's own initial rate.
    trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    assert sorted({g["initial_lr"] for g in optimizer.param_groups}) == pytest.approx([0.00125, 0.0025, 0.005, 0.01])


def test_without_layer_decay_the_optimizer_is_the_trainers(classifier, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.01, use_cpu=True, report_to="none")
    optimizer = FineTuningTrainer(model=classifier, args=args).create_optimizer()
    assert {group["lr"] for group in optimizer.param_groups} == {0.01}


def test_base_learning_rate_scales_with_the_total_batch(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=64, gradient_accumulation_steps=2,
                             learning_rate=0.1, use_cpu=True, report_to="none")
    assert finetune_learning_rate(args, FineTuningArguments(base_learning_rate=1e-3)) == pytest.approx(5e-4)
    assert finetune_learning_rate(args, FineTuningArguments()) == 0.1


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_targets_sum_to_one_and_match_the_pixels(kind):
    torch.manual_seed(0)
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 8, 8).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    alphas = {"mixup_alpha": 0.8} if kind == "mixup" else {"cutmix_alpha": 1.0}
    for _ in range(5):
        mixed, targets = mix_batch(images, labels, 5, smoothing=0.1, **alphas)
        assert targets.shape == (6, 5)
        torch.testing.assert_close(targets.sum(1), torch.ones(6))
        # Image 0 (label 0, value 0) is mixed with image 5 (label 2, value 5): its share of own pixels is lam.
        if kind == "mixup":
            lam = 1 - float(mixed[0].mean()) / 5
        else:
            assert set(mixed[0].unique().tolist()) <= {0.0, 5.0}
            lam = float((mixed[0] == 0).float().mean())
        off = 0.1 / 5
        assert float(targets[0, 0]) == pytest.approx(lam * (1 - 0.1 + off) + (1 - lam) * off, abs=1e-5)
        assert float(targets[0, 1]) == pytest.approx(off)
    assert not torch.equal(mixed, images) and torch.equal(images[:, 0, 0, 0], torch.arange(6.0))


def test_no_mixing_gives_smoothed_one_hot_targets():
    images = torch.rand(4, 3, 8, 8)
    mixed, targets = mix_batch(images, torch.tensor([0, 1, 1, 0]), 2, mixup_alpha=0.8, prob=0.0, smoothing=0.2)
    assert torch.equal(mixed, images)
    torch.testing.assert_close(targets, torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]))


def test_drop_path_drops_branches_in_training_only(classifier):
    pixels = torch.randn(8, 3, 16, 16)
    classifier.eval()
    before = classifier(pixel_values=pixels).logits
    keys = set(classifier.state_dict())
    assert add_drop_path(classifier, 0.5) == [0.0, 0.5]
    assert set(classifier.state_dict()) == keys
    torch.testing.assert_close(classifier(pixel_values=pixels).logits, before)
    classifier.train()
    torch.manual_seed(0)
    assert not torch.allclose(classifier(pixel_values=pixels).logits, before)


def test_the_collator_augments_mixes_and_skips_unreadable_images(caplog):
    rng = np.random.default_rng(0)
    rows = [{"image": Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)), "label": i % 3}
            for i in range(5)]
    rows.insert(2, {"image": {"bytes": b"not an image", "path": "broken.png"}, "label": 0})
    transform = ImageTransform(16, [0.5], [0.5], train=True, num_channels=1)
    collator = FineTuningCollator(
        ImageCollator(transform, "image", "label"), 3, rand_augment=BatchRandAugment(2, 9, group_size=2),
        mixing={"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}, smoothing=0.1,
    )
    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    data = datasets.Dataset.from_list(
        [{"image": r["image"] if isinstance(r["image"], dict) else {"bytes": _png(r["image"]), "path": None},
          "label": r["label"]} for r in rows], features=features)
    batch = collator([data[i] for i in range(len(data))])
    assert batch["pixel_values"].shape == (5, 1, 16, 16)
    assert batch["pixel_values"].min() >= -1 - 1e-6 and batch["pixel_values"].max() <= 1 + 1e-6
    torch.testing.assert_close(batch["labels"].sum(1), torch.ones(5))
    assert collator.skipped == 1 and "broken.png" in caplog.text


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_options_are_checked():
    with pytest.raises(ValueError, match="`layer_decay` must be in"):
        FineTuningArguments(layer_decay=1.5)
    with pytest.raises(ValueError, match="`drop_path_rate` must be in"):
        FineTuningArguments(drop_path_rate=1.0)
    with pytest.raises(ValueError, match="`rand_augment_magnitude` must be in 1..29"):
        FineTuningArguments(rand_augment_ops=2, rand_augment_magnitude=30)
    assert FineTuningArguments(mixup_alpha=0.8, layer_decay=0.75).changed() == ["--layer_decay", "--mixup_alpha"]


def test_a_classifier_at_another_size_interpolates_the_encoders_position_embeddings(tmp_path):
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(tiny_vit_mae_config())  # 16 x 16, patches 4 x 4
    model.save_pretrained(tmp_path / "ckpt")
    save_encoder(model.config, model.state_dict(), tmp_path / "ckpt")
    classifier = image_classifier_from_encoder(str(tmp_path / "ckpt"), num_labels=2, image_size=24).eval()
    assert classifier.config.image_size == 24
    assert classifier.vit.embeddings.position_embeddings.shape == (1, 1 + 36, 32)
    pixel_values = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    encoder = AutoModel.from_pretrained(tmp_path / "ckpt", subfolder="encoder").eval()  # transformers' own way
    with torch.no_grad():
        expected = encoder(pixel_values, interpolate_pos_encoding=True).last_hidden_state
        torch.testing.assert_close(classifier.vit(pixel_values).last_hidden_state, expected)
    same = image_classifier_from_encoder(str(tmp_path / "ckpt"), num_labels=2, image_size=16)
    torch.testing.assert_close(same.vit.embeddings.position_embeddings, model.vit.embeddings.position_embeddings)

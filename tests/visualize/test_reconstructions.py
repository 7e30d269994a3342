"""Reconstruction figures: the de-normalisation against a hand computation, the seeded mask, the PNG, and the
figure through `write_figures` / `write_checkpoint_figures` for saved checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessor

from hf_magma import ViTMAEWithMAGMA
from hf_magma import visualize as viz
from hf_magma.models.export import save_encoder
from hf_magma.records import FIGURES
from hf_magma.records.model_card import create_model_card
from tests.helpers.tiny import tiny_vit_mae_config

pytest.importorskip("matplotlib")

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def tiny_model(seed: int = 0, **overrides) -> ViTMAEWithMAGMA:
    torch.manual_seed(seed)
    return ViTMAEWithMAGMA(tiny_vit_mae_config(mask_ratio=0.75, **overrides)).eval()


def inputs(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def by_hand(model, pixel_values, noise, norm_pix_loss):
    """The reconstruction and the mask, patch by patch, written out without the model's patchify/unpatchify."""
    logits = model(pixel_values=pixel_values, noise=noise).logits
    mask = model(pixel_values=pixel_values, noise=noise).mask
    p, size = model.config.patch_size, pixel_values.shape[-1]
    cols = size // p
    mean, std = torch.tensor(MEAN).reshape(3, 1, 1), torch.tensor(STD).reshape(3, 1, 1)
    reconstruction = torch.zeros_like(pixel_values)
    masks = torch.zeros(len(pixel_values), 1, size, size)
    for b in range(len(pixel_values)):
        for index in range(cols * cols):
            r, c = divmod(index, cols)
            rows, columns = slice(r * p, (r + 1) * p), slice(c * p, (c + 1) * p)
            patch = pixel_values[b, :, rows, columns]  # (C, p, p)
            prediction = logits[b, index].reshape(p, p, 3).permute(2, 0, 1)  # stored (p, p, C), channels last
            if norm_pix_loss:
                values = patch.permute(1, 2, 0).reshape(-1)
                prediction = prediction * (values.var() + 1e-6).sqrt() + values.mean()
            reconstruction[b, :, rows, columns] = prediction
            masks[b, :, rows, columns] = mask[b, index]
    return reconstruction * std + mean, pixel_values * std + mean, masks


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruct_matches_a_hand_computation(norm_pix_loss):
    model = tiny_model(norm_pix_loss=norm_pix_loss)
    pixel_values = inputs()
    noise = viz.mask_noise(2, 16, seed=3)
    result = viz.reconstruct(model, pixel_values, image_mean=MEAN, image_std=STD, noise=noise)
    with torch.no_grad():
        reconstruction, original, mask = by_hand(model, pixel_values, noise, norm_pix_loss)
    torch.testing.assert_close(result.reconstruction, reconstruction)
    torch.testing.assert_close(result.original, original)
    torch.testing.assert_close(result.mask, mask)
    torch.testing.assert_close(result.pasted, original * (1 - mask) + reconstruction * mask)
    torch.testing.assert_close(result.masked, original * (1 - mask) + viz.reconstructions.MASK_FILL * mask)
    assert mask.mean(dim=(1, 2, 3)).tolist() == [0.75, 0.75]  # 12 of the 16 patches masked in each image


def test_the_mask_depends_on_the_seed_alone():
    pixel_values = inputs()
    torch.manual_seed(123)
    first = viz.reconstruct(tiny_model(0), pixel_values, image_mean=[0.5], image_std=[0.5], seed=7)
    torch.manual_seed(456)
    second = viz.reconstruct(tiny_model(1), pixel_values, image_mean=[0.5], image_std=[0.5], seed=7)
    other = viz.reconstruct(tiny_model(1), pixel_values, image_mean=[0.5], image_std=[0.5], seed=8)
    assert torch.equal(first.mask, second.mask) and not torch.equal(first.mask, other.mask)
    assert not torch.allclose(first.reconstruction, second.reconstruction)  # two models, the same mask


def test_reconstruct_rejects_bad_inputs():
    model = tiny_model()
    with pytest.raises(ValueError, match="`image_std` must have 1 or 3 values"):
        viz.reconstruct(model, inputs(), image_mean=[0.5], image_std=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"`noise` must be \(batch, patches\) = \(2, 16\)"):
        viz.reconstruct(model, inputs(), image_mean=[0.5], image_std=[0.5], noise=torch.rand(2, 9))
    with pytest.raises(ValueError, match="need a ViTMAEForPreTraining"):
        viz.load_pretraining_model(model.vit)


def test_plot_reconstructions_png(tmp_path):
    path = tmp_path / "reconstructions.png"
    results = viz.plot_reconstructions({"MAE": tiny_model(0), "M-MAE": tiny_model(1)}, inputs(3), path,
                                       image_mean=MEAN, image_std=STD, dpi=40)
    assert list(results) == ["MAE", "M-MAE"]
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    # Three images; the original, then three rows per checkpoint, plus the title.
    assert pixels.shape[:2] == (int(1.2 * 7.3 * 40 + 1e-6), int(1.2 * 3 * 40 + 1e-6))
    assert pixels.std() > 10


def test_a_multichannel_reconstruction_shows_the_chosen_channels(tmp_path):
    model = tiny_model(0, num_channels=5)
    pixel_values = torch.randn(2, 5, 16, 16, generator=torch.Generator().manual_seed(1))
    mean, std = [0.5] * 5, [0.2] * 5
    paths = {channels: tmp_path / f"{channels}.png" for channels in ((0, 1, 2), (4, 3, 2))}
    for channels, path in paths.items():
        results = viz.plot_reconstructions({"M-MAE": model}, pixel_values, path, image_mean=mean, image_std=std,
                                           display_channels=list(channels), dpi=40)
        assert results["M-MAE"].original.shape == (2, 5, 16, 16)  # every channel reconstructed, three shown
    first, other = (np.asarray(Image.open(path).convert("RGB"), dtype=float) for path in paths.values())
    assert first.shape == other.shape and np.abs(first - other).mean() > 1


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two saved tiny pretraining checkpoints with an image processor and a card, and the first one's encoder/."""
    root = tmp_path_factory.mktemp("checkpoints")
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=MEAN, image_std=STD)
    paths = []
    for seed, name in ((0, "mae"), (1, "m-mae")):
        model = tiny_model(seed)
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        create_model_card(output_dir=root / name, model_config=model.config, dataset_name="toy", save=True)
        paths.append(root / name)
    encoder = save_encoder(model.config, model.state_dict(), root / "m-mae", processor)
    return paths, encoder


@pytest.fixture(scope="module")
def images():
    import datasets

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(4)]
    return datasets.Dataset.from_dict({"image": pictures, "label": [0, 1, 0, 1]})


def test_write_figures_draws_the_checkpoints_side_by_side_into_the_card(tmp_path, checkpoints, images):
    from huggingface_hub import ModelCard

    (mae, m_mae), encoder = checkpoints
    written = viz.write_figures({"MAE": mae, "M-MAE": m_mae}, tmp_path, figures="reconstructions", dataset=images,
                                num_images=3, dpi=40)
    assert written == {"reconstructions": tmp_path / "reconstructions.png"}

    figures = viz.write_checkpoint_figures(m_mae, images, figures="reconstructions", num_images=2, dpi=40)
    caption = FIGURES["reconstructions"][1]
    assert figures == {caption: "figures/reconstructions.png"}
    assert f"![{caption}](figures/reconstructions.png)" in ModelCard.load(m_mae / "README.md").text

    # encoder/ has no decoder: an error when asked for by name, skipped among 'all'.
    with pytest.raises(ValueError, match="'reconstructions' figure: .* without a decoder"):
        viz.write_figures({"encoder": encoder}, tmp_path, figures="reconstructions", dataset=images)
    assert "reconstructions" not in viz.write_figures({"encoder": encoder}, tmp_path / "all", dataset=images,
                                                      num_images=1, num_classes=2, dpi=40)

"""Encoders at another image size than the checkpoint's: position embeddings interpolated, as transformers'
`encoder/` does through AutoModel with ``interpolate_pos_encoding=True``."""

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel

from hf_magma import ViTMAEWithMAGMA
from hf_magma.encoders import extract_features, load_encoder, run_unmasked
from hf_magma.models.export import save_encoder
from tests.helpers.tiny import tiny_vit_mae_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny 16 x 16 pretraining checkpoint (patches 4 x 4) with its encoder/."""
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(tiny_vit_mae_config())
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    save_encoder(model.config, model.state_dict(), path)
    return path


def reference(checkpoint, pixel_values):
    encoder = AutoModel.from_pretrained(checkpoint, subfolder="encoder").eval()
    with torch.no_grad():
        return encoder(pixel_values, interpolate_pos_encoding=True).last_hidden_state


def test_run_unmasked_at_another_size_matches_encoder_folder(checkpoint):
    pixel_values = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    encoder = load_encoder(checkpoint)
    with pytest.raises(ValueError, match="expects 16x16 .*interpolate_pos_encoding=True"):
        run_unmasked(encoder, pixel_values)
    with torch.no_grad():
        outputs = run_unmasked(encoder, pixel_values, interpolate_pos_encoding=True)
    assert outputs.last_hidden_state.shape == (2, 1 + 36, 32)
    torch.testing.assert_close(outputs.last_hidden_state, reference(checkpoint, pixel_values))
    with pytest.raises(ValueError, match="multiple of its patch size 4x4"):
        run_unmasked(encoder, torch.randn(1, 3, 22, 22), interpolate_pos_encoding=True)


def test_extract_features_at_another_size_matches_encoder_folder(checkpoint):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(3)]
    dataset = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0]})
    features, labels = extract_features(checkpoint, dataset, image_size=24, show_progress=False)
    from hf_magma.data.transforms import ImageTransform

    transform = ImageTransform(24, train=False, num_channels=3)
    expected = reference(checkpoint, torch.stack([transform(image) for image in images]))[:, 0]
    torch.testing.assert_close(features, expected)
    assert labels.tolist() == [0, 1, 0]

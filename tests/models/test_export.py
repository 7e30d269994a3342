"""Checkpoints written by run_mae_magma.py serve frozen features through transformers' standard APIs (the plain
`vit` copy in ``encoder/``), equal to what run_eval.py extracts, while the root still pretrains with masking."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoImageProcessor, ViTMAEForPreTraining

from hf_magma import ViTMAEWithMAGMA
from hf_magma.data.transforms import ImageTransform
from hf_magma.encoders.features import extract_features
from hf_magma.encoders.loading import load_encoder
from hf_magma.models.arguments import MAGMAModelArguments, load_image_processor, load_model_and_image_processor
from hf_magma.models.export import ENCODER_SUBFOLDER, encoder_image_processor, save_encoder, vit_encoder_from
from tests.helpers import ROOT
from tests.helpers.tiny import tiny_overrides

TINY = tiny_overrides(decoder_hidden_size=16, decoder_intermediate_size=32)
NUM_PATCHES = (16 // 4) ** 2


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"export_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (width, height): larger than the model's 16 px (so the processor resizes), square and not, with longer sides
# whose scaled length is not a whole number (40 x 16 / 24 = 26.7, 37 x 16 / 24 = 24.7).
SIZES = ((24, 24), (40, 24), (24, 37), (50, 50), (17, 30), (21, 16))
MODES = ("RGB", "L", "RGBA", "P")


def write_images(root: Path, opaque: bool = True) -> list[Path]:
    """Images of several sizes and colour modes (``opaque=False``: with random transparency), and per class a
    JPEG stored sideways with an EXIF orientation."""
    rng = np.random.default_rng(0)
    paths = []
    for shift, label in enumerate(("a", "b")):
        (root / label).mkdir(parents=True)
        for i in range(6):
            width, height = SIZES[i]
            pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            if opaque:
                pixels[..., 3] = 255
            path = root / label / f"{i}.png"
            PIL.Image.fromarray(pixels, "RGBA").convert(MODES[(i + shift) % len(MODES)]).save(path)
            paths.append(path)
        exif = PIL.Image.Exif()
        exif[PIL.Image.ExifTags.Base.Orientation] = 6  # shown rotated by 90 degrees
        path = root / label / "sideways.jpg"
        PIL.Image.fromarray(rng.integers(0, 256, (20, 32, 3), dtype=np.uint8)).save(path, exif=exif)
        paths.append(path)
    return paths


def test_encoder_image_processor_prepares_images_as_the_evaluation_does(tmp_path):
    """The saved processor and run_eval.py's transform give the same pixels on every size and colour mode."""
    paths = write_images(tmp_path / "images", opaque=False)
    processor = encoder_image_processor(load_image_processor(None, 16), 16)
    processor.save_pretrained(tmp_path / "processor")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "processor")
    transform = ImageTransform.from_image_processor(processor, train=False)
    for path in paths:
        image = PIL.ImageOps.exif_transpose(PIL.Image.open(path))
        expected = transform(image)
        got = processor(image, return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6,
                                   msg=lambda m, path=path, image=image: f"{path.name} {image.size} {image.mode}: {m}")


def run_eval_features(checkpoint: Path, paths: list[Path], pooling: str) -> torch.Tensor:
    """The features run_eval.py extracts: its encoder, its image processor, its evaluation transform."""
    encoder = load_encoder(checkpoint)
    processor = load_image_processor(str(checkpoint), encoder.config.image_size)
    transform = ImageTransform.from_image_processor(processor, train=False, num_channels=encoder.config.num_channels)
    data = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "label": [0] * len(paths)})
    data = data.cast_column("image", datasets.Image(decode=False))
    features, _ = extract_features(encoder, data, pooling=pooling, transform=transform, image_column="image",
                                   label_column="label", show_progress=False)
    return features


FRESH_PROCESS = """
import json, sys
import numpy as np
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline
from transformers.image_utils import load_image

source, paths, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
images = [Image.open(p) for p in paths]
extractor = pipeline("image-feature-extraction", model=source, model_kwargs={"subfolder": "encoder"})
first = np.array([extractor(image)[0] for image in images], dtype=np.float32)
second = np.array([extractor(image)[0] for image in images], dtype=np.float32)
pooled = np.array([extractor(image, pool=True)[0] for image in images], dtype=np.float32)
processor = AutoImageProcessor.from_pretrained(source, subfolder="encoder")
encoder = AutoModel.from_pretrained(source, subfolder="encoder")
outputs = encoder(**processor([load_image(p) for p in paths], return_tensors="pt"))  # upright, as the pipeline
root = AutoModel.from_pretrained(source)
assert "hf_magma" not in sys.modules
np.savez(out, first=first, second=second, pooled=pooled, auto=outputs.last_hidden_state.detach().numpy(),
         auto_pooled=outputs.pooler_output.detach().numpy(), encoder_class=type(encoder).__name__,
         root_class=type(root).__name__, root_mask_ratio=root.config.mask_ratio)
"""


def features_in_fresh_process(source: str, paths: list[Path], tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"features_{abs(hash(source))}.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, source, json.dumps([str(p) for p in paths]),
                             str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


def test_checkpoint_features_through_pipeline_and_automodel_equal_run_eval(hub_server, tmp_path):
    paths = write_images(tmp_path / "images")
    out, repo_id = tmp_path / "run", "org/m-mae-export"
    script = load_script("run_mae_magma")
    args = ["--train_dir", str(tmp_path / "images"), "--output_dir", str(out), "--config_overrides", TINY,
            "--max_steps", "2", "--save_steps", "2", "--save_strategy", "steps", "--per_device_train_batch_size",
            "4", "--report_to", "none", "--disable_tqdm", "true", "--magma_start_step", "0", "--magma_steps", "2",
            "--push_to_hub", "true", "--hub_model_id", repo_id]
    script.main(*script.make_parser().parse_args_and_config(args))
    for folder in (out, out / "checkpoint-2"):
        config = json.loads((folder / ENCODER_SUBFOLDER / "config.json").read_text())
        assert config["model_type"] == "vit" and (folder / ENCODER_SUBFOLDER / "preprocessor_config.json").is_file()
    files = hub_server.files(repo_id)
    assert f"{ENCODER_SUBFOLDER}/model.safetensors" in files
    card = ModelCard(files["README.md"].decode())
    assert {"mae", "magma", "m-mae"} <= set(card.data.tags)  # the script's push tags reach the card
    assert card.data.pipeline_tag == "image-feature-extraction" and 'subfolder": "encoder"' in card.text

    cls, mean = run_eval_features(out, paths, "cls"), run_eval_features(out, paths, "mean")
    for source in (str(out), repo_id):  # the local checkpoint and the Hub repository
        got = features_in_fresh_process(source, paths, tmp_path)
        assert str(got["encoder_class"]) == "ViTModel" and str(got["root_class"]) == "ViTMAEModel"
        tokens = torch.from_numpy(got["first"])
        assert tokens.shape == (len(paths), 1 + NUM_PATCHES, 32)  # every patch token, plus CLS
        np.testing.assert_array_equal(got["first"], got["second"])  # the same on every call
        torch.testing.assert_close(tokens[:, 0], cls, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tokens[:, 1:].mean(dim=1), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got["pooled"]), cls, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got["auto"]), tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got["auto_pooled"]), cls, rtol=1e-5, atol=1e-5)
        assert float(got["root_mask_ratio"]) == 0.75

    # Continuing pretraining from the pushed repository (the class, and what run_mae_magma.py loads) still masks.
    for loaded in (ViTMAEWithMAGMA.from_pretrained(repo_id),
                   load_model_and_image_processor(MAGMAModelArguments(model_name_or_path=repo_id))[0]):
        assert loaded(torch.randn(2, 3, 16, 16)).mask.float().mean().item() == 0.75

    # The patch tokens come in their original order: those of the unmasked MAE encoder, position by position.
    pixels = torch.randn(2, 3, 16, 16)
    mae = ViTMAEWithMAGMA.from_pretrained(out).eval()
    vit = vit_encoder_from(mae.config, mae.state_dict())
    with torch.no_grad():
        mae.config.mask_ratio, saved = 0.0, mae.config.mask_ratio
        reference = mae.vit(pixel_values=pixels, noise=torch.arange(NUM_PATCHES).float().expand(2, -1))
        mae.config.mask_ratio = saved
        torch.testing.assert_close(vit(pixel_values=pixels).last_hidden_state, reference.last_hidden_state)


def test_continuing_pretraining_from_the_checkpoint_still_masks(tmp_path, vit_mae_config):
    config = vit_mae_config()
    model = ViTMAEWithMAGMA(config)
    model.save_pretrained(tmp_path)
    save_encoder(model.config, model.state_dict(), tmp_path)
    pixels = torch.randn(2, 3, 16, 16)
    for loaded in (ViTMAEWithMAGMA.from_pretrained(tmp_path), ViTMAEForPreTraining.from_pretrained(tmp_path),
                   load_model_and_image_processor(MAGMAModelArguments(model_name_or_path=str(tmp_path)))[0]):
        assert loaded.config.mask_ratio == 0.75
        assert loaded(pixels).mask.float().mean().item() == 0.75


FOUR_CHANNELS_IN_FRESH_PROCESS = """
import sys

import numpy as np
import tifffile
import torch
from transformers import AutoImageProcessor, AutoModel

source, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
processor = AutoImageProcessor.from_pretrained(source, subfolder="encoder")
encoder = AutoModel.from_pretrained(source, subfolder="encoder").eval()
arrays = [tifffile.imread(path).astype(np.float32) / 65535 for path in paths]  # scaled as the training read them
inputs = processor(arrays, input_data_format="channels_first", return_tensors="pt")
with torch.no_grad():
    features = encoder(**inputs).pooler_output
assert "hf_magma" not in sys.modules
np.save(out, features.numpy())
"""


def test_a_four_channel_run_serves_features_through_encoder_folder(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    paths = []
    for label in ("a", "b"):
        (tmp_path / "tiles" / label).mkdir(parents=True)
        for i in range(4):
            paths.append(tmp_path / "tiles" / label / f"{i}.tif")
            tifffile.imwrite(paths[-1], rng.integers(0, 65535, (4, 16, 16)).astype(np.uint16),
                             photometric="minisblack")
    out = tmp_path / "run"
    script = load_script("run_mae_magma")
    args = ["--train_dir", str(tmp_path / "tiles"), "--output_dir", str(out), "--config_overrides", TINY,
            "--num_channels", "4", "--image_mean", "auto", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no"]
    script.main(*script.make_parser().parse_args_and_config(args))
    assert json.loads((out / ENCODER_SUBFOLDER / "config.json").read_text())["num_channels"] == 4
    processor = json.loads((out / ENCODER_SUBFOLDER / "preprocessor_config.json").read_text())
    assert len(processor["image_mean"]) == 4 and processor["do_rescale"] is False
    # it only normalises: transformers would resize float arrays through 8-bit PIL images (a 1/255 quantisation)
    assert processor["do_resize"] is False and processor["do_center_crop"] is False
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", FOUR_CHANNELS_IN_FRESH_PROCESS, str(out), str(tmp_path / "f.npy"),
                             *map(str, paths)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    dataset = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "label": [0] * 4 + [1] * 4},
                                         features=datasets.Features({"image": datasets.Image(decode=False),
                                                                     "label": datasets.Value("int64")}))
    transform = ImageTransform.from_image_processor(AutoImageProcessor.from_pretrained(out), train=False,
                                                    num_channels=4)  # as run_eval.py reads the checkpoint
    expected, _ = extract_features(str(out), dataset, transform=transform, show_progress=False)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "f.npy")), expected, rtol=1e-4, atol=1e-5)

"""End-to-end tests of scripts/run_ssl_magma.py on generated image folders (tiny models, a few steps)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from safetensors.torch import load_file

from hf_magma.records.trainer_state import load_log_history
from tests.helpers import ROOT
from tests.helpers.tiny import tiny_overrides

SCRIPT = ROOT / "scripts" / "run_ssl_magma.py"
TINY = tiny_overrides(decoder=False, num_hidden_layers=3)



@pytest.fixture(scope="module")
def run_ssl_magma(load_script):
    return load_script(SCRIPT)


def run(run_ssl_magma, train_dir, output_dir, **overrides):
    values = {
        "train_dir": train_dir, "output_dir": output_dir, "config_overrides": TINY, "per_device_train_batch_size": 4,
        "report_to": "none", "disable_tqdm": "true", "logging_steps": 1, "seed": 0, "learning_rate": 1e-3,
        "save_strategy": "steps", "save_steps": 4, "validation_split_percentage": 20, "projector_hidden_size": 32,
        "projector_output_size": 16,
    }
    values.update(overrides)
    args = [item for key, value in values.items() for item in (f"--{key}", str(value))]
    return run_ssl_magma.main(*run_ssl_magma.make_parser().parse_args_and_config(args))


@pytest.mark.parametrize("objective", ["simclr", "vicreg"])
def test_end_to_end_objective_schedule_card_and_plain_vit_checkpoint(make_image_folder, run_ssl_magma, tmp_path,
                                                                     objective):
    make_image_folder(tmp_path / "images", n_per_class=10)  # 16 train images: 4 steps per epoch
    out = tmp_path / "out"
    metrics = run(run_ssl_magma, tmp_path / "images", out, objective=objective, max_steps=4, magma_start_step=2,
                  magma_steps=10, eval_strategy="steps", eval_steps=4)
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 0.0, 1.0, 1.0]
    for entry in logs:
        assert {"objective_loss", "magma_loss", "online_accuracy"} <= set(entry)
    assert "eval_objective_loss" in metrics and "eval_magma_loss" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vit" and config["ssl_objective"] == objective
    card = (out / "README.md").read_text()
    assert f"M-{'SimCLR' if objective == 'simclr' else 'VICReg'}" in card and "ViTForSSL" in card
    assert "decoder" not in card and "mask ratio" not in card
    assert "| augmentation: random resized crop | scale [0.08, 1.0], ratio [0.75, 1.3333]" in card  # SimCLR's crop

    script = textwrap.dedent(
        f"""
        import sys
        from safetensors.torch import save_file
        from transformers import AutoModel
        encoder = AutoModel.from_pretrained({str(out)!r}, add_pooling_layer=False)
        assert type(encoder).__name__ == "ViTModel" and "hf_magma" not in sys.modules
        save_file(encoder.state_dict(), {str(tmp_path / "encoder.safetensors")!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from hf_magma import ViTForSSL

    trained = ViTForSSL.from_pretrained(out).vit.state_dict()
    encoder = load_file(tmp_path / "encoder.safetensors")
    assert encoder.keys() == trained.keys()
    assert all((encoder[k] == v).all() for k, v in trained.items())


SSL_ENCODER_IN_FRESH_PROCESS = """
import sys

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

source, paths = sys.argv[1], sys.argv[2:]
images = [Image.open(path) for path in paths]
pooled = [np.array([pipeline("image-feature-extraction", model=source, model_kwargs={"subfolder": "encoder"})(
    image, pool=True)[0] for image in images]) for _ in range(2)]  # two loads
tokens = np.array([pipeline("image-feature-extraction", model=source, model_kwargs={"subfolder": "encoder"})(
    image)[0] for image in images])
processor = AutoImageProcessor.from_pretrained(source, subfolder="encoder")
root = AutoModel.from_pretrained(source, add_pooling_layer=False)  # the trained backbone, without the projector
with torch.no_grad():
    hidden = root(**processor(images, return_tensors="pt")).last_hidden_state.numpy()
assert "hf_magma" not in sys.modules
assert type(AutoModel.from_pretrained(source, subfolder="encoder")).__name__ == "ViTModel"
np.testing.assert_array_equal(pooled[0], pooled[1])
np.testing.assert_allclose(pooled[0], hidden[:, 0], rtol=1e-4, atol=1e-5)  # the pooler is the identity on CLS
np.testing.assert_allclose(tokens, hidden, rtol=1e-4, atol=1e-5)
print("ok", pooled[0].shape)
"""


def test_ssl_checkpoints_carry_encoder_that_the_pipeline_loads(make_image_folder, run_ssl_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10, modes=("RGB",))
    out = tmp_path / "out"
    run(run_ssl_magma, tmp_path / "images", out, objective="vicreg", max_steps=4, magma_start_step=1, magma_steps=2)
    for folder in (out, out / "checkpoint-4"):
        config = json.loads((folder / "encoder" / "config.json").read_text())
        assert config["model_type"] == "vit" and config["pooler_act"] == "linear"
        assert (folder / "encoder" / "preprocessor_config.json").is_file()
    assert "subfolder" in (out / "README.md").read_text()
    paths = [str(path) for path in sorted((tmp_path / "images" / "cat").glob("*.png"))[:3]]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", SSL_ENCODER_IN_FRESH_PROCESS, str(out), *paths], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok (3, 32)")


def test_rejects_an_unknown_objective(run_ssl_magma, tmp_path):
    with pytest.raises(ValueError, match="objective"):
        run(run_ssl_magma, tmp_path, tmp_path / "out", objective="byol")


@pytest.mark.parametrize("objective", ["simclr", "vicreg"])
def test_a_last_batch_of_one_image_is_left_out(make_image_folder, run_ssl_magma, tmp_path, objective, caplog):
    # 22 images, 20 % held out: 17 to train on, so the fifth batch of an epoch holds one image.
    make_image_folder(tmp_path / "images", n_per_class=11)
    out = tmp_path / "out"
    run(run_ssl_magma, tmp_path / "images", out, objective=objective, num_train_epochs=1, magma_start_step=0,
        magma_steps=10)
    assert "A batch of one image is left out" in caplog.text and "--dataloader_drop_last" in caplog.text
    assert [entry["step"] for entry in load_log_history(out) if "loss" in entry] == [1, 2, 3, 4, 5]
    assert (out / "model.safetensors").is_file()

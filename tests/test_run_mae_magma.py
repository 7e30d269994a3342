"""End-to-end tests of scripts/run_mae_magma.py on generated image folders (tiny models, a few steps)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from hf_magma.trainer_state import load_log_history

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_mae_magma.py"
TINY = ("hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,image_size=16,patch_size=4,"
        "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64")



@pytest.fixture(scope="module")
def run_mae_magma(load_script):
    return load_script(SCRIPT)


def base_args(train_dir, output_dir, **overrides):
    values = {
        "train_dir": train_dir, "output_dir": output_dir, "config_overrides": TINY, "per_device_train_batch_size": 4,
        "report_to": "none", "disable_tqdm": "true", "logging_steps": 1, "seed": 0, "learning_rate": 1e-3,
        "save_strategy": "steps", "save_steps": 4, "validation_split_percentage": 20,
    }
    values.update(overrides)
    args = []
    for key, value in values.items():
        args += [f"--{key}", str(value)]
    return args


def run_inprocess(run_mae_magma, args):
    return run_mae_magma.main(*run_mae_magma.make_parser().parse_args_and_config(args))


def test_end_to_end_image_folder_schedule_and_outputs(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10)  # 16 train images: 4 steps per epoch
    out = tmp_path / "out"
    config = tmp_path / "recipe.yaml"
    config.write_text("magma_start_epoch: 1\nmagma_epochs: 1\nmagma_weight: 0.5\nnum_train_epochs: 1\n")
    metrics = run_inprocess(run_mae_magma, ["--config", str(config), *base_args(tmp_path / "images", out, num_train_epochs=3,
                                                                 eval_strategy="epoch")])
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["step"] for entry in logs] == list(range(1, 13))  # the command line's 3 epochs beat the YAML's 1
    # On for epoch 1 = steps [4, 8); the entry logged after optimizer step s describes step s - 1.
    assert [entry["magma_weight"] for entry in logs] == [0.0] * 4 + [0.5] * 4 + [0.0] * 4
    for entry in logs:
        assert {"reconstruction_loss", "magma_loss", "magma_weight", "uniformity_loss", "online_accuracy"} <= set(entry)
    assert "eval_magma_loss" in metrics and "eval_loss" in metrics
    for folder in (out, out / "checkpoint-12"):
        assert (folder / "model.safetensors").is_file() and (folder / "preprocessor_config.json").is_file()
        config_json = json.loads((folder / "config.json").read_text())
        assert config_json["model_type"] == "vit_mae" and config_json["magma_weight"] == 0.5
    assert "M-MAE" in (out / "README.md").read_text()


def test_figures_are_written_next_to_the_checkpoint_and_embedded_in_its_card(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=3, magma_start_step=1, magma_steps=1,
                            figures="curves,keys,attention"))
    card = (out / "README.md").read_text()
    for png in ("training_curves.png", "key_pca.png", "attention_maps.png"):
        assert (out / "figures" / png).stat().st_size > 1000
        assert f"figures/{png}" in card
    with pytest.raises(ValueError, match="Unknown figure"):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", tmp_path / "bad", max_steps=1, figures="histogram"))


def test_streaming_path(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=8)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, streaming="true", max_steps=3, magma_start_step=1,
                            magma_steps=1, save_steps=3, max_eval_samples=4))
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0, 0.0]
    assert (out / "checkpoint-3" / "model.safetensors").is_file()


def test_streaming_needs_max_steps(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=2)
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", tmp_path / "out", streaming="true"))


def test_corrupt_images_are_skipped(make_image_folder, run_mae_magma, tmp_path, caplog):
    make_image_folder(tmp_path / "images", n_per_class=10, corrupt=3)
    out = tmp_path / "out"
    metrics = run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, num_train_epochs=1, magma_start_epoch=0))
    assert metrics["train_skipped_images"] >= 1
    assert "broken_" in caplog.text and "Skipping unreadable image" in caplog.text
    assert (out / "model.safetensors").is_file()


def write_flat_colour_folder(root, n=24):
    """Images of one colour each: augmentation cannot change them, so a run is a function of the seed alone."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        PIL.Image.new("RGB", (16, 16), colour).save(folder / f"{i}.png")


@pytest.mark.parametrize("in_memory", ["false", "true"])
def test_exact_resume_after_sigkill(make_image_folder, tmp_path, in_memory):
    if in_memory == "true":
        # Textured images: the crops and flips drawn on the device change the batches, so the resumed run must
        # draw exactly the uninterrupted run's augmentation.
        make_image_folder(tmp_path / "images", n_per_class=12, size=16, modes=("RGB",))
    else:
        write_flat_colour_folder(tmp_path / "images")
    common = dict(max_steps=12, magma_start_step=3, magma_steps=6, save_steps=4, in_memory=in_memory)
    # Every run in a fresh single-threaded process, so that the reference and the resumed run share the same
    # arithmetic (thread count and order of reductions) and can be compared bit for bit.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}

    def command(output_dir):
        return [sys.executable, str(SCRIPT), *base_args(tmp_path / "images", output_dir, **common)]

    def run(output_dir):
        result = subprocess.run(command(output_dir), env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]

    reference = tmp_path / "reference"
    run(reference)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint-8" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()  # really interrupted

    run(killed)  # resumes by itself
    ref_logs = {e["step"]: e for e in load_log_history(reference) if "loss" in e}
    new_logs = {e["step"]: e for e in load_log_history(killed) if "loss" in e}
    assert sorted(new_logs) == sorted(ref_logs) == list(range(1, 13))
    for step in range(9, 13):
        for key in ("loss", "magma_weight", "magma_loss", "reconstruction_loss"):
            assert new_logs[step][key] == ref_logs[step][key], (step, key)
    ref_weights, new_weights = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(new_weights[name], tensor, rtol=0, atol=0)


def test_two_processes_on_cpu(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", str(SCRIPT),
               *base_args(tmp_path / "images", out, max_steps=4, magma_start_step=1, magma_steps=2,
                          save_steps=4, magma_gather="true", per_device_train_batch_size=3)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0, 1.0, 0.0]
    for entry in logs:
        # The Trainer's loss is the mean over processes; the terms must be that same mean to add up to it.
        expected = entry["reconstruction_loss"] + entry["magma_weight"] * entry["magma_loss"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-5)


# The reproduction recipes add the grid's own options: tests/test_reproduce.py reads them.
RECIPES = sorted(r for r in (ROOT / "recipes").rglob("*.yaml") if not r.name.startswith("reproduce_"))


def test_recipes_use_only_known_options(run_mae_magma):
    parser = run_mae_magma.make_parser()
    for recipe in RECIPES:
        assert parser._read_config(str(recipe)), recipe  # raises on an unknown option
    assert len(RECIPES) == 17


@pytest.mark.parametrize("recipe", ["fashion_mnist_cpu.yaml", "cifar100/mu_mae.yaml", "imagenet100/m_mae.yaml"])
def test_recipes_parse(run_mae_magma, recipe, tmp_path):
    # bf16 needs a GPU; everything else is parsed and validated as on the GPU machine.
    data_args, training_args, model_args = run_mae_magma.make_parser().parse_args_and_config(
        ["--config", str(ROOT / "recipes" / recipe), "--output_dir", str(tmp_path), "--bf16", "false",
         "--use_cpu", "true"]
    )
    assert training_args.output_dir == str(tmp_path)  # the command line wins over the file
    assert training_args.base_learning_rate is not None and model_args.config_overrides
    if recipe != "fashion_mnist_cpu.yaml":
        assert data_args.dataset_name and training_args.num_train_epochs == 400
        assert training_args.magma_start_epoch == 10 and training_args.magma_epochs == 100
    if recipe.endswith("mu_mae.yaml"):
        assert training_args.magma_weight == 1.0 and training_args.uniformity_weight == 0.01


def test_config_file_errors(run_mae_magma, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_an_option: 1\n")
    with pytest.raises(ValueError, match="unknown options: not_an_option"):
        run_mae_magma.make_parser().parse_args_and_config(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_mae_magma.make_parser().parse_args_and_config(["--config", str(tmp_path / "missing.yaml")])


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert result.returncode == 0
    for option in ("--config", "--dataset_name", "--train_dir", "--magma_start_epoch", "--magma_gather",
                   "--base_learning_rate", "--mask_ratio", "--config_overrides", "--online_probe"):
        assert option in result.stdout, option


def test_script_pushes_to_the_hub_with_its_card_and_never_the_token(make_image_folder, run_mae_magma, tmp_path, hub_server):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    secret = "hf_scriptSecretToken1234567890"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, save_steps=2, magma_start_step=1, magma_steps=2,
                            push_to_hub="true", hub_model_id="org/m-mae-script", hub_token=secret))
    files = hub_server.files("org/m-mae-script")
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert "M-MAE" in card and "AutoModel.from_pretrained" in card and "2412.02871" in card
    assert json.loads(files["config.json"])["model_type"] == "vit_mae"
    titles = hub_server.commit_titles("org/m-mae-script")
    assert "Training in progress, step 2" in titles  # pushes during training, not only the final one
    for title, name, content in hub_server.all_commit_files("org/m-mae-script"):
        assert secret.encode() not in content, (title, name)
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert not hub_server.unknown_requests

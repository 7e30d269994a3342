"""Every recipe under recipes/ starts as written: the real `MAGMATrainer` is built from it and trains one step
(a ``finetune_*`` recipe: run_eval.py fine-tunes a tiny checkpoint for one step).

Only the model size, the data (a small local image folder instead of the Hub dataset), the step count and the
output folder are overridden; every other setting (trackers, precision, workers, schedule) is the recipe's.
"""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from tests.helpers import ROOT
from tests.helpers.tiny import tiny_overrides

RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
TINY = tiny_overrides(patch_size=8, decoder_hidden_size=16, decoder_intermediate_size=32)


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_grid(recipe: Path) -> bool:
    return recipe.name.startswith("reproduce_")


def is_finetuning(recipe: Path) -> bool:
    return recipe.name.startswith("finetune_")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes, 8 RGB images each, with separate train and test splits."""
    root = tmp_path_factory.mktemp("recipe_images")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(8):
                PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def recipe_args(recipe, image_folder, output_dir):
    args = ["--config", str(recipe), "--dataset_name", str(image_folder), "--config_overrides", TINY,
            "--output_dir", str(output_dir), "--max_steps", "1", "--per_device_train_batch_size", "4",
            "--per_device_eval_batch_size", "4", "--disable_tqdm", "true", "--logging_steps", "1"]
    if not torch.cuda.is_available():
        args += ["--use_cpu", "true"]  # the GPU recipes' bf16 then runs on the CPU
    if is_grid(recipe):
        # One cell of the grid; the evaluation that follows pretraining runs on the same tiny folder.
        args += ["--methods", "m-mae", "--seeds", "0", "--results_dir", str(output_dir / "results"),
                 "--linear_epochs", "2"]
    return args


def test_every_recipe_is_covered():
    assert len(RECIPES) >= 18, [r.name for r in RECIPES]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_builds_the_trainer_and_trains_one_step(recipe, image_folder, tmp_path):
    output_dir = tmp_path / "out"
    if is_finetuning(recipe):
        from transformers import ViTMAEConfig

        from hf_magma import ViTMAEWithMAGMA
        from tests.helpers.tiny import TINY_DECODER, TINY_VIT

        ViTMAEWithMAGMA(ViTMAEConfig(**TINY_VIT, **TINY_DECODER)).save_pretrained(tmp_path / "tiny")
        script = load_script("run_eval")
        results = script.main(*script.make_parser().parse_args_and_config([
            "--config", str(recipe), "--model_name_or_path", str(tmp_path / "tiny"),
            "--train_dir", str(image_folder / "train"), "--validation_dir", str(image_folder / "test"),
            "--output_dir", str(output_dir), "--max_steps", "1", "--per_device_train_batch_size", "4",
            "--linear_epochs", "1", "--use_cpu", "true"]))
        assert 0.0 <= results["finetune_accuracy"] <= 1.0
        return
    if is_grid(recipe):
        script = load_script("reproduce")
        records = script.main(*script.make_parser().parse_args_and_config(
            recipe_args(recipe, image_folder, output_dir)), command="test")
        assert records, "the grid ran no cell"
        runs = list(output_dir.rglob("trainer_state.json"))
    else:
        script = load_script("run_mae_magma")
        metrics = script.main(*script.make_parser().parse_args_and_config(
            recipe_args(recipe, image_folder, output_dir)))
        assert metrics["train_loss"] > 0
        runs = [output_dir / "trainer_state.json"]
    assert runs and all(state.is_file() for state in runs)
    assert '"global_step": 1' in runs[0].read_text()
    reporters = (recipe.read_text().split("report_to:")[1].split()[0])
    if reporters == "tensorboard":  # the recipe's tracker really ran
        assert list(output_dir.rglob("events.out.tfevents.*")), "no TensorBoard event file written"




def test_missing_tracker_stops_at_argument_parsing_and_names_the_extra(tmp_path, hide_packages):
    recipe = ROOT / "recipes" / "cifar100" / "m_mae.yaml"
    code = hide_packages("tensorboard", "tensorboardX") + textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("s", {str(ROOT / "scripts" / "run_mae_magma.py")!r})
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        try:
            script.make_parser().parse_args_and_config(["--config", {str(recipe)!r},
                                                        "--output_dir", {str(tmp_path)!r}])
        except ImportError as error:
            print("ERROR:", error)
        else:
            print("PARSED")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: A tracker asked for by --report_to is not installed" in result.stdout, result.stdout
    assert 'hf-magma[tensorboard]' in result.stdout and "--report_to none" in result.stdout


def test_missing_figure_packages_stop_at_argument_parsing(tmp_path, hide_packages):
    recipe = ROOT / "recipes" / "fashion_mnist_cpu.yaml"  # draws figures at the end of training
    code = hide_packages("matplotlib") + textwrap.dedent(f"""
        from hf_magma.training.trainer import MAGMATrainingArguments
        try:
            MAGMATrainingArguments(output_dir={str(tmp_path)!r}, figures="curves,keys", report_to="none")
        except ImportError as error:
            print("ERROR:", error)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: --figures curves,keys needs matplotlib" in result.stdout and "hf-magma[viz]" in result.stdout
    assert "figures:" in recipe.read_text()

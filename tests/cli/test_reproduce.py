"""The reproduction grid end to end on a generated image folder (tiny model, two steps per cell)."""

import json
import shutil
from pathlib import Path

import pytest

from hf_magma.cli.grid_results import summary_table
from hf_magma.cli.reproduce import ReproduceArguments, method_training_args
from hf_magma.training.training_args import MAGMATrainingArguments
from tests.helpers import ROOT
from tests.helpers.tiny import tiny_overrides

SCRIPT = ROOT / "scripts" / "reproduce.py"
TINY = tiny_overrides()



@pytest.fixture(scope="module")
def reproduce_script(load_script):
    return load_script(SCRIPT)


def grid_args(tmp_path, **overrides):
    values = {
        "train_dir": tmp_path / "images", "output_dir": tmp_path / "outputs", "results_dir": tmp_path / "results",
        "config_overrides": TINY, "per_device_train_batch_size": 8, "max_steps": 2, "logging_steps": 1,
        "magma_weight": 1.0, "uniformity_weight": 0.01, "magma_start_step": 0, "magma_steps": 1,
        "learning_rate": 1e-3, "save_strategy": "no", "report_to": "none", "disable_tqdm": "true", "use_cpu": "true",
        "validation_split_percentage": 25, "knn_k": 3, "linear_epochs": 2, "eval_batch_size": 8,
    }
    values.update(overrides)
    args = ["--methods", "mae", "m-mae", "--seeds", "0"]
    for key, value in values.items():
        args += [f"--{key}", str(value)]
    return args


def run(reproduce_script, args):
    return reproduce_script.main(*reproduce_script.make_parser().parse_args_and_config(args), command="test")


def test_grid_cells_skip_on_rerun_and_summary(make_image_folder, reproduce_script, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=16)  # 24 train / 8 held-out images
    cells = run(reproduce_script, grid_args(tmp_path))
    assert set(cells) == {("mae", 0), ("m-mae", 0)}

    results = tmp_path / "results"
    mae = json.loads((results / "mae_seed0.json").read_text())
    m_mae = json.loads((results / "m-mae_seed0.json").read_text())
    for record, weight in ((mae, 0.0), (m_mae, 1.0)):
        assert 0 <= record["linear_top1"] <= 1 and 0 <= record["knn_top1"] <= 1
        assert record["settings"]["training"]["magma_weight"] == weight
        assert record["settings"]["training"]["uniformity_weight"] == 0.0
        assert record["settings"]["evaluation"]["knn_k"] == 3
        assert record["pretrain_seconds"] > 0 and record["eval_seconds"] >= 0
        assert record["train_steps"] == 2 and record["command"] == "test"
        assert record["machine"]["cpu"] and record["machine"]["cpu_count"] >= 1
        assert record["final_losses"]["train"]["reconstruction_loss"] > 0
        assert Path(record["checkpoint"], "model.safetensors").is_file()
    # The schedule's window is step 0 only: M-MAE logs lambda 1 then 0, MAE 0 throughout.
    assert [e["magma_weight"] for e in m_mae["training_curve"]] == [1.0, 0.0]
    assert [e["magma_weight"] for e in mae["training_curve"]] == [0.0, 0.0]

    summary = (results / "summary.md").read_text()
    assert "| MAE | 1 | 0 |" in summary and "| M-MAE | 1 | 0 |" in summary and "U-MAE" not in summary
    assert f"{100 * m_mae['linear_top1']:.2f}" in summary and "`test`" in summary

    # A rerun trains nothing: the deleted checkpoints are not rebuilt and the JSONs are untouched.
    before = {p.name: p.read_text() for p in results.glob("*.json")}
    shutil.rmtree(tmp_path / "outputs")
    again = run(reproduce_script, grid_args(tmp_path))
    assert not (tmp_path / "outputs").exists()
    assert {p.name: p.read_text() for p in results.glob("*.json")} == before
    assert again[("m-mae", 0)]["linear_top1"] == m_mae["linear_top1"]

    # A finished cell made with another budget is refused, not mixed into the table.
    with pytest.raises(ValueError, match="max_steps: 2 .* vs 3"):
        run(reproduce_script, grid_args(tmp_path, max_steps=3))


def test_summary_table_mean_and_sample_std():
    cells = [
        {"method": "m-mae", "seed": s, "linear_top1": lin, "knn_top1": knn, "pretrain_seconds": 100.0,
         "eval_seconds": 20.0}
        for s, lin, knn in ((0, 0.5, 0.4), (1, 0.7, 0.4))
    ]
    table = summary_table(cells)
    assert "| M-MAE | 2 | 0, 1 | 60.00 +- 14.14 | 40.00 +- 0.00 | 100 | 20 |" in table


def test_methods_and_recipe_checked(tmp_path):
    with pytest.raises(ValueError, match="--methods must be among"):
        ReproduceArguments(methods=["simclr"])
    with pytest.raises(ValueError, match="--linear_epochs must be a finite positive integer"):
        ReproduceArguments(linear_epochs=0)
    args = MAGMATrainingArguments(output_dir=str(tmp_path), magma_weight=1.0, uniformity_weight=0.0, use_cpu=True)
    with pytest.raises(ValueError, match="mu-mae needs a positive uniformity_weight"):
        method_training_args(args, "mu-mae", 0)
    cell = method_training_args(args, "mae", 3)
    assert (cell.magma_weight, cell.uniformity_weight, cell.seed) == (0.0, 0.0, 3)
    assert cell.output_dir == str(tmp_path / "mae" / "seed3")


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("reproduce_*.yaml")), ids=lambda p: p.name)
def test_reproduction_recipes_parse(reproduce_script, recipe, tmp_path):
    reproduce_args, _, training_args, _ = reproduce_script.make_parser().parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--bf16", "false", "--use_cpu", "true"]
    )
    assert training_args.magma_weight > 0 and training_args.uniformity_weight > 0  # the methods switch them off
    assert reproduce_args.seeds and reproduce_args.methods


def test_processes_give_the_serial_cells_and_the_pixel_row(make_image_folder, reproduce_script, tmp_path, capfd):
    make_image_folder(tmp_path / "images", n_per_class=16)
    serial = run(reproduce_script, grid_args(tmp_path, results_dir=tmp_path / "serial", output_dir=tmp_path / "out1",
                           num_threads=1))
    capfd.readouterr()
    parallel_args = grid_args(tmp_path, results_dir=tmp_path / "parallel", output_dir=tmp_path / "out2",
                              num_threads=1, processes=2)
    parallel = run(reproduce_script, [*parallel_args, "--pixels", "true", "--label_fractions", "0.5", "1"])
    assert list(parallel) == [("mae", 0), ("m-mae", 0)]
    # The terminal gets one line per event of each job; each job's own output (progress bars, logs) is in its file.
    terminal = capfd.readouterr()
    lines = terminal.out.splitlines()
    assert lines[0] == f"3 jobs, 2 at a time; their full logs: {tmp_path / 'out2' / 'logs'}", lines
    for label in ("mae seed 0", "m-mae seed 0", "pixels"):
        mine = [line.split(label, 1)[1].strip() for line in lines if line.startswith(f"  {label} ")]
        assert mine[0].startswith("started (log: ") and mine[-1].startswith("done in "), (label, mine)
    assert any("pretraining, 2 steps" in line for line in lines) and any("evaluating" in line for line in lines)
    assert "it/s" not in terminal.out + terminal.err and "Extracting features" not in terminal.out + terminal.err
    for name in ("mae_seed0.log", "m-mae_seed0.log", "pixels.log"):
        assert "knn_accuracy" in (tmp_path / "out2" / "logs" / name).read_text(), name
    for key in serial:
        # Same seeds, one thread each: the cells trained in their own processes match the serial ones.
        assert parallel[key]["training_curve"] == serial[key]["training_curve"]
        assert set(parallel[key]["results"]) == {"knn_accuracy", "linear_accuracy", "linear_accuracy_50pct"}
    pixels = json.loads((tmp_path / "parallel" / "pixels.json").read_text())
    # The encoders' input size (16), three channels: the folder holds colour images.
    assert pixels["feature_dim"] == 16 * 16 * 3 and pixels["command"] == "test" and pixels["eval_seconds"] >= 0
    assert set(pixels["results"]) == {"knn_accuracy", "linear_accuracy", "linear_accuracy_50pct"}
    summary = (tmp_path / "parallel" / "summary.md").read_text()
    assert "| pixels (no model, 768 values) | - | - |" in summary and "50% labels" in summary
    assert "pixels" not in (tmp_path / "serial" / "summary.md").read_text()


def test_cell_settings_record_an_augmentation_that_is_not_maes(tmp_path):
    from hf_magma.cli.reproduce import cell_settings
    from hf_magma.data.arguments import ImageDataArguments
    from hf_magma.models.arguments import MAGMAModelArguments

    training_args = MAGMATrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    model_args, reproduce_args = MAGMAModelArguments(), ReproduceArguments()
    default = cell_settings(ImageDataArguments(), training_args, model_args, reproduce_args)
    assert "augmentation" not in default["data"]  # cells made before the crop was an option still match
    mild = cell_settings(ImageDataArguments(crop_scale=[0.8, 1.0]), training_args, model_args, reproduce_args)
    assert mild["data"]["augmentation"]["crop_scale"] == [0.8, 1.0]

"""`scripts/reproduce.py --sweep`: the settings a sweep makes, how each is applied, and a tiny sweep end to end
(cells per setting, the recipe's values merged, evaluation-only settings reusing the recipe's checkpoints, the
table, reuse on a rerun)."""

import json

import pytest

from hf_magma.cli import reproduce
from hf_magma.cli.sweep import apply_setting, methods_for_setting, parse_axis, setting_name, sweep_settings
from tests.helpers.tiny import tiny_overrides


def test_axes_and_settings_one_at_a_time_and_as_a_grid():
    weight = parse_axis("magma_weight=0.1,1,1")
    assert weight.options == ("magma_weight",) and weight.values == (("0.1",), ("1",))  # repeats dropped
    pair = parse_axis("magma_reference_layers:magma_target_layer=1:2,2:3")
    assert pair.values == (("1", "2"), ("2", "3"))
    assert sweep_settings([weight, pair], "one_at_a_time") == [
        {}, {"magma_weight": "0.1"}, {"magma_weight": "1"},
        {"magma_reference_layers": "1", "magma_target_layer": "2"},
        {"magma_reference_layers": "2", "magma_target_layer": "3"},
    ]
    grid = sweep_settings([weight, pair], "grid")
    assert len(grid) == 4 and {"magma_weight": "1", "magma_reference_layers": "2", "magma_target_layer": "3"} in grid
    assert setting_name({}) == "recipe"
    assert setting_name({"magma_reference_layers": "1", "magma_target_layer": "2"}) == \
        "magma_reference_layers-1__magma_target_layer-2"


@pytest.mark.parametrize("spec, message", [
    ("magma_weight", "expected option=v1,v2"),
    ("magma_weight=", "expected option=v1,v2"),
    ("a:b=1:2,3", "needs 2 part"),
])
def test_bad_sweep_entries_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_axis(spec)


def test_an_option_swept_twice_is_refused():
    with pytest.raises(ValueError, match="magma_weight more than once"):
        sweep_settings([parse_axis("magma_weight=1"), parse_axis("magma_weight:mask_ratio=2:0.5")], "grid")


def recipe(tmp_path, *extra):
    argv = ["--output_dir", str(tmp_path / "out"), "--config_overrides", tiny_overrides(), "--use_cpu", "true",
            "--report_to", "none", *extra]
    return reproduce.make_parser().parse_args_and_config(argv)


def test_a_setting_is_converted_and_checked_as_the_command_line_does(tmp_path):
    arguments = recipe(tmp_path)
    grid, _, training, model = apply_setting(arguments, parser=reproduce.make_parser(), setting={
        "magma_weight": "0.1", "magma_start_epoch": "auto", "label_fractions": "0.01+1", "decoder_hidden_size": "64",
        "mask_ratio": "0.5", "magma_reference_layers": "0+1"})
    assert training.magma_weight == 0.1 and training.magma_start_epoch == "auto" and training.magma_auto_start
    assert grid.label_fractions == [0.01, 1.0] and model.mask_ratio == 0.5
    assert model.magma_reference_layers == "0,1"
    overrides = model.config_overrides.split(",")
    assert "decoder_hidden_size=64" in overrides and "decoder_hidden_size=32" not in overrides
    assert arguments[2].magma_weight == 1.0  # the recipe itself is left as it was
    with pytest.raises(ValueError, match="not an option of scripts/reproduce.py"):
        apply_setting(arguments, parser=reproduce.make_parser(), setting={"magma_wieght": "1"})
    with pytest.raises(ValueError, match="magma_start_epoch"):
        apply_setting(arguments, parser=reproduce.make_parser(), setting={"magma_start_epoch": "soon"})
    with pytest.raises(ValueError, match="cannot be swept"):
        apply_setting(arguments, parser=reproduce.make_parser(), setting={"seeds": "1"})


def test_a_sweep_runs_one_grid_per_setting_and_reuses_its_cells(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=16)
    results = tmp_path / "results"
    config = tmp_path / "recipe.yaml"
    config.write_text("magma_epochs: 2\n")  # an int, where the sweep's value is read as a float
    argv = ["--methods", "mae", "m-mae", "--seeds", "0", "--train_dir", str(tmp_path / "images"),
            "--results_dir", str(results), "--validation_split_percentage", "25", "--per_device_train_batch_size",
            "8", "--max_steps", "4", "--logging_steps", "1", "--magma_start_step", "1", "--magma_steps", "2",
            "--learning_rate", "1e-3", "--save_strategy", "no", "--disable_tqdm", "true", "--knn_k", "3",
            "--linear_epochs", "2", "--eval_batch_size", "8",
            "--config", str(config), "--sweep", "magma_weight=0.5,1", "magma_epochs=2", "pooling=mean",
            "magma_reference_layers:magma_target_layer=0:1"]
    cells = reproduce.main(*recipe(tmp_path, *argv), command="test")

    # lambda 1 is the recipe's: run once; the MAGMA settings leave MAE alone; pooling re-evaluates the recipe.
    assert {name: sorted(cells[name]) for name in cells} == {
        "recipe": [("m-mae", 0), ("mae", 0)],
        "magma_weight-0.5": [("m-mae", 0)],
        "pooling-mean": [("m-mae", 0), ("mae", 0)],
        "magma_reference_layers-0__magma_target_layer-1": [("m-mae", 0)],
    }
    base = json.loads((results / "recipe" / "m-mae_seed0.json").read_text())
    half = json.loads((results / "magma_weight-0.5" / "m-mae_seed0.json").read_text())
    mean = json.loads((results / "pooling-mean" / "m-mae_seed0.json").read_text())
    pair = json.loads((results / "magma_reference_layers-0__magma_target_layer-1" / "m-mae_seed0.json").read_text())
    assert half["settings"]["training"]["magma_weight"] == 0.5 and base["settings"]["training"]["magma_weight"] == 1
    assert half["checkpoint"] != base["checkpoint"] and "magma_weight-0.5" in half["checkpoint"]
    assert pair["settings"]["model"]["magma_reference_layers"] == "0"
    assert pair["settings"]["model"]["magma_target_layer"] == 1
    assert base["magma_window"] == {"start_step": 1, "end_step": 3}
    assert mean["settings"]["evaluation"]["pooling"] == "mean" and mean["checkpoint"] == base["checkpoint"]
    assert mean["pretrained_cell"].endswith("recipe/m-mae_seed0.json")
    assert mean["pretrain_seconds"] == base["pretrain_seconds"] and mean["magma_window"] == base["magma_window"]
    assert (results / "recipe" / "summary.md").is_file() and (results / "pooling-mean" / "summary.md").is_file()

    table = (results / "sweep.md").read_text()
    assert "| the recipe | M-MAE | 1 |" in table and "| magma_weight=0.5 | M-MAE | 1 |" in table
    assert "| pooling=mean | MAE | 1 |" in table and "steps 1-3" in table and "`test`" in table
    assert "magma_weight=1 |" not in table and "magma_epochs=2" not in table  # the recipe's values

    # A second seed of the recipe alone, later: the table keeps the first sweep's rows and counts both seeds.
    more = [*argv[:argv.index("--sweep")], "--seeds", "1", "--methods", "m-mae"]
    reproduce.main(*recipe(tmp_path, *more, "--sweep", "pooling=mean"), command="second")
    table = (results / "sweep.md").read_text()
    assert "| the recipe | M-MAE | 2 |" in table and "| magma_weight=0.5 | M-MAE | 1 |" in table
    assert "`test`; `second`" in table

    written = {path: path.stat().st_mtime_ns for path in results.rglob("*_seed*.json")}
    again = reproduce.main(*recipe(tmp_path, *argv), command="test")  # nothing left to run
    assert {path: path.stat().st_mtime_ns for path in results.rglob("*_seed*.json")} == written
    assert again["magma_weight-0.5"][("m-mae", 0)]["linear_top1"] == half["linear_top1"]

    with pytest.raises(ValueError, match="made with other settings"):  # the recipe changed under its cells
        reproduce.main(*recipe(tmp_path, *argv, "--mask_ratio", "0.5"), command="test")


def test_a_setting_of_the_term_alone_skips_the_methods_without_it():
    methods = ["mae", "m-mae", "u-mae", "mu-mae"]
    assert methods_for_setting({"magma_weight": "10"}, methods) == ["m-mae", "mu-mae"]
    assert methods_for_setting({"uniformity_weight": "0.1"}, methods) == ["u-mae", "mu-mae"]
    both = {"magma_weight": "10", "uniformity_weight": "0.1"}
    assert methods_for_setting(both, methods) == ["m-mae", "u-mae", "mu-mae"]
    # With another option the setting is a new recipe for every method, MAE included (its lambda stays 0).
    assert methods_for_setting({"magma_weight": "10", "base_learning_rate": "7.5e-4"}, methods) == methods
    assert methods_for_setting({}, methods) == methods

"""The demo's closing table: methods' mean accuracies, their PaCMAP Davies-Bouldin index, the pixel floor."""

import json

import pytest

from hf_magma.cli.compare_runs import comparison_rows, comparison_table


def write_cell(folder, method, seed, linear, knn):
    record = {"method": method, "seed": seed, "linear_top1": linear, "knn_top1": knn}
    (folder / f"{method}_seed{seed}.json").write_text(json.dumps(record))


def test_table_has_each_method_its_davies_bouldin_and_the_pixel_floor(tmp_path):
    write_cell(tmp_path, "m-mae", 0, 0.70, 0.60)
    write_cell(tmp_path, "m-mae", 1, 0.72, 0.64)
    write_cell(tmp_path, "mae", 0, 0.55, 0.45)
    (tmp_path / "pixels.json").write_text(json.dumps({"linear_top1": 0.84, "knn_top1": 0.855, "feature_dim": 784}))
    scores = tmp_path / "pacmap.json"
    scores.write_text(json.dumps({"MAE": {"davies_bouldin": 12.5}, "M-MAE": {"davies_bouldin": 9.25}}))

    rows = comparison_rows(tmp_path, scores)
    assert [r["name"] for r in rows] == ["MAE", "M-MAE", "pixels (784 values, no model)"]
    assert rows[1]["linear"] == pytest.approx(71.0) and rows[1]["knn"] == pytest.approx(62.0)
    table = comparison_table(tmp_path, scores).splitlines()
    assert table[2] == "| MAE (seed 0) | 55.00 | 45.00 | 12.50 |"
    assert table[3] == "| M-MAE (seed 0, 1) | 71.00 | 62.00 | 9.25 |"
    assert table[4] == "| pixels (784 values, no model) | 84.00 | 85.50 | - |"
    # Without the figure's scores the index is left out, not made up.
    assert comparison_table(tmp_path).splitlines()[2] == "| MAE (seed 0) | 55.00 | 45.00 | - |"


def test_empty_results_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no cell results .* scripts/reproduce.py"):
        comparison_rows(tmp_path)

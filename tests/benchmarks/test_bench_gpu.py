"""benchmarks/bench_gpu.py --smoke: the GPU benchmark's code, run on CPU with tiny settings."""

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_gpu_benchmark_smoke_run_writes_every_section(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    # A generous budget: on a loaded CPU nothing may be skipped for time.
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--time_budget", "3000",
               "--output", str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert {"device", "torch", "transformers"} <= set(report["machine"])
    rows = {(row["method"], row["compiled"]): row for row in report["model"]["rows"]}
    assert set(rows) == {("mae", False), ("m-mae", False), ("mu-mae", False), ("m-mae", True)}
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["batch"] >= 1 and row["tflops_per_image"] > 0 and row["mfu"] > 0
    assert {"m-mae eager", "mu-mae eager"} <= set(report["model"]["magma_overhead_over_mae"])
    assert report["jpeg_data_path"]["images_per_s"] > 0 and report["jpeg_data_path"]["data_over_model"] > 0
    assert [(row["model"], row["method"]) for row in report["in_memory"]] == [("demo", "mae"), ("demo", "m-mae")]
    assert all(row["hours_for_100_epochs_of_60000"] > 0 for row in report["in_memory"])
    # The pretraining script under the FSDP accelerate config: on CPU accelerate runs it as plain DDP (FSDP needs
    # GPUs), but the launch, the checkpoints' full weights and encoder/, and loading that encoder are the GPU run's.
    fsdp = report["fsdp"]
    assert fsdp["returncode"] == 0, fsdp.get("error")
    assert fsdp["distributed_type"] in {"MULTI_CPU", "NO"}
    assert fsdp["folders"] == ["checkpoint-2", "checkpoint-4", "run"] == fsdp["weights_and_encoder_in"]
    assert fsdp["encoder_loads"] is True
    assert "| m-mae | compiled |" in result.stdout and "JPEG data path" in result.stdout
    assert "fsdp.yaml (4 steps of 4, accelerate's distributed type" in result.stdout

"""examples/quickstart.py runs as written and its encoder/ features equal the model's own unmasked CLS."""

import subprocess
import sys

from tests.helpers import ROOT


def test_quickstart_runs_and_its_encoder_features_match(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ViTModel features (4, 96), equal to the model's own unmasked CLS: True" in result.stdout
    assert (tmp_path / "outputs" / "quickstart" / "encoder" / "config.json").is_file()

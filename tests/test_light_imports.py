"""The loss and the model import with torch and transformers alone; the rest of the package loads on first use."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("datasets", "kornia", "sklearn", "matplotlib")


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_model_and_loss_work_without_the_optional_packages(hide_packages):
    code = hide_packages(*OPTIONAL) + textwrap.dedent("""
        import torch
        from transformers import ViTMAEConfig
        from hf_magma import MAGMARegularizer, ViTMAEWithMAGMA, magma_loss
        config = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              image_size=16, patch_size=4, decoder_num_hidden_layers=1, decoder_hidden_size=16,
                              decoder_num_attention_heads=2, decoder_intermediate_size=32)
        outputs = ViTMAEWithMAGMA(config)(torch.randn(4, 3, 16, 16))
        outputs.loss.backward()
        assert torch.isfinite(magma_loss(torch.randn(8, 4), torch.randn(8, 4)))
        assert MAGMARegularizer([0], 1)
        for name in ("datasets", "kornia", "sklearn", "matplotlib"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise AssertionError(name + " was not hidden")
        print("OK")
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def test_a_missing_extra_is_named(hide_packages):
    code = hide_packages("kornia") + textwrap.dedent("""
        try:
            from hf_magma import TwoViewAugmentation
        except ImportError as error:
            print("ERROR:", error)
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: The two-view augmentation of SimCLR / VICReg" in result.stdout and "hf-magma[ssl]" in result.stdout


def test_import_hf_magma_loads_no_optional_stack():
    result = run_python("import sys, hf_magma; print(sorted(m for m in sys.modules if m.split('.')[0] in "
                        f"{OPTIONAL + ('pacmap', 'hf_magma.trainer')!r} or m in ('hf_magma.evaluation', "
                        "'hf_magma.data', 'hf_magma.trainer', 'hf_magma.hub')))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout


def test_lazy_names_resolve_to_their_modules():
    import hf_magma

    assert hf_magma.MAGMATrainer.__module__ == "hf_magma.trainer"
    assert hf_magma.evaluation.load_encoder is hf_magma.load_encoder
    for name in hf_magma.__all__:
        assert getattr(hf_magma, name) is not None, name
    assert set(hf_magma.__all__) <= set(dir(hf_magma))

"""The loss and the model import with torch and transformers alone; the rest of the package loads on first use."""

import subprocess
import sys
import textwrap

from tests.helpers import ROOT

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
            from hf_magma.data import TwoViewAugmentation
        except ImportError as error:
            print("ERROR:", error)
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: The two-view augmentation of SimCLR / VICReg" in result.stdout and "hf-magma[ssl]" in result.stdout


def test_import_hf_magma_loads_no_optional_stack():
    code = ("import sys, hf_magma; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{OPTIONAL + ('pacmap',)!r} or m.split('.')[:2] in (['hf_magma', 'data'], ['hf_magma', 'training'], "
            "['hf_magma', 'records'], ['hf_magma', 'evaluation'], ['hf_magma', 'visualize'], ['hf_magma', 'cli'])))")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout


def test_lazy_names_resolve_to_their_modules():
    import hf_magma

    assert hf_magma.MAGMATrainer.__module__ == "hf_magma.training.trainer"
    assert len(hf_magma.__all__) <= 20
    for name in hf_magma.__all__:
        assert getattr(hf_magma, name) is not None, name
    assert set(hf_magma.__all__) <= set(dir(hf_magma))
    for package in ("losses", "models", "data", "records", "training", "encoders", "evaluation", "visualize"):
        module = getattr(hf_magma, package)
        for name in module.__all__:
            value = getattr(module, name)
            # each subpackage exports its own names only
            assert getattr(value, "__module__", module.__name__).startswith(module.__name__) or not callable(value), (
                package, name)


def test_names_the_root_exported_before_still_import_with_a_future_warning():
    import pytest

    import hf_magma
    from hf_magma.evaluation import knn_accuracy

    with pytest.warns(FutureWarning, match=r"from hf_magma.evaluation import knn_accuracy"):
        assert hf_magma.knn_accuracy is knn_accuracy
    with pytest.warns(FutureWarning, match=r"from hf_magma.encoders import load_encoder"):
        from hf_magma.evaluation import load_encoder
    assert load_encoder is hf_magma.load_encoder
    with pytest.raises(AttributeError):
        hf_magma.no_such_name  # noqa: B018


def test_no_exported_name_is_also_a_submodule_name():
    """Importing a submodule sets it as its package's attribute: a function exported under the submodule's own name
    would turn into that module once anything imported the submodule (`from hf_magma.evaluation import
    linear_probe` gave a module after `hf_magma.evaluation.linear_probe` was imported)."""
    import pkgutil

    import hf_magma

    for info in pkgutil.walk_packages(hf_magma.__path__, "hf_magma."):
        if not info.ispkg:
            continue
        package = __import__(info.name, fromlist=["__all__"])
        submodules = {name for _, name, _ in pkgutil.iter_modules(package.__path__)}
        assert not set(getattr(package, "__all__", ())) & submodules, info.name

"""Optional packages a run asks for through its arguments: experiment trackers (``--report_to``) and the figures
(``--figures``). They are checked when the arguments are parsed, so that a run stops at once with the install
command, not when the `Trainer` is built or after training when the figures are drawn."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

# --report_to name -> (modules of which one must import, what to install). tensorboard is an hf-magma extra.
REPORTERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), 'pip install "hf-magma[tensorboard]" (or "hf-magma[train]")'),
    "wandb": (("wandb",), "pip install wandb"),
    "trackio": (("trackio",), "pip install trackio"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "comet_ml": (("comet_ml",), "pip install comet-ml"),
    "clearml": (("clearml",), "pip install clearml"),
    "dvclive": (("dvclive",), "pip install dvclive"),
    "swanlab": (("swanlab",), "pip install swanlab"),
    "codecarbon": (("codecarbon",), "pip install codecarbon"),
    "neptune": (("neptune",), "pip install neptune"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as absent
        return False


def check_reporters(report_to: str | Sequence[str] | None) -> None:
    """Raise ``ImportError`` naming the package (or hf-magma extra) to install for each ``--report_to`` tracker
    that is not installed. ``none``/``all``/empty pass, as do trackers this table does not know (transformers
    checks those itself)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    missing = [
        f"--report_to {name} needs {' or '.join(REPORTERS[name][0])}: {REPORTERS[name][1]}"
        for name in names
        if name in REPORTERS and not any(_installed(module) for module in REPORTERS[name][0])
    ]
    if missing:
        raise ImportError(
            "A tracker asked for by --report_to is not installed. "
            + "; ".join(missing)
            + ". Or log nowhere with --report_to none."
        )


def check_figure_packages(figures: Sequence[str] | None) -> None:
    """Raise ``ImportError`` naming the ``viz`` extra when a package that ``figures`` (names, None: all) need is not
    installed: matplotlib for every figure, pacmap and scikit-learn for the PaCMAP one."""
    needed = {"matplotlib": "matplotlib"}
    if figures is None or "pacmap" in figures:
        needed.update({"pacmap": "pacmap", "scikit-learn": "sklearn"})
    missing = [name for name, module in needed.items() if not _installed(module)]
    if missing:
        raise ImportError(
            f"--figures {','.join(figures) if figures else 'all'} needs {', '.join(missing)}, which "
            f'{"is" if len(missing) == 1 else "are"} not installed: pip install "hf-magma[viz]"'
        )

"""The figures a run can draw (`FIGURES`) and the parsing of ``--figures``, without any plotting import, so that
the training arguments can check the option cheaply."""

from __future__ import annotations

from collections.abc import Sequence

#: The figures `write_figures` can draw, with the file name and the caption each gets.
FIGURES: dict[str, tuple[str, str]] = {
    "pacmap": ("pacmap.png", "PaCMAP of the encoder's features with the Davies-Bouldin index"),
    "keys": ("key_pca.png", "First principal component of the attention keys, per layer"),
    "attention": ("attention_maps.png", "Last-layer CLS attention, per head"),
    "curves": ("training_curves.png", "Training curves: reconstruction loss, MAGMA loss and weight"),
    "reconstructions": ("reconstructions.png", "Reconstructions under a fixed seeded mask: the original, the masked "
                        "input, the reconstruction and the reconstruction with the visible patches pasted back"),
}


def parse_figures(figures: str | Sequence[str] | None) -> list[str] | None:
    """``"pacmap,keys"`` or ``["pacmap", "keys"]`` -> a checked list; ``None`` or ``"all"`` -> ``None`` (all)."""
    if figures is None:
        return None
    names = [f.strip() for f in figures.split(",")] if isinstance(figures, str) else [str(f).strip() for f in figures]
    names = [n for n in names if n]
    if names == ["all"]:
        return None
    unknown = [n for n in names if n not in FIGURES]
    if unknown or not names:
        raise ValueError(f"Unknown figure(s) {unknown or names}: choose among {', '.join(FIGURES)} (or 'all')")
    return list(dict.fromkeys(names))

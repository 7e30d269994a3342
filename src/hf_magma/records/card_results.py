"""What a model card gains after training: the evaluation results (table and model-index metadata) and the
figures, each in a marked section that is replaced in place, so the rest of the card is kept."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from ..utils.checks import check_number

_EVAL_START, _EVAL_END = "<!-- magma-eval-results-start -->", "<!-- magma-eval-results-end -->"
_FIGURES_START, _FIGURES_END = "<!-- magma-figures-start -->", "<!-- magma-figures-end -->"


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value).replace("|", "\\|")
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def eval_section(eval_results: Sequence[EvalResult] | None) -> str:
    if not eval_results:
        body = (
            "No evaluation results recorded yet. Linear-probe and k-NN accuracies on frozen features (the paper's "
            "protocol) are added here by `hf_magma.add_evaluation_results` (the evaluation script does it)."
        )
    else:
        rows = ["| task | dataset | split | metric | value | measured with |", "|---|---|---|---|---|---|"]
        for result in eval_results:
            measured = ", ".join(f"{k} {format_value(v)}" for k, v in (result.metric_args or {}).items())
            rows.append(
                f"| {result.task_type} | {result.dataset_name} | {result.dataset_split or ''} | "
                f"{result.metric_name or result.metric_type} | {format_value(result.metric_value)} | {measured} |"
            )
        body = "\n".join(rows)
    return f"{_EVAL_START}\n{body}\n{_EVAL_END}"


def figures_section(figures: Mapping[str, str] | None) -> str:
    if not figures:
        return f"{_FIGURES_START}\n{_FIGURES_END}"
    parts = ["## Figures", ""]
    for caption, path in figures.items():
        parts += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    return f"{_FIGURES_START}\n" + "\n".join(parts).rstrip() + f"\n{_FIGURES_END}"


def check_figures(output_dir: str | os.PathLike, figures: Mapping[str, str]) -> dict[str, str]:
    checked = {}
    root = Path(output_dir).resolve()
    for caption, path in figures.items():
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"figure captions must be non-empty strings, got {caption!r}")
        if Path(path).is_absolute():
            raise ValueError(f"figure path {path!r} must be relative to the output directory {str(output_dir)!r}")
        full = (root / path).resolve()
        if root not in full.parents:
            raise ValueError(f"figure path {path!r} points outside the output directory {str(output_dir)!r}")
        if not full.is_file():
            raise FileNotFoundError(f"figure {path!r} (for {caption!r}) does not exist in {str(output_dir)!r}")
        checked[caption.strip()] = Path(path).as_posix()
    return checked


def card_path(output_dir_or_card_path: str | os.PathLike) -> Path:
    """The model card: ``README.md`` in a folder, or the file itself; ``FileNotFoundError`` when there is none."""
    path = Path(output_dir_or_card_path)
    if path.is_dir():
        path = path / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {str(path)!r}: create one first with `create_model_card`")
    return path


def _replace_section(content: str, start: str, end: str, section: str, heading: str | None = None) -> str:
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(content):
        return pattern.sub(lambda _: section, content, count=1)
    prefix = f"\n## {heading}\n\n" if heading else "\n"
    return content.rstrip("\n") + "\n" + prefix + section + "\n"


def add_evaluation_results(
    output_dir_or_card_path: str | os.PathLike,
    results: Mapping[str, float],
    *,
    dataset_name: str,
    dataset_split: str,
    task: str = "image-classification",
    dataset_config: str | None = None,
    metric_args: Mapping[str, Mapping[str, Any]] | None = None,
    save: bool = True,
) -> ModelCard:
    """Record ``results`` (metric name -> value) in the card's evaluation table and model-index metadata.

    A result for the same task, dataset, split and metric replaces the old one; everything else in the card
    (text, metadata, other results) is kept. ``metric_args`` maps a metric name to what it was measured with
    (e.g. ``{"labelled examples": 12, "label fraction": 0.083}`` for a label fraction lifted by the one-per-class
    floor): the model-index's metric ``args`` and the table's last column.
    """
    if not results:
        raise ValueError("`results` is empty: pass at least one metric, e.g. {'linear_accuracy': 0.43}")
    for name, value in results.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        check_number(f"metric {name!r}", value, sign=None)
    path = card_path(output_dir_or_card_path)
    card = ModelCard.load(path)
    if card.data.model_name is None:
        card.data.model_name = path.resolve().parent.name

    new = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_config=dataset_config,
            dataset_split=dataset_split,
            metric_type="accuracy" if "accuracy" in name else name,
            metric_name=name,
            metric_value=float(value),
            metric_args=dict((metric_args or {}).get(name) or {}) or None,
        )
        for name, value in results.items()
    ]
    same = ("task_type", "dataset_name", "dataset_config", "dataset_split", "metric_type", "metric_name")
    kept = [
        old for old in card.data.eval_results or []
        if not any(all(getattr(old, f) == getattr(n, f) for f in same) for n in new)
    ]
    card.data.eval_results = kept + new
    card.text = _replace_section(card.text, _EVAL_START, _EVAL_END, eval_section(card.data.eval_results), "Evaluation")
    card = ModelCard(str(card))  # re-parse: validates the metadata as the Hub would
    if save:
        card.save(path)
    return card


def read_card_extras(output_dir: str | os.PathLike) -> tuple[list[EvalResult] | None, dict[str, str] | None]:
    """The evaluation results and figures recorded in ``output_dir/README.md`` (None where there are none)."""
    path = Path(output_dir) / "README.md"
    if not path.is_file():
        return None, None
    try:
        card = ModelCard.load(path)
    except Exception:  # a card broken by hand is replaced, not fatal
        return None, None
    match = re.search(re.escape(_FIGURES_START) + r"(.*?)" + re.escape(_FIGURES_END), card.text, re.DOTALL)
    figures = dict(re.findall(r"!\[(.*?)\]\((.*?)\)", match.group(1))) if match else {}
    figures = {c: p for c, p in figures.items() if (Path(output_dir) / p).is_file()}
    return card.data.eval_results or None, figures or None


def add_figures(output_dir: str | os.PathLike, figures: Mapping[str, str], *, save: bool = True) -> ModelCard:
    """Embed figures (caption -> PNG path relative to ``output_dir``) in the card, after any embedded before."""
    if not figures:
        raise ValueError("`figures` is empty: pass {caption: relative_png_path}")
    path = card_path(output_dir)
    checked = check_figures(path.parent, figures)
    card = ModelCard.load(path)
    existing = read_card_extras(path.parent)[1] or {}
    existing.update(checked)
    card.text = _replace_section(card.text, _FIGURES_START, _FIGURES_END, figures_section(existing))
    if save:
        card.save(path)
    return card

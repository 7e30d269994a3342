"""Pushing a local model card to the Hub (`push_model_card`), and error descriptions for the logs that never
carry a token (`describe_error`)."""

from __future__ import annotations

import os

from huggingface_hub import ModelCard

from .card_results import card_path
from .model_card import _redact


def describe_error(error: BaseException, tokens: list[str]) -> str:
    """``"ErrorType: message"`` on one line, at most 500 characters, with every token in ``tokens`` redacted."""
    text = f"{type(error).__name__}: {error}".strip()
    return _redact(" ".join(text.split()), tokens)[:500]


def push_model_card(
    repo_id: str,
    output_dir_or_card_path: str | os.PathLike,
    *,
    token: str | None = None,
    commit_message: str = "Update model card",
) -> str:
    """Upload a local model card (e.g. after `add_evaluation_results`) to ``repo_id``; returns the commit URL."""
    card = ModelCard.load(card_path(output_dir_or_card_path))
    info = card.push_to_hub(repo_id, token=token, commit_message=commit_message)
    return str(info)

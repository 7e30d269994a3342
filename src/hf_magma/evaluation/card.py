"""Recording evaluation results in a checkpoint's model card (local or on the Hub)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, create_repo, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from ..records.card_results import add_evaluation_results
from ..records.hub import push_model_card


def _minimal_card(directory: Path, model_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    card = ModelCard(
        f"---\nlibrary_name: transformers\ntags:\n- image-feature-extraction\n---\n\n# {model_id}\n\n"
        "Evaluated with hf-magma's frozen-feature protocol.\n"
    )
    card.save(directory / "README.md")


class HubPushError(RuntimeError):
    """A push to the Hub failed after the results were saved locally (the message says where and how to push)."""


def record_results_in_card(
    model_name_or_path: str,
    results: dict[str, float],
    *,
    dataset_name: str,
    dataset_split: str,
    output_dir: str | os.PathLike,
    revision: str | None = None,
    push_to: str | None = None,
    token: str | None = None,
    metric_args: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Record ``results`` in the checkpoint's model card and return the card's path.

    A local checkpoint's own ``README.md`` is updated; a Hub checkpoint's card is fetched into ``output_dir``
    and updated there. A checkpoint without a card gets a short one. With ``push_to`` the card is uploaded to
    that Hub repo (created if needed).
    """
    if os.path.isdir(model_name_or_path):
        card_dir = Path(model_name_or_path)
        if not (card_dir / "README.md").is_file():
            _minimal_card(card_dir, card_dir.resolve().name)
    else:
        card_dir = Path(output_dir)
        card_dir.mkdir(parents=True, exist_ok=True)
        try:
            fetched = hf_hub_download(model_name_or_path, "README.md", revision=revision, token=token)
            shutil.copyfile(fetched, card_dir / "README.md")
        except EntryNotFoundError:
            _minimal_card(card_dir, model_name_or_path)
    add_evaluation_results(
        card_dir, results, dataset_name=dataset_name, dataset_split=dataset_split, metric_args=metric_args
    )
    if push_to is not None:
        try:
            create_repo(push_to, exist_ok=True, token=token)
            push_model_card(push_to, card_dir, token=token, commit_message="Add evaluation results")
        except Exception as error:  # the Hub's and the network's errors alike
            raise HubPushError(
                f"The results are saved locally ({Path(output_dir) / 'eval_results.json'}, and the model card "
                f"{card_dir / 'README.md'}), but pushing the card to {push_to} failed ({type(error).__name__}: "
                f"{error}). Push it later with `hf upload {push_to} {card_dir / 'README.md'} README.md`."
            ) from error
    return card_dir / "README.md"

"""Hub pushes that survive the Hub: `HubPushMixin`, a `transformers.Trainer` mixin."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard
from transformers.trainer_utils import HubStrategy

from ..models.export import ENCODER_SUBFOLDER
from ..records.card_results import read_card_extras
from ..records.hub import describe_error
from ..records.model_card import _known_tokens, card_tags, create_model_card, summarize_training

logger = logging.getLogger(__name__)


class HubPushMixin:
    """Mixin for `transformers.Trainer` subclasses (put it first): failure-tolerant Hub pushes with our card.

    ``model_card_kwargs`` (a dict attribute) is passed on to `hf_magma.create_model_card`, e.g.
    ``{"dataset_name": "zalando-datasets/fashion_mnist", "base_model": "facebook/vit-mae-base"}``.
    """

    model_card_kwargs: dict[str, Any]

    # -- repository ----------------------------------------------------------------------------------------
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create the Hub repository; if that fails, log it and try again before the next push."""
        if not hasattr(self, "model_card_kwargs"):
            self.model_card_kwargs = {}
        self._hub_lock = getattr(self, "_hub_lock", None) or threading.Lock()
        self._hub_failed_checkpoints: list[str] = getattr(self, "_hub_failed_checkpoints", [])
        try:
            super().init_hf_repo(token=token, private=private)
            self._hub_repo_ready = True
        except Exception as error:  # the Hub must never stop training
            self._hub_repo_ready = False
            self.hub_model_id = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
            self.push_in_progress = None
            logger.warning(
                "Could not create the Hub repository %s (%s). Training continues; the repository creation and "
                "the push are retried at the next save.",
                self.hub_model_id,
                describe_error(error, _known_tokens(self.args)),
            )

    def _ensure_hub_repo(self, token: str | None = None, private: bool | None = None) -> bool:
        if getattr(self, "_hub_repo_ready", False):
            return True
        self.init_hf_repo(token=token, private=private)
        return self._hub_repo_ready

    # -- model card ----------------------------------------------------------------------------------------
    def create_model_card(self, **kwargs: Any) -> ModelCard | None:
        """Write our card to ``output_dir/README.md`` (replaces the Trainer's generic card).

        Accepts the Trainer's keywords (``model_name``, ``license``, ``dataset``, ``finetuned_from``, ``tags``, to
        which the model's ``model_tags`` are added; the others are ignored) so that `Trainer.push_to_hub` calls it
        unchanged. Evaluation results and figures already recorded in the card are kept.
        """
        if not self.is_world_process_zero():
            return None
        options = dict(getattr(self, "model_card_kwargs", {}) or {})
        if kwargs.get("model_name"):
            options["model_name"] = kwargs["model_name"]
        if kwargs.get("license"):
            options["license"] = kwargs["license"]
        if kwargs.get("finetuned_from"):
            options["base_model"] = kwargs["finetuned_from"]
        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        # `Trainer.push_to_hub` passes its `tags=` merged with the model's `model_tags`; the pushes during training
        # pass none, so the model's tags are added here too.
        options["tags"] = card_tags([], options.get("tags"), kwargs.get("tags"), getattr(model, "model_tags", None))
        dataset = kwargs.get("dataset")
        if dataset:
            options["dataset_name"] = dataset if isinstance(dataset, str) else dataset[0]
        eval_results, figures = read_card_extras(self.args.output_dir)
        options.setdefault("eval_results", eval_results)
        options.setdefault("figures", figures)
        window = getattr(self, "magma_window_used", None)
        return create_model_card(
            output_dir=self.args.output_dir,
            model_config=model.config,
            training_args=self.args,
            train_summary=summarize_training(self.state),
            magma_window=window() if window is not None else None,
            **options,
        )

    def _write_model_card_safely(self) -> None:
        try:
            self.create_model_card()
        except Exception as error:  # a card problem must not block the weights from being pushed
            logger.warning("Could not write the model card: %s", describe_error(error, _known_tokens(self.args)))

    # -- pushes --------------------------------------------------------------------------------------------
    def _watch(self, job: Future, what: str, folder: str | None = None) -> None:
        def done(future: Future) -> None:
            error = future.exception() if not future.cancelled() else None
            if error is None:
                return
            if folder is not None:
                with self._hub_lock:
                    if folder not in self._hub_failed_checkpoints:
                        self._hub_failed_checkpoints.append(folder)
            logger.warning(
                "Push of %s to the Hub repository %s failed (%s). Training continues; local files are untouched "
                "and the push is retried at the next save.",
                what,
                self.hub_model_id,
                describe_error(error, _known_tokens(self.args)),
            )

        job.add_done_callback(done)

    def _retry_failed_checkpoint_pushes(self) -> None:
        with self._hub_lock:
            folders, self._hub_failed_checkpoints[:] = list(self._hub_failed_checkpoints), []
        if self.args.hub_strategy != HubStrategy.ALL_CHECKPOINTS:
            return  # the other strategies push the newest state, which supersedes what failed
        for folder in folders:
            if not os.path.isdir(folder):
                logger.warning("Checkpoint %s failed to push and no longer exists locally; it is not retried.", folder)
                continue
            job = self._hub_api().upload_folder(
                repo_id=self.hub_model_id,
                folder_path=folder,
                path_in_repo=Path(folder).name,
                commit_message=f"Retry push of {Path(folder).name}",
                token=self.args.hub_token,
                run_as_future=True,
                revision=self.args.hub_revision,
            )
            self._watch(job, f"checkpoint {Path(folder).name} (retry)", folder)
            if self.push_in_progress is not None:
                self.push_in_progress.jobs.append(job)

    @staticmethod
    def _hub_api() -> HfApi:
        from transformers.utils.hub import hf_api

        return hf_api()

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        busy = self.push_in_progress is not None and not self.push_in_progress.is_done()
        if busy and not self.args.hub_always_push:
            return  # the Trainer's own rule: skip this save's push while the previous one is still running
        if not self._ensure_hub_repo():
            return
        try:
            self._write_model_card_safely()
            # The Trainer copies the checkpoint's weights to output_dir and pushes that folder: the plain `vit`
            # encoder (hf_magma.models.export) goes along.
            encoder = Path(checkpoint_folder) / ENCODER_SUBFOLDER
            if encoder.is_dir():
                shutil.copytree(encoder, Path(self.args.output_dir) / ENCODER_SUBFOLDER, dirs_exist_ok=True)
            before = list(self.push_in_progress.jobs) if self.push_in_progress is not None else []
            super()._push_from_checkpoint(checkpoint_folder)
            new_jobs = [job for job in self.push_in_progress.jobs if not any(job is old for old in before)]
            if new_jobs:
                self._watch(new_jobs[0], f"step {self.state.global_step}")
            for job in new_jobs[1:]:
                self._watch(job, f"checkpoint {Path(checkpoint_folder).name}", checkpoint_folder)
            self._retry_failed_checkpoint_pushes()
        except Exception as error:
            logger.warning(
                "Could not start the push of %s to the Hub (%s). Training continues; it is retried at the next save.",
                checkpoint_folder,
                describe_error(error, _known_tokens(self.args)),
            )

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """`Trainer.push_to_hub` with our card; a failure is logged and returns None instead of raising."""
        if self.is_world_process_zero() and not self._ensure_hub_repo(token=token, private=private):
            logger.warning(
                "Not pushing to the Hub: the repository %s could not be created. The model is saved in %s; "
                "push it later with `trainer.push_to_hub()`.",
                self.hub_model_id,
                self.args.output_dir,
            )
            self.save_model(_internal_call=True)
            self._write_model_card_safely()
            return None
        try:
            result = super().push_to_hub(
                commit_message=commit_message, blocking=blocking, token=token, revision=revision, private=private,
                **kwargs,
            )
        except Exception as error:
            logger.warning(
                "Push to the Hub repository %s failed (%s). The model and its card are saved in %s; push them "
                "later with `trainer.push_to_hub()`.",
                self.hub_model_id,
                describe_error(error, _known_tokens(self.args)),
                self.args.output_dir,
            )
            return None
        if isinstance(result, Future):
            self._watch(result, "the final model")
        return result

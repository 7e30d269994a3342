"""The MAGMA schedule of `MAGMATrainer`: lambda at each optimizer step (a fixed window of epochs or steps, or one
that `hf_magma.training.auto_start` opens when the term starts rising), the checks said at the start of a run, and the
window a run actually used."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from .auto_start import MAGMAAutoStart
from .run_guard import write_marker

logger = logging.getLogger(__name__)

# The smallest batch on which the MAGMA term is not 0: its kernel bandwidth is the spread of the pairwise distances.
MAGMA_MIN_BATCH = 3


class MAGMAScheduleMixin:
    """Mixin for `MAGMATrainer`: the schedule of the MAGMA weight (``args`` are `MAGMATrainingArguments`). It reads
    the trainer's ``steps_per_epoch``, ``state`` and ``_sums``, and sets ``auto_start`` with `setup_schedule`."""

    auto_start: MAGMAAutoStart | None = None

    def setup_schedule(self) -> None:
        """Create the rise detector of an ``auto`` e_st (and register it as a callback, so that checkpoints keep
        its state)."""
        args = self.args
        self.auto_start = None
        if args.magma_auto_start and args.magma_weight > 0:
            if args.logging_strategy == "no":
                raise ValueError("--magma_start_epoch auto decides from the logged MAGMA term: it needs logging "
                                 "(--logging_strategy steps, e.g. --logging_steps 50)")
            self.auto_start = MAGMAAutoStart(args.magma_auto_patience, args.magma_auto_rise,
                                             args.magma_auto_min_step or 0)
            self.add_callback(self.auto_start)

    def magma_weight_at(self, step: int) -> float:
        """lambda(step): ``magma_weight`` inside the MAGMA window, else 0."""
        if self.args.magma_weight == 0:
            return 0.0
        if self.steps_per_epoch is None and self.args.magma_start_step is None:
            if self.train_dataset is None:
                raise ValueError(
                    "The MAGMA schedule is given in epochs but this trainer has no training data to measure an epoch "
                    "by: pass `train_dataset`, or give the window in steps (`magma_start_step`, `magma_steps`)"
                )
            self.get_train_dataloader()  # evaluation before training: the epoch length is the DataLoader's
        window = self.args.magma_window(self.steps_per_epoch, self.auto_start and self.auto_start.start_step)
        return float(self.args.magma_weight) if window is not None and window[0] <= step < window[1] else 0.0

    def magma_window_used(self) -> dict[str, Any] | None:
        """The MAGMA window of this run as trained so far: optimizer steps ``[start_step, end_step)`` (cut at the
        run's last step) and epochs, how it was set (``auto``: the decision's step, or that it never came), or None
        when the term is off (``magma_weight`` 0)."""
        spe = self.steps_per_epoch
        if self.args.magma_weight == 0 or (spe is None and self.args.magma_start_step is None):
            return None  # off, or an epoch window of a trainer that has not measured an epoch yet
        total = self.state.max_steps or None
        record: dict[str, Any] = {"auto": self.args.magma_auto_start}
        window = self.args.magma_window(spe, self.auto_start and self.auto_start.start_step)
        if self.auto_start is not None:
            record["rule"] = self.auto_start.describe()
            record["decided_at_step"] = self.auto_start.start_step
        if window is None or (total is not None and window[0] >= total):
            record.update(start_step=None, end_step=None)
            return record
        start, end = window[0], min(window[1], total) if total is not None else window[1]
        record.update(start_step=start, end_step=end)
        if spe:
            record.update(start_epoch=round(start / spe, 4), end_epoch=round(end / spe, 4))
        return record

    def _check_schedule(self) -> None:
        if self.args.magma_weight == 0 or self._warned_schedule:
            return
        batch = self.args.per_device_train_batch_size * (self.args.world_size if self.args.magma_gather else 1)
        self._log_magma_batch(batch)
        if batch < MAGMA_MIN_BATCH:
            logger.warning(
                "The MAGMA term is built on batches of %d (--per_device_train_batch_size %d%s): it needs %d samples "
                "(two give a single distance, whose spread is 0) and will be 0 at every step. Use a batch of at "
                "least %d%s.", batch, self.args.per_device_train_batch_size,
                ", gathered over all processes" if self.args.magma_gather else "", MAGMA_MIN_BATCH, MAGMA_MIN_BATCH,
                "" if self.args.magma_gather or self.args.world_size == 1 else ", or --magma_gather true",
            )
        if self.args.max_steps > 0:
            total = self.args.max_steps
        else:
            total = math.ceil(self.args.num_train_epochs * self.steps_per_epoch)
        self._warned_schedule = True
        if self.auto_start is not None:
            duration = self.args.magma_duration(self.steps_per_epoch)  # raises for streaming without steps
            if self.args.magma_auto_min_step is None:  # the end of the learning-rate warm-up
                self.auto_start.min_step = self.args.get_warmup_steps(total)
            if self.auto_start.min_step >= total:
                logger.warning("THE MAGMA TERM NEVER TURNS ON: --magma_start_epoch auto decides from step %d on, but "
                               "the run ends after %d steps. Lower --magma_auto_min_step or train longer.",
                               self.auto_start.min_step, total)
            logger.info("MAGMA term (weight %g): switched on automatically, %s; then on for %d steps (run: %d steps)",
                        self.args.magma_weight, self.auto_start.describe(), duration, total)
            return
        start, end = self.args.magma_window(self.steps_per_epoch)  # raises for streaming without steps
        if start >= total:
            logger.warning(
                "\n%s\nTHE MAGMA TERM NEVER TURNS ON: it starts at step %d (epoch %s) but the run ends after %d "
                "steps. This trains a plain MAE. Lower --magma_start_epoch/--magma_start_step or train longer.\n%s",
                "!" * 100, start, self.args.magma_start_epoch, total, "!" * 100,
            )
        else:
            logger.info("MAGMA term on (weight %g) for steps [%d, %d) of %d", self.args.magma_weight, start, end,
                        total)

    def _log_magma_batch(self, batch: int) -> None:
        """Say how many samples each MAGMA graph holds, and warn when gradient accumulation splits the batch."""
        args = self.args
        gathered = args.magma_gather and args.world_size > 1
        logger.info(
            "MAGMA batch: each MAGMA graph holds %d samples (--per_device_train_batch_size %d%s); an optimizer step "
            "sees %d samples in %d graph(s)", batch, args.per_device_train_batch_size,
            f" x {args.world_size} processes, --magma_gather" if gathered else
            (f", per process: {args.world_size} processes without --magma_gather" if args.world_size > 1 else ""),
            args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
            args.gradient_accumulation_steps * (1 if gathered else args.world_size),
        )
        if args.gradient_accumulation_steps > 1:
            logger.warning(
                "--gradient_accumulation_steps %d splits each optimizer step into %d micro-batches, each with its own "
                "MAGMA graph of %d samples: accumulation enlarges the reconstruction loss's batch, not the MAGMA "
                "term's (the step's term is the mean of %d graphs of %d). For one graph of %d samples raise "
                "--per_device_train_batch_size%s instead.", args.gradient_accumulation_steps,
                args.gradient_accumulation_steps, batch, args.gradient_accumulation_steps, batch,
                batch * args.gradient_accumulation_steps,
                "" if gathered or args.world_size == 1 else " or pass --magma_gather true",
            )

    def _record_auto_start(self, step: int) -> None:
        window = self.magma_window_used()
        if self.is_world_process_zero():
            logger.warning("MAGMA switched on automatically at step %d (epoch %s): %s; on for steps [%s, %s)", step,
                           window.get("start_epoch", "-"), self.auto_start.describe(), window["start_step"],
                           window["end_step"])
        marker = getattr(self, "_run_marker", None)
        if marker is not None:
            marker["magma_window"] = window
            if self.args.should_save:
                write_marker(self.args.output_dir, marker)

    def observe_logged_term(self, logs: dict[str, float]) -> None:
        """Feed an ``auto`` e_st the logging window's mean MAGMA term (reduced over processes: every process sees
        the same value and takes the same decision)."""
        if self.auto_start is not None and "magma_loss" in logs:
            step = self.state.global_step
            if self.auto_start.observe(step, logs["magma_loss"]):
                self._record_auto_start(step)

    def keep_pending_window(self) -> None:
        """Before a checkpoint: the logging window in progress goes into the detector's state, so that a resumed
        run's first decision sees the mean an uninterrupted one would."""
        if self.auto_start is not None:
            total, count = self._sums["train"].get("magma_loss", (0.0, 0.0))
            self.auto_start.rule.pending = [float(total), float(count)]

    def _init_training_state(self, max_steps: int, num_update_steps_per_epoch: int, num_train_epochs: int,
                             resume_from_checkpoint: str | None, trial: Any) -> tuple[int, int]:
        trained = super()._init_training_state(max_steps, num_update_steps_per_epoch, num_train_epochs,
                                               resume_from_checkpoint, trial)
        saved = self.state.stateful_callbacks.get(type(self.auto_start).__name__) if self.auto_start else None
        if resume_from_checkpoint is not None and saved:
            self.auto_start.load_state(saved)
            total, count = self.auto_start.rule.pending
            if count:
                self._sums["train"]["magma_loss"] = (torch.tensor(total, dtype=torch.float64, device=self.args.device),
                                                     count)
            if self.auto_start.start_step is not None:
                logger.info("MAGMA was switched on automatically at step %d before the resumed checkpoint",
                            self.auto_start.start_step)
        return trained


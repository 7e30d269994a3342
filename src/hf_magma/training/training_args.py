"""`MAGMATrainingArguments`: the settings of `hf_magma.training.trainer.MAGMATrainer` (transformers'
`TrainingArguments` plus the MAGMA schedule, the U-MAE weight, MAE's learning-rate scaling, the online probe and the
end-of-run figures)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import TrainingArguments

from ..records.figure_options import FIGURES, parse_figures
from ..utils.checks import check_non_negative, check_number
from .auto_start import AUTO
from .integrations import check_figure_packages, check_reporters

logger = logging.getLogger(__name__)


@dataclass
class MAGMATrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the MAGMA schedule, the U-MAE weight, MAE's learning-rate scaling and the probe.

    The MAGMA weight is ``magma_weight`` from epoch ``magma_start_epoch`` (e_st) for ``magma_epochs`` (e_dur)
    epochs and 0 outside; ``magma_start_step``/``magma_steps`` give the same window in optimizer steps (needed
    for streamed data, whose epochs are unknown) and take precedence when set.

    Args (beyond `TrainingArguments`'):
        magma_weight: lambda, the MAGMA term's weight while it is on (>= 0; 0 trains a plain MAE).
        magma_start_epoch, magma_epochs: e_st and e_dur, in epochs (fractions allowed); e_st may be ``"auto"``
            (`hf_magma.training.auto_start`: on when the term starts rising).
        magma_start_step, magma_steps: the same window in optimizer steps (streaming); given together.
        magma_auto_patience, magma_auto_rise, magma_auto_min_step: the rule of an ``auto`` e_st.
        uniformity_weight: mu, the weight of U-MAE's uniformity term (0.01 for MU-MAE).
        magma_gather: compute both terms over the batch gathered from all processes.
        base_learning_rate: MAE's base rate; ``learning_rate = base_learning_rate * total batch / 256``.
        online_probe, online_probe_learning_rate: the linear probe trained on detached features.
        figures: figures drawn at the end of training (`hf_magma.records.figure_options.FIGURES`, or ``all``).
    """

    magma_weight: float = field(default=1.0, metadata={"help": "lambda: the MAGMA term's weight while it is on."})
    magma_start_epoch: str = field(
        default="10",
        metadata={"help": "e_st: the epoch at which the MAGMA term turns on (may be fractional), or `auto`: when the "
                  "term, logged while it is off, starts rising (--magma_auto_patience, --magma_auto_rise, "
                  "--magma_auto_min_step; the rule is in docs/pretraining.md)."},
    )
    magma_epochs: float = field(
        default=100, metadata={"help": "e_dur: for how many epochs the MAGMA term stays on (may be fractional)."}
    )
    magma_start_step: str | None = field(
        default=None,
        metadata={"help": "Step-based e_st (optimizer steps), for streaming; overrides --magma_start_epoch. `auto` "
                  "as for --magma_start_epoch."},
    )
    magma_steps: int | None = field(
        default=None, metadata={"help": "Step-based e_dur (optimizer steps); required with --magma_start_step."}
    )
    magma_auto_patience: int = field(
        default=3,
        metadata={"help": "With e_st `auto`: how many consecutive logging windows the smoothed MAGMA term must stay "
                  "above its minimum (by --magma_auto_rise) before the term switches on."},
    )
    magma_auto_rise: float = field(
        default=0.05,
        metadata={"help": "With e_st `auto`: how far above its minimum so far the smoothed term must be for a "
                  "logging window to count as rising (a fraction: 0.05 is 5 percent)."},
    )
    magma_auto_min_step: int | None = field(
        default=None,
        metadata={"help": "With e_st `auto`: no switch before this optimizer step (default: the end of the "
                  "learning-rate warm-up)."},
    )
    uniformity_weight: float = field(
        default=0.0, metadata={"help": "mu: weight of U-MAE's uniformity term (0.01 for MU-MAE, 0 for M-MAE)."}
    )
    magma_gather: bool = field(
        default=False,
        metadata={
            "help": "Compute the MAGMA (and uniformity) term over the batch gathered from all processes with a "
            "differentiable all-gather (the global batch, as on one GPU) instead of each process's own batch."
        },
    )
    base_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "MAE's base learning rate: when set, learning_rate = base_learning_rate * total batch / 256 "
            "(total batch = per-device batch x processes x gradient accumulation)."
        },
    )
    online_probe: bool = field(
        default=True,
        metadata={
            "help": "Train a linear classifier on detached encoder features during pretraining when the data has "
            "labels, and log its accuracy as `online_accuracy` (never affects the encoder)."
        },
    )
    online_probe_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the online probe's own AdamW optimizer."}
    )
    figures: str | None = field(
        default=None,
        metadata={"help": "Figures drawn at the end of training into output_dir/figures and embedded in the model "
                  f"card: comma-separated among {', '.join(FIGURES)}, or 'all' (needs hf-magma[viz])."},
    )
    ignore_resume_mismatch: bool = field(
        default=False,
        metadata={"help": "Resume (or write into) an output folder whose run was made with other settings (model "
                  "config, data, MAGMA/U-MAE schedule, seed, what is trained: learning rate and schedule, batch, "
                  "--magma_gather, optimizer settings) instead of stopping with the list of differences; the values "
                  "a resumed optimizer carries (learning rate, weight decay, Adam betas and epsilon) are kept."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep the raw image columns: the collator decodes them (must stay False here)."},
    )

    def __post_init__(self) -> None:
        check_output_and_hub_ids(self.output_dir, self.hub_model_id)
        figures = parse_figures(self.figures)
        if self.figures is not None:
            check_figure_packages(figures)
        check_non_negative("magma_weight", self.magma_weight)
        check_non_negative("uniformity_weight", self.uniformity_weight)
        self.magma_start_epoch = _number_or_auto("magma_start_epoch", self.magma_start_epoch, float)
        if self.magma_start_epoch != AUTO:
            check_non_negative("magma_start_epoch", self.magma_start_epoch)
        check_non_negative("magma_epochs", self.magma_epochs)
        if self.magma_start_step is not None or self.magma_steps is not None:
            if self.magma_start_step is None or self.magma_steps is None:
                raise ValueError(
                    "`magma_start_step` and `magma_steps` must be given together (--magma_start_step N --magma_steps "
                    "M), or neither to use the epoch window (--magma_start_epoch, --magma_epochs)"
                )
            self.magma_start_step = _number_or_auto("magma_start_step", self.magma_start_step, int)
            if self.magma_start_step != AUTO:
                check_number("magma_start_step", self.magma_start_step, integer=True)
            check_number("magma_steps", self.magma_steps, integer=True)
        check_number("magma_auto_patience", self.magma_auto_patience, sign="positive", integer=True)
        check_number("magma_auto_rise", self.magma_auto_rise, sign="positive")
        if self.magma_auto_min_step is not None:
            check_number("magma_auto_min_step", self.magma_auto_min_step, integer=True)
        if self.base_learning_rate is not None:
            check_number("base_learning_rate", self.base_learning_rate, sign="positive")
        check_number("online_probe_learning_rate", self.online_probe_learning_rate, sign="positive")
        check_reporters(self.report_to)
        super().__post_init__()
        if self.base_learning_rate is not None:
            total_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size
            self.learning_rate = self.base_learning_rate * total_batch / 256
            logger.info(
                "learning_rate = base_learning_rate %g x total batch %d / 256 = %g",
                self.base_learning_rate,
                total_batch,
                self.learning_rate,
            )

    def __getstate__(self) -> dict[str, Any]:
        # The Trainer pickles these arguments into `training_args.bin` in every checkpoint and every Hub push: a
        # token given as an argument must not travel with them (the live object keeps it).
        state = self.__dict__.copy()
        state["hub_token"] = None
        if "_rotation_limit" in state:  # while training, `RunGuardMixin` holds the real limit aside
            state["save_total_limit"] = state.pop("_rotation_limit")
        return state

    def __deepcopy__(self, memo: dict) -> MAGMATrainingArguments:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    @property
    def magma_auto_start(self) -> bool:
        """Whether e_st is decided during training (``auto``)."""
        start = self.magma_start_step if self.magma_start_step is not None else self.magma_start_epoch
        return start == AUTO

    def magma_duration(self, steps_per_epoch: int | None) -> int:
        """e_dur in optimizer steps."""
        if self.magma_steps is not None:
            return self.magma_steps
        if steps_per_epoch is None:
            raise ValueError(
                "The training data has no length (streaming), so the MAGMA schedule cannot be given in epochs: "
                "set `magma_start_step` and `magma_steps`"
            )
        return round(self.magma_epochs * steps_per_epoch)

    def magma_window(self, steps_per_epoch: int | None, auto_start: int | None = None) -> tuple[int, int] | None:
        """The optimizer steps ``[start, end)`` during which the MAGMA term is on; with e_st ``auto``, from the
        decided start ``auto_start`` (None, undecided: the term is off)."""
        if self.magma_auto_start:
            if auto_start is None:
                return None
            return auto_start, auto_start + self.magma_duration(steps_per_epoch)
        if self.magma_start_step is not None:
            return self.magma_start_step, self.magma_start_step + self.magma_steps
        if steps_per_epoch is None:
            raise ValueError(
                "The training data has no length (streaming), so the MAGMA schedule cannot be given in epochs: "
                "set `magma_start_step` and `magma_steps`"
            )
        start = round(self.magma_start_epoch * steps_per_epoch)
        return start, start + self.magma_duration(steps_per_epoch)


def check_output_and_hub_ids(output_dir: Any, hub_model_id: str | None) -> None:
    """Refuse an empty ``--output_dir`` and a ``--hub_model_id`` the Hub cannot hold, before anything is loaded.

    Args:
        output_dir: the run folder (None: transformers' default).
        hub_model_id: ``name`` or ``namespace/name``, or None.
    Raises:
        ValueError: naming the option, the value and the fix.
    """
    if output_dir is not None and not str(output_dir).strip():
        raise ValueError("--output_dir is empty: give the folder the run writes into, e.g. --output_dir runs/m-mae")
    if hub_model_id is not None:
        try:
            validate_repo_id(hub_model_id)
        except HFValidationError:
            raise ValueError(
                f"--hub_model_id {hub_model_id!r} is not a Hub repository id: give `name` or `namespace/name` "
                "(letters, digits, '-', '_', '.'; at most 96 characters), e.g. --hub_model_id my-user/m-mae-cifar100"
            ) from None


def _number_or_auto(name: str, value: Any, kind: type) -> Any:
    """``auto``, or ``value`` as a ``kind`` (the command line gives strings), naming ``--name`` when it is neither."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--{name} must be a number or `auto`, got {value!r}") from None
        if number.is_integer():  # "10" stays 10, as the field's default and older run records have it
            return int(number)
        value = number if kind is float else value
    return value

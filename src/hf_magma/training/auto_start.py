"""``--magma_start_epoch auto``: switch the MAGMA term on when the term, measured while it is off, starts rising.

The paper reads its training curves (Sec. 5.2) as: e_st "is best set around the point when the L_Reg loss would
start increasing". The rule, on the unweighted term's mean over each logging window (reduced over all processes,
so that every process takes the same decision):

1. smooth the window means with an exponential moving average, ``s_w = 0.5 s_(w-1) + 0.5 m_w``;
2. track the smallest smoothed value so far, ``low``;
3. from optimizer step ``min_step`` on (default: the end of the learning-rate warm-up), count the consecutive windows
   whose smoothed value is above ``(1 + rise) * low``; at ``patience`` of them the term switches on, at the next
   step, and stays on for e_dur (``--magma_epochs`` or ``--magma_steps``).

A flat curve, or noise smaller than ``rise``, never switches it on; a curve that falls first switches it on once it
climbs back above its minimum. The state (smoothed value, minimum, count, decision) is saved in every checkpoint's
``trainer_state.json``, so a resumed run takes exactly the decision of an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

logger = logging.getLogger(__name__)

AUTO = "auto"
#: The weight of the past in the moving average of the window means.
SMOOTHING = 0.5


@dataclass
class RiseState:
    """Where the rule stands: the smoothed term, its minimum, the rising windows counted, the decision."""

    smoothed: float | None = None
    low: float | None = None
    rising: int = 0
    windows: int = 0
    decided_at: int | None = None
    pending: list[float] = field(default_factory=lambda: [0.0, 0.0])  # this window's (sum, count) at a save


class MAGMAAutoStart(TrainerCallback, ExportableState):
    """The rise detector of ``--magma_start_epoch auto`` (module docstring), fed by `MAGMATrainer` at each logging
    step with the window's mean MAGMA term.

    Args:
        patience: consecutive rising windows that switch the term on (>= 1).
        rise: how far above its minimum the smoothed term must be for a window to count as rising (fraction > 0).
        min_step: no decision before this optimizer step (the windows before it still shape the average).
    """

    def __init__(self, patience: int = 3, rise: float = 0.05, min_step: int = 0) -> None:
        self.patience = int(patience)
        self.rise = float(rise)
        self.min_step = int(min_step)
        self.rule = RiseState()

    @property
    def start_step(self) -> int | None:
        """The first optimizer step (0-based) with the term on, once decided."""
        return self.rule.decided_at

    def observe(self, step: int, value: float) -> bool:
        """Feed the mean term of the logging window that ends at optimizer step ``step``; returns True when this
        window switches the term on (it is then on from step ``step`` on, the next one to run)."""
        rule = self.rule
        if rule.decided_at is not None or not math.isfinite(value):
            return False
        rule.windows += 1
        rule.smoothed = value if rule.smoothed is None else SMOOTHING * rule.smoothed + (1 - SMOOTHING) * value
        low = rule.low
        rule.low = rule.smoothed if low is None else min(low, rule.smoothed)
        above = low is not None and rule.smoothed > (1 + self.rise) * low
        rule.rising = rule.rising + 1 if above else 0
        if step >= self.min_step and rule.rising >= self.patience:
            rule.decided_at = step
            return True
        return False

    def describe(self) -> str:
        """The rule in words, with its settings (for logs and model cards)."""
        return (f"on when the smoothed MAGMA term stays {self.rise:.0%} above its minimum for {self.patience} "
                f"logging windows, from step {self.min_step} on")

    def state(self) -> dict[str, Any]:
        return {"args": {"patience": self.patience, "rise": self.rise, "min_step": self.min_step},
                "attributes": {"rule": asdict(self.rule)}}

    def load_state(self, saved: dict[str, Any]) -> None:
        """Take the rule's state from a checkpoint's ``trainer_state.json`` entry (`state`'s output)."""
        self.rule = RiseState(**saved.get("attributes", {}).get("rule", {}))

    def on_train_end(self, args, state, control, **kwargs):
        if self.rule.decided_at is None:
            logger.warning(
                "--magma_start_epoch auto: the MAGMA term never rose (%s): it was never on, so this run trained "
                "without it. Lower --magma_auto_rise or --magma_auto_patience, or give e_st.", self.describe())

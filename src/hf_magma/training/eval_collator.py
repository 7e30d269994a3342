"""`EvalCollatorMixin`: a `Trainer` whose evaluation batches go through their own collator."""

from __future__ import annotations

from typing import Any


class EvalCollatorMixin:
    """Mixin for a `Trainer`: evaluation batches are collated by ``eval_data_collator`` (e.g. without augmentation)
    when it is set, training batches by ``data_collator``."""

    eval_data_collator: Any = None

    def get_eval_dataloader(self, eval_dataset: Any = None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

"""`OnlineLinearProbe`: a linear classifier trained on detached features beside pretraining."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


ONLINE_PROBE_FILE = "online_probe.pt"


class OnlineLinearProbe(nn.Module):
    """A linear classifier trained on detached features beside pretraining, with its own AdamW optimizer.

    It lives outside the model (never saved in its weights); its state goes to ``online_probe.pt`` in the
    checkpoint folders. Under several processes its gradients are averaged so all copies stay identical.
    """

    def __init__(self, hidden_size: int, num_labels: int, learning_rate: float) -> None:
        super().__init__()
        # Built without its random init (nn.Linear would draw it from torch's global RNG, shifting every mask and
        # crop of the run after it), then zeroed: a run trains the same weights with and without the probe.
        self.classifier = nn.utils.skip_init(nn.Linear, hidden_size, num_labels)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
        self.optimizer = torch.optim.AdamW(self.classifier.parameters(), lr=learning_rate, weight_decay=0.0)

    def step(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimizer step on (features, labels); returns the number of correct predictions before it."""
        with torch.enable_grad():
            logits = self.classifier(features.detach().float())
            loss = F.cross_entropy(logits, labels, reduction="sum") / max(labels.numel(), 1)
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for param in self.classifier.parameters():
                torch.distributed.all_reduce(param.grad)
                param.grad /= torch.distributed.get_world_size()
        self.optimizer.step()
        return (logits.argmax(dim=-1) == labels).sum()

    @torch.no_grad()
    def correct(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.classifier(features.float()).argmax(dim=-1) == labels).sum()

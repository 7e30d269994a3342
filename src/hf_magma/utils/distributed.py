"""What several processes share: a differentiable all-gather, and the process's rank."""

from __future__ import annotations

import os

import torch


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every process along dim 0, keeping the autograd graph.

    Each process's gradient flows back to the process that produced the rows, so a loss computed identically
    on every process and averaged by DDP gets the gradient of that loss on the global batch. Batches may differ
    in size across processes. Without an initialised process group of several processes it returns ``tensor``.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    world_size = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    if tensor.shape[0] < longest:
        padding = tensor.new_zeros(longest - tensor.shape[0], *tensor.shape[1:])
        tensor = torch.cat([tensor, padding])
    parts = all_gather(tensor)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes: from the process group when one is initialised, else from
    the ``RANK`` / ``WORLD_SIZE`` variables that launchers set (0 and 1 without them)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def close_process_group() -> None:
    """End this process's torch.distributed process group, if one is initialised: all processes wait for each other,
    then the group is destroyed before the interpreter exits (left to exit, gloo's threads can abort the process with
    "terminate called without an active exception" after the run has finished)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()

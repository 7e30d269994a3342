"""Run under `torchrun --nproc_per_node 2 distributed_gather_worker.py {ddp,fsdp}`: with `magma_gather`, two
processes holding half a batch each must get the single-process loss of the whole batch and, once the gradients
are reduced, its gradients. `ddp` averages plain gradients as DDP does; `fsdp` shards the model with torch's FSDP2
as `scripts/accelerate_configs/fsdp.yaml` asks (one unit per `ViTMAELayer`, then the root), whose reduce-scatter
averages them."""

import copy
import sys

import torch
import torch.distributed as dist
from transformers import ViTMAEConfig
from transformers.models.vit_mae.modeling_vit_mae import ViTMAELayer

from hf_magma.models.mae import ViTMAEWithMAGMA
from hf_magma.utils.distributed import close_process_group
from tests.helpers.tiny import TINY_DECODER, TINY_VIT

TINY = {**TINY_VIT, **TINY_DECODER, "num_hidden_layers": 3, "uniformity_weight": 0.5}


def shard(model: torch.nn.Module) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    layers = [module for module in model.modules() if isinstance(module, ViTMAELayer)]
    assert layers, "no ViTMAELayer to shard"
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def reduced_gradient(model: torch.nn.Module, name: str, like: torch.Tensor, sharding: str) -> torch.Tensor:
    grad = model.get_parameter(name).grad
    if sharding == "fsdp":  # a DTensor holding this rank's shard of the averaged gradient
        return torch.zeros_like(like) if grad is None else grad.full_tensor()
    local = torch.zeros_like(like) if grad is None else grad.clone()
    dist.all_reduce(local)
    return local / dist.get_world_size()  # what DDP does


def main(sharding: str) -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(ViTMAEConfig(**TINY))
    pixels, noise = torch.randn(8, 3, 16, 16), torch.rand(8, 16)
    distributed = shard(copy.deepcopy(model)) if sharding == "fsdp" else model

    full = model(pixels, noise=noise, magma_weight=1.0)
    full_magma, full_uniformity = full.magma_loss.detach(), full.uniformity_loss.detach()
    (full.magma_loss + full.uniformity_loss).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    distributed.magma_gather = True
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    out = distributed(pixels[part], noise=noise[part], magma_weight=1.0)
    (out.magma_loss + out.uniformity_loss).backward()
    ok = torch.allclose(out.magma_loss, full_magma, rtol=1e-5, atol=1e-7)
    ok &= torch.allclose(out.uniformity_loss, full_uniformity, rtol=1e-5, atol=1e-7)
    for name, grad in expected.items():
        local = reduced_gradient(distributed, name, grad, sharding)
        # Against the tensor's scale: summation order differs between the layouts, and these gradients reach 1e3.
        error = (local - grad).abs().max().item()
        if error > 1e-5 * grad.abs().max().item() + 1e-6:
            print(f"rank {rank}: gradient of {name} differs by {error:.3g} (largest entry "
                  f"{grad.abs().max().item():.3g})", flush=True)
            ok = False
    print(f"rank {rank} ({sharding}): loss {out.magma_loss.item():.6g} vs {full_magma.item():.6g}, "
          f"{len(expected)} gradients: {'ok' if ok else 'MISMATCH'}")
    # Both ranks done with every collective (FSDP's gloo work included) before the group is torn down.
    close_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

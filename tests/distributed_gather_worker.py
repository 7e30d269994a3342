"""Run under `torchrun --nproc_per_node 2`: with `magma_gather`, two processes holding half a batch each must get
the single-process loss of the whole batch, and (after DDP's averaging) its gradients."""

import sys

import torch
import torch.distributed as dist
from transformers import ViTMAEConfig

from hf_magma.modeling import ViTMAEWithMAGMA
from utils import TINY_DECODER, TINY_VIT

TINY = {**TINY_VIT, **TINY_DECODER, "num_hidden_layers": 3, "uniformity_weight": 0.5}


def main() -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(ViTMAEConfig(**TINY))
    pixels, noise = torch.randn(8, 3, 16, 16), torch.rand(8, 16)

    full = model(pixels, noise=noise, magma_weight=1.0)
    full_magma, full_uniformity = full.magma_loss.detach(), full.uniformity_loss.detach()
    (full.magma_loss + full.uniformity_loss).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    model.magma_gather = True
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    out = model(pixels[part], noise=noise[part], magma_weight=1.0)
    (out.magma_loss + out.uniformity_loss).backward()
    ok = torch.allclose(out.magma_loss, full_magma, rtol=1e-5, atol=1e-7)
    ok &= torch.allclose(out.uniformity_loss, full_uniformity, rtol=1e-5, atol=1e-7)
    for name, grad in expected.items():
        local = model.get_parameter(name).grad
        local = torch.zeros_like(grad) if local is None else local.clone()
        dist.all_reduce(local)
        local /= world  # what DDP does
        if not torch.allclose(local, grad, rtol=1e-4, atol=1e-6):
            print(f"rank {rank}: gradient of {name} differs by {(local - grad).abs().max():.3g}", flush=True)
            ok = False
    print(f"rank {rank}: loss {out.magma_loss.item():.6g} vs {full_magma.item():.6g}: {'ok' if ok else 'MISMATCH'}")
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

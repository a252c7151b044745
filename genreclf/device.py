"""Where a process runs: its device, its rank under torchrun, and the DistributedDataParallel and
mixed-precision helpers of the training loop. Inference (predict.py) needs only `resolve_device`,
and imports nothing of training from here.
"""
import os

import torch
import torch.distributed as dist

from .errors import UserError


def dist_info():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device):
    """Join torchrun's process group (NCCL for GPUs, gloo for CPU) when there is more than one rank."""
    _, world, _ = dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)


def sync_buffers(model, world):
    """Average BatchNorm running statistics over ranks. DDP only broadcasts rank 0's buffers at
    the start of each forward, so after the last step every rank holds statistics of its own
    batches; averaging makes validation, "best" and the saved weights identical on all ranks."""
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world


def weights_hash(model):
    """SHA-256 of the model's parameters and buffers: equal on every rank when DDP kept them in sync."""
    import hashlib
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def amp_setup(amp, device):
    """(autocast dtype, GradScaler) for --amp. bf16 keeps fp32's exponent range, so it needs no
    loss scaling; fp16 (GPUs before Ampere) does. Without --amp the scaler is a pass-through."""
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float16
    return dtype, torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)


def resolve_device(name, local_rank=0):
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else "cpu")

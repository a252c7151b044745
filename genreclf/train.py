"""Step 3: train with validation every epoch, keep the best checkpoint, stop on patience or Ctrl+C.

Runs alone or under torchrun (DistributedDataParallel: NCCL on GPUs, gloo on CPU). Only rank 0
logs and writes files; every rank sees the same validation set, so they agree on "best".
"""
import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from model import MODELS

from . import checkpoint
from .data import batches
from .errors import UserError
from .metrics import predict_segments, score

log = logging.getLogger("genreclf")


@dataclass(frozen=True)
class TrainConfig:
    model: str = field(default="base2dcnn", metadata={"help": "model from model/", "choices": sorted(MODELS)})
    epochs: int = field(default=100, metadata={"help": "most epochs to train"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": ["adam", "sgd"]})
    batch_size: int = field(default=32, metadata={"help": "segments per batch (per process under torchrun)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "L2 weight decay"})
    patience: int = field(default=15, metadata={"help": "stop after this many epochs without a better val accuracy"})
    seed: int = field(default=0, metadata={"help": "seed of weights, shuffling and dropout"})
    device: str = field(default="auto", metadata={"help": "auto picks cuda when available", "choices": ["auto", "cpu", "cuda"]})
    pretrained: bool = field(default=False, metadata={"help": "start VGG/ResNet from torchvision's ImageNet weights"})
    weights: str = field(default="", metadata={"help": "local ImageNet state dict with torchvision's keys (implies --pretrained)"})
    freeze: str = field(default="none", metadata={"help": "what fine-tuning keeps fixed", "choices": ["none", "last", "head"]})


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


def resolve_device(name, local_rank=0):
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else "cpu")


def make_model(cfg, data, pretrained=True):
    """Build cfg.model for `data`; ImageNet weights when asked (`pretrained=False` on resume,
    where the checkpoint's weights replace them anyway). Returns (model, its kwargs)."""
    from model import build
    from model.vision import freeze, imagenet_state_dict

    torch.manual_seed(cfg.seed)
    kwargs = {"n_classes": len(data.genres), "input_shape": data.input_shape}
    model = build(cfg.model, **kwargs)
    if (cfg.pretrained or cfg.weights) and pretrained:
        if not hasattr(model, "load_imagenet"):
            raise UserError(f"--pretrained applies to VGG/ResNet models, not {cfg.model}")
        model.load_imagenet(imagenet_state_dict(model.arch, cfg.weights or None))
    if cfg.freeze != "none":
        freeze(model, cfg.freeze)
    return model, kwargs


def fit(cfg, data, run_dir, resume=False):
    """Train `cfg.model` on data.train, select on data.val. Writes run_dir/{best,last}.pt.
    Returns the training state: per-epoch history, epochs run, best val clip accuracy."""
    rank, world, local_rank = dist_info()
    device = resolve_device(cfg.device, local_rank)
    init_distributed(device)
    model, kwargs = make_model(cfg, data, pretrained=not resume)
    model.to(device)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay) if cfg.optimizer == "adam"
           else torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
    state = {"epoch": 0, "best": -1.0, "best_loss": float("inf"), "bad_epochs": 0, "history": []}
    if resume:
        last = checkpoint.read(run_dir / "last.pt")
        core.load_state_dict(last["state"])
        opt.load_state_dict(last["optimizer"])
        sched.load_state_dict(last["scheduler"])
        torch.set_rng_state(last["rng"]["torch"])
        if device.type == "cuda" and last["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(last["rng"]["cuda"])
        state = last["train_state"]
        log.info(f"resumed {run_dir} after epoch {state['epoch']} (best val clip accuracy {state['best']:.3f})")
    describe = {"model": cfg.model, "kwargs": kwargs, "features": data.features, "genres": data.genres,
                "config": asdict(cfg)}
    try:
        while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            epoch = state["epoch"] + 1
            model.train()
            total, correct, loss_sum = 0, 0, 0.0
            for xs, y in batches(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed * 100003 + epoch,
                                 rank=rank, world=world):
                xs, y = [xs[k].to(device) for k in core.inputs], y.to(device)
                logits = model(*xs)
                loss = torch.nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)  # .item() is a CPU-GPU sync point; once a batch is fine here
                correct += (logits.argmax(1) == y).sum().item()
                total += len(y)
            if world > 1:  # every rank trained on its shard: add them up
                t = torch.tensor([loss_sum, correct, total], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                loss_sum, correct, total = t.tolist()
                sync_buffers(core, world)
            probs, val_loss = predict_segments(core, data.val, device)
            val = score(probs, data.val, data.genres)
            sched.step(val["clip_accuracy"])
            better = (val["clip_accuracy"], -val_loss) > (state["best"], -state["best_loss"])
            record = {"epoch": epoch, "train_loss": loss_sum / total, "train_accuracy": correct / total,
                      "val_loss": val_loss, "val_clip_accuracy": val["clip_accuracy"],
                      "val_segment_accuracy": val["segment_accuracy"], "lr": opt.param_groups[0]["lr"]}
            state["history"].append(record)
            state["epoch"] = epoch
            if better:
                state.update(best=val["clip_accuracy"], best_loss=val_loss, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            if rank == 0:
                if better:
                    checkpoint.save(run_dir / "best.pt", **describe, state=core.state_dict(), epoch=epoch, val=record)
                checkpoint.save(run_dir / "last.pt", **describe, state=core.state_dict(), optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), rng={"torch": torch.get_rng_state(), "cuda":
                                torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
                                train_state=state)
                log.info(f"epoch {epoch:3d}  train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.3f}  "
                         f"val loss {val_loss:.3f} seg {val['segment_accuracy']:.3f} clip {val['clip_accuracy']:.3f}"
                         + ("  *best" if better else ""))
        if state["bad_epochs"] >= cfg.patience:
            log.info(f"early stop: no better val accuracy for {cfg.patience} epochs")
    except KeyboardInterrupt:
        log.info(f"stopped by Ctrl+C during epoch {state['epoch'] + 1}; keeping best.pt "
                 f"(val clip accuracy {state['best']:.3f})")
    if world > 1:  # check, rather than trust, that every rank ends with the same weights
        hashes = [None] * world
        dist.all_gather_object(hashes, weights_hash(core))
        state["rank_weight_hashes"] = hashes
        log.info(f"weights identical on all {world} ranks: {len(set(hashes)) == 1}")
    return state


def test(run_dir, data, device="auto"):
    """Score run_dir/best.pt on data.test. Returns the metrics dict (test_* keys)."""
    model, ckpt = checkpoint.load_model(run_dir / "best.pt")
    checkpoint.check_features(ckpt, data.features, run_dir / "best.pt")
    if ckpt["genres"] != data.genres:
        raise UserError(f"{run_dir / 'best.pt'} knows genres {ckpt['genres']}, the data has {data.genres}")
    dev = resolve_device(device)
    probs, loss = predict_segments(model.to(dev), data.test, dev)
    s = score(probs, data.test, data.genres)
    return {"test_clip_accuracy": s["clip_accuracy"], "test_segment_accuracy": s["segment_accuracy"],
            "test_macro_f1": s["macro_f1"], "test_loss": loss, "test_per_class": s["per_class"],
            "confusion_matrix": s["confusion_matrix"], "genres": data.genres, "test_clips": s["n_clips"],
            "test_segments": s["n_segments"], "best_epoch": ckpt.get("epoch")}


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

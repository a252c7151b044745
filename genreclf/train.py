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

from . import checkpoint, recipe
from .data import batch_plan, loader
from .errors import UserError
from .metrics import bootstrap_ci, clip_predictions, predict_segments, score

log = logging.getLogger("genreclf")


@dataclass(frozen=True)
class TrainConfig:
    model: str = field(default="base2dcnn", metadata={"help": "model from model/", "choices": sorted(MODELS)})
    epochs: int = field(default=100, metadata={"help": "most epochs to train"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer (adamw: decoupled weight decay)", "choices": ["adam", "adamw", "sgd"]})
    batch_size: int = field(default=32, metadata={"help": "segments per batch (per process under torchrun)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "L2 weight decay"})
    patience: int = field(default=15, metadata={"help": "stop after this many epochs without a better val accuracy"})
    seed: int = field(default=0, metadata={"help": "seed of weights, shuffling and dropout"})
    device: str = field(default="auto", metadata={"help": "auto picks cuda when available", "choices": ["auto", "cpu", "cuda"]})
    pretrained: bool = field(default=False, metadata={"help": "start VGG/ResNet from torchvision's ImageNet weights"})
    weights: str = field(default="", metadata={"help": "local ImageNet state dict with torchvision's keys (implies --pretrained)"})
    freeze: str = field(default="none", metadata={"help": "what fine-tuning keeps fixed", "choices": ["none", "last", "head"]})
    amp: bool = field(default=False, metadata={"help": "mixed precision: bf16 autocast (fp16 with a GradScaler on GPUs without bf16)"})
    # the recipe (genreclf/recipe.py): schedule, loss and online augmentation; the defaults are the seed's recipe
    schedule: str = field(default="plateau", metadata={"help": "LR schedule: halve on a val plateau, or cosine to 0 per step", "choices": ["plateau", "cosine"]})
    warmup: float = field(default=0.0, metadata={"help": "epochs of linear LR warmup, stepped per batch (cosine only)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the training loss"})
    random_crop: bool = field(default=False, metadata={"help": "train on windows at random starts within the clip, not the fixed grid"})
    freq_mask: int = field(default=0, metadata={"help": "SpecAugment: widest frequency mask in mel bands (0: none)"})
    time_mask: int = field(default=0, metadata={"help": "SpecAugment: widest time mask in frames (0: none)"})
    masks: int = field(default=2, metadata={"help": "SpecAugment: masks of each kind per segment"})
    mixup: float = field(default=0.0, metadata={"help": "mixup: alpha of Beta(alpha, alpha) (0: none)"})
    gain_db: float = field(default=0.0, metadata={"help": "random gain of each segment's log-mel, +-dB (0: none)"})
    test_hop: float = field(default=0.0, metadata={"help": "test on windows every TEST_HOP seconds, overlapping when shorter than the segment (0: the segment grid; --hop is the STFT's)"})


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
    describe = {"model": cfg.model, "kwargs": kwargs, "features": data.features, "genres": data.genres,
                "config": asdict(cfg)}
    if hasattr(model, "fit_sklearn"):  # the classic baselines: one scikit-learn fit instead of SGD
        return recipe.fit_classic(cfg, model, data, run_dir, device, describe, rank)
    model.to(device)
    if device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)  # NHWC: what cuDNN's tensor-core kernels want
    amp_dtype, scaler = amp_setup(cfg.amp, device)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = recipe.optimizer(params, cfg)
    sched = recipe.Schedule(opt, cfg, len(batch_plan(len(data.train), cfg.batch_size, rank=rank, world=world)))
    state = {"epoch": 0, "best": -1.0, "best_loss": float("inf"), "bad_epochs": 0, "history": []}
    if resume:
        last = checkpoint.read(run_dir / "last.pt")
        core.load_state_dict(last["state"])
        opt.load_state_dict(last["optimizer"])
        sched.load_state_dict(last["scheduler"])
        rng = (last["rng"].get("ranks") or [last["rng"]])[rank]  # each rank's own RNG states
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"], device)
        state = last["train_state"]
        done = state["epoch"] >= cfg.epochs or state["bad_epochs"] >= cfg.patience
        log.info(f"{run_dir}: training had already finished at epoch {state['epoch']}; nothing to resume "
                 f"(best val clip accuracy {state['best']:.3f})" if done else
                 f"resumed {run_dir} after epoch {state['epoch']} (best val clip accuracy {state['best']:.3f})")
    try:
        while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            epoch = state["epoch"] + 1
            model.train()
            total, correct, loss_sum = 0, 0, 0.0
            on_gpu = device.type == "cuda"  # workers read the memory map ahead; pinned pages copy asynchronously
            batch_list = loader(recipe.epoch_view(data.train, cfg, epoch), cfg.batch_size, shuffle=True,
                                seed=cfg.seed * 100003 + epoch, rank=rank, world=world,
                                workers=min(4, os.cpu_count() or 1) if on_gpu else 0, pin_memory=on_gpu)
            for b, (xs, y) in enumerate(batch_list):
                if len(y) == 1 and len(data.train) > 1:
                    # A last batch of one segment: BatchNorm needs more than one value per channel in
                    # training mode (q2, resnet34_musicnn would raise), and one segment's gradient is
                    # mostly noise, so drop it. Under torchrun batches are padded full, never one.
                    continue
                xs, y = {k: xs[k].to(device, non_blocking=True) for k in core.inputs}, y.to(device, non_blocking=True)
                xs, target = recipe.augment_batch(xs, y, cfg, epoch, b, rank)  # SpecAugment, mixup, gain
                with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.amp):
                    logits = model(*[xs[k] for k in core.inputs])
                loss = recipe.mixed_loss(logits.float(), target, cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step_batch()
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
            if world > 1:  # rank 0's validation decides best, early stop and LR steps on every rank
                t = torch.tensor([val["clip_accuracy"], val_loss, val["segment_accuracy"]], dtype=torch.float64, device=device)
                dist.broadcast(t, 0)
                val["clip_accuracy"], val_loss, val["segment_accuracy"] = t.tolist()
            sched.step_epoch(val["clip_accuracy"])
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
            rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
            ranks = [None] * world
            if world > 1:  # every rank's own RNG states go into last.pt, so that a resume is exact on each
                dist.all_gather_object(ranks, rng)
            if rank == 0:
                if better:
                    checkpoint.save(run_dir / "best.pt", **describe, state=core.state_dict(), epoch=epoch, val=record)
                checkpoint.save(run_dir / "last.pt", **describe, state=core.state_dict(), optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), rng={**rng, "ranks": ranks if world > 1 else None},
                                train_state=state)
                log.info(f"epoch {epoch:3d}  train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.3f}  "
                         f"val loss {val_loss:.3f} seg {val['segment_accuracy']:.3f} clip {val['clip_accuracy']:.3f}"
                         + ("  *best" if better else ""))
        if state["bad_epochs"] >= cfg.patience:
            log.info(f"early stop: no better val accuracy for {cfg.patience} epochs")
    except KeyboardInterrupt:
        state["interrupted"] = True
        log.info(f"stopped by Ctrl+C during epoch {state['epoch'] + 1}; keeping best.pt "
                 f"(val clip accuracy {state['best']:.3f})")
    if world > 1:  # check, rather than trust, that every rank ends with the same weights
        hashes = [None] * world
        dist.all_gather_object(hashes, weights_hash(core))
        state["rank_weight_hashes"] = hashes
        log.info(f"weights identical on all {world} ranks: {len(set(hashes)) == 1}")
    return state


def test(run_dir, data, device="auto", hop=0.0):
    """Score run_dir/best.pt on data.test, on its segments or, with `hop` (seconds), on windows
    every `hop` seconds (windows.overlapping; "segment" metrics are then per window). Returns the
    metrics dict (test_* keys; test clip accuracy with its 95% bootstrap CI over clips) and
    "predictions" (metrics.clip_predictions)."""
    from .windows import overlapping

    model, ckpt = checkpoint.load_model(run_dir / "best.pt")
    checkpoint.check_features(ckpt, data.features, run_dir / "best.pt")
    if ckpt["genres"] != data.genres:
        raise UserError(f"{run_dir / 'best.pt'} knows genres {ckpt['genres']}, the data has {data.genres}")
    dev = resolve_device(device)
    test_set = overlapping(data.test, hop, data.features) if hop else data.test
    probs, loss = predict_segments(model.to(dev), test_set, dev)
    s = score(probs, test_set, data.genres)
    predictions = clip_predictions(probs, test_set, data.genres)
    correct = np.array(predictions["true"]) == np.array(predictions["pred"])
    return {"test_clip_accuracy": s["clip_accuracy"], "test_clip_accuracy_ci95": bootstrap_ci(correct),
            "predictions": predictions, "test_segment_accuracy": s["segment_accuracy"],
            "test_macro_f1": s["macro_f1"], "test_loss": loss, "test_per_class": s["per_class"],
            "confusion_matrix": s["confusion_matrix"], "genres": data.genres, "test_clips": s["n_clips"],
            "test_segments": s["n_segments"], "best_epoch": ckpt.get("epoch"), "test_hop": hop}


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

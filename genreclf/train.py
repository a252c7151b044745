"""Step 3: train with validation every epoch, keep the best checkpoint, stop on patience or Ctrl+C.

Runs alone or under torchrun (DistributedDataParallel: NCCL on GPUs, gloo on CPU). Only rank 0
logs and writes files; every rank sees the same validation set, so they agree on "best".
"""
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from model import MODELS, classic
from model.vision import keep_frozen_in_eval

from . import checkpoint, recipe, runlog
from .config import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE
from .data import batch_plan, loader
from .device import amp_setup, dist_info, init_distributed, resolve_device, sync_buffers, weights_hash
from .errors import UserError, ctrl_c_handled, raise_lost_ctrl_c
from .metrics import clip_predictions, predict_segments, score

log = logging.getLogger("genreclf")


@dataclass(frozen=True)
class TrainConfig:
    model: str = field(default="base2dcnn", metadata={"help": "model from model/", "choices": sorted(MODELS)})
    epochs: int = field(default=100, metadata={"help": "most epochs to train", "range": AT_LEAST_1})
    lr: float = field(default=1e-3, metadata={"help": "learning rate", "range": POSITIVE})
    optimizer: str = field(default="adam", metadata={"help": "optimizer (adamw: decoupled weight decay)", "choices": ["adam", "adamw", "sgd"]})
    batch_size: int = field(default=32, metadata={"help": "segments per batch (per process under torchrun)", "range": AT_LEAST_1})
    weight_decay: float = field(default=1e-4, metadata={"help": "L2 weight decay", "range": NON_NEGATIVE})
    patience: int = field(default=15, metadata={"help": "stop after this many epochs without a better val accuracy", "range": AT_LEAST_1})
    seed: int = field(default=0, metadata={"help": "seed of weights, shuffling and dropout", "range": NON_NEGATIVE})
    device: str = field(default="auto", metadata={"help": "auto picks cuda when available", "choices": ["auto", "cpu", "cuda"]})
    pretrained: bool = field(default=False, metadata={"help": "start VGG/ResNet from torchvision's ImageNet weights"})
    weights: str = field(default="", metadata={"help": "local ImageNet state dict with torchvision's keys (implies --pretrained)"})
    freeze: str = field(default="none", metadata={"help": "what fine-tuning keeps fixed", "choices": ["none", "last", "head"]})
    amp: bool = field(default=False, metadata={"help": "mixed precision: bf16 autocast (fp16 with a GradScaler on GPUs without bf16)"})
    # the recipe (genreclf/recipe.py): schedule, loss and online augmentation; the defaults are the seed's recipe
    schedule: str = field(default="plateau", metadata={"help": "LR schedule: halve on a val plateau, or cosine to 0 per step", "choices": ["plateau", "cosine"]})
    warmup: float = field(default=0.0, metadata={"help": "epochs of linear LR warmup, stepped per batch (cosine only)", "range": NON_NEGATIVE})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the training loss", "range": FRACTION})
    random_crop: bool = field(default=False, metadata={"help": "train on windows at random starts within the clip, not the fixed grid"})
    freq_mask: int = field(default=0, metadata={"help": "SpecAugment: widest frequency mask in mel bands (0: none)", "range": NON_NEGATIVE})
    time_mask: int = field(default=0, metadata={"help": "SpecAugment: widest time mask in frames (0: none)", "range": NON_NEGATIVE})
    masks: int = field(default=2, metadata={"help": "SpecAugment: masks of each kind per segment", "range": NON_NEGATIVE})
    mixup: float = field(default=0.0, metadata={"help": "mixup: alpha of Beta(alpha, alpha) (0: none)", "range": NON_NEGATIVE})
    gain_db: float = field(default=0.0, metadata={"help": "random gain of each segment's log-mel, +-dB (0: none)", "range": NON_NEGATIVE})
    test_hop: float = field(default=0.0, metadata={"help": "test on windows every TEST_HOP seconds, overlapping when shorter than the segment (0: the segment grid; --hop is the STFT's)", "range": NON_NEGATIVE})


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
    if hasattr(model, "fit_sklearn"):  # the classic heads: one scikit-learn fit instead of SGD
        state = classic.fit(cfg, model, data, device)
        if rank == 0:
            checkpoint.save(run_dir / "best.pt", **describe, state=model.state_dict(), epoch=1, val=state["history"][0])
            checkpoint.save(run_dir / "last.pt", **describe, state=model.state_dict(), train_state=state)
        return state
    return Trainer(cfg, data, run_dir, model, device, describe).run(resume)


class Trainer:
    """The SGD loop of `fit`, one method per step: restore (from last.pt), train_epoch, validate,
    end_epoch (best/early-stop bookkeeping, checkpoints, the log line). Under torchrun every rank
    runs it; only rank 0 writes."""

    def __init__(self, cfg, data, run_dir, model, device, describe):
        self.cfg, self.data, self.run_dir, self.device, self.describe = cfg, data, run_dir, device, describe
        self.rank, self.world, _ = dist_info()
        model.to(device)
        if device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            model.to(memory_format=torch.channels_last)  # NHWC: what cuDNN's tensor-core kernels want
        self.core = model  # the model itself; self.model is its DDP wrapper under torchrun
        self.model = model
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.amp_dtype, self.scaler = amp_setup(cfg.amp, device)
        self.opt = recipe.optimizer([p for p in self.model.parameters() if p.requires_grad], cfg)
        steps = len(batch_plan(len(data.train), cfg.batch_size, rank=self.rank, world=self.world))
        self.sched = recipe.Schedule(self.opt, cfg, steps)
        self.state = {"epoch": 0, "best": -1.0, "best_loss": float("inf"), "bad_epochs": 0, "history": []}
        # What the loop imports on first use (scikit-learn's metrics at validation, matplotlib at the
        # epoch's end), imported now: a Ctrl+C inside a first import leaves the module half-made, and
        # the test or the last curves.png after the Ctrl+C would then fail.
        import sklearn.metrics  # noqa: F401
        runlog.plots.pyplot()

    def run(self, resume=False):
        cfg, state = self.cfg, self.state
        if resume:
            self.restore()
            state = self.state
        try:
            while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
                epoch = state["epoch"] + 1
                train = self.train_epoch(epoch)
                val, val_loss = self.validate()
                if diverged(state, epoch, cfg.lr, train["loss"], val_loss, checkpoint.non_finite(self.core.state_dict())[0]):
                    break
                self.end_epoch(epoch, train, val, val_loss)
                raise_lost_ctrl_c()
            if state["bad_epochs"] >= cfg.patience:
                log.info(f"early stop: no better val accuracy for {cfg.patience} epochs")
        except KeyboardInterrupt:
            ctrl_c_handled()
            state["interrupted"] = True
            log.info(f"stopped by Ctrl+C during epoch {state['epoch'] + 1}; keeping best.pt "
                     f"(val clip accuracy {state['best']:.3f})")
        if self.world > 1:  # check, rather than trust, that every rank ends with the same weights
            hashes = [None] * self.world
            dist.all_gather_object(hashes, weights_hash(self.core))
            state["rank_weight_hashes"] = hashes
            log.info(f"weights identical on all {self.world} ranks: {len(set(hashes)) == 1}")
        return state

    def restore(self):
        """Continue from run_dir/last.pt: weights, optimizer, schedule, this rank's RNG, the state."""
        last = checkpoint.read(self.run_dir / "last.pt")
        self.core.load_state_dict(last["state"])
        self.opt.load_state_dict(last["optimizer"])
        self.sched.load_state_dict(last["scheduler"])
        if last.get("scaler"):  # fp16's loss scale and its growth tracker (last.pt made before them: none)
            self.scaler.load_state_dict(last["scaler"])
        rng = (last["rng"].get("ranks") or [last["rng"]])[self.rank]  # each rank's own RNG states
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.state = state = last["train_state"]
        done = state["epoch"] >= self.cfg.epochs or state["bad_epochs"] >= self.cfg.patience
        log.info(f"{self.run_dir}: training had already finished at epoch {state['epoch']}; nothing to resume "
                 f"(best val clip accuracy {state['best']:.3f})" if done else
                 f"resumed {self.run_dir} after epoch {state['epoch']} (best val clip accuracy {state['best']:.3f})")

    def train_epoch(self, epoch):
        """One pass over this rank's batches. Returns {"loss", "accuracy"} summed over ranks."""
        cfg, core, device = self.cfg, self.core, self.device
        self.epoch_start = time.monotonic()  # history.csv's seconds: training and validation of the epoch
        self.model.train()
        keep_frozen_in_eval(core, cfg.freeze)  # --freeze: frozen BatchNorm statistics and dropout stay fixed
        total, correct, loss_sum = 0, 0, 0.0
        on_gpu = device.type == "cuda"  # workers read the memory map ahead; pinned pages copy asynchronously
        batch_list = loader(recipe.epoch_view(self.data.train, cfg, epoch), cfg.batch_size, shuffle=True,
                            seed=cfg.seed * 100003 + epoch, rank=self.rank, world=self.world,
                            workers=min(4, os.cpu_count() or 1) if on_gpu else 0, pin_memory=on_gpu)
        for b, (xs, y) in enumerate(batch_list):
            raise_lost_ctrl_c()  # a Ctrl+C that landed in a finalizer stops training all the same
            if len(y) == 1 and len(self.data.train) > 1:
                # A last batch of one segment: BatchNorm needs more than one value per channel in
                # training mode (q2, resnet34_musicnn would raise), and one segment's gradient is
                # mostly noise, so drop it. Under torchrun batches are padded full, never one.
                continue
            xs, y = {k: xs[k].to(device, non_blocking=True) for k in core.inputs}, y.to(device, non_blocking=True)
            xs, target = recipe.augment_batch(xs, y, cfg, epoch, b, self.rank)  # SpecAugment, mixup, gain
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=cfg.amp):
                logits = self.model(*[xs[k] for k in core.inputs])
            loss = recipe.mixed_loss(logits.float(), target, cfg.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step_batch()
            loss_sum += loss.item() * len(y)  # .item() is a CPU-GPU sync point; once a batch is fine here
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
        if self.world > 1:  # every rank trained on its shard: add them up
            t = torch.tensor([loss_sum, correct, total], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            loss_sum, correct, total = t.tolist()
            sync_buffers(core, self.world)
        return {"loss": loss_sum / total, "accuracy": correct / total}

    def validate(self):
        """(score dict of the val clips, mean val loss); rank 0's numbers on every rank."""
        probs, val_loss = predict_segments(self.core, self.data.val, self.device)
        val = score(probs, self.data.val, self.data.genres)
        if self.world > 1:  # rank 0's validation decides best, early stop and LR steps on every rank
            t = torch.tensor([val["clip_accuracy"], val_loss, val["segment_accuracy"]], dtype=torch.float64,
                             device=self.device)
            dist.broadcast(t, 0)
            val["clip_accuracy"], val_loss, val["segment_accuracy"] = t.tolist()
        return val, val_loss

    def end_epoch(self, epoch, train, val, val_loss):
        """Step the plateau schedule, record the epoch, keep best.pt when val improved, write last.pt."""
        state = self.state
        self.sched.step_epoch(val["clip_accuracy"])
        better = (val["clip_accuracy"], -val_loss) > (state["best"], -state["best_loss"])
        record = {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                  "val_loss": val_loss, "val_clip_accuracy": val["clip_accuracy"],
                  "val_segment_accuracy": val["segment_accuracy"], "lr": self.opt.param_groups[0]["lr"],
                  "seconds": round(time.monotonic() - self.epoch_start, 3)}
        state["history"].append(record)
        state["epoch"] = epoch
        if better:
            state.update(best=val["clip_accuracy"], best_loss=val_loss, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        self.save(epoch, record, better)
        if self.rank == 0:
            log.info(f"epoch {epoch:3d}  train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.3f}  "
                     f"val loss {val_loss:.3f} seg {val['segment_accuracy']:.3f} clip {val['clip_accuracy']:.3f}"
                     + ("  *best" if better else ""))
            runlog.epoch_end(self.run_dir, state["history"], f"{self.cfg.model}: {self.run_dir.name}")

    def save(self, epoch, record, better):
        """best.pt when `better`; last.pt always, with every rank's RNG state (gathered on all ranks)."""
        device = self.device
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        ranks = [None] * self.world
        if self.world > 1:  # every rank's own RNG states go into last.pt, so that a resume is exact on each
            dist.all_gather_object(ranks, rng)
        if self.rank != 0:
            return
        state_dict = self.core.state_dict()
        if better:
            checkpoint.save(self.run_dir / "best.pt", **self.describe, state=state_dict, epoch=epoch, val=record)
        checkpoint.save(self.run_dir / "last.pt", **self.describe, state=state_dict, optimizer=self.opt.state_dict(),
                        scheduler=self.sched.state_dict(), scaler=self.scaler.state_dict(),
                        rng={**rng, "ranks": ranks if self.world > 1 else None},
                        train_state=self.state)


def diverged(state, epoch, lr, train_loss, val_loss, bad_weights):
    """True, with state["diverged"] = {"epoch", "what", "lr"} and one log line, when the epoch's
    train or val loss is NaN or infinite, or `bad_weights` (a count) of the weights are: the run
    stops there. Nothing of that epoch is saved, so best.pt and last.pt keep the last finite
    epoch (or do not exist, when epoch 1 diverged), and a non-finite model never becomes best.pt."""
    what = [f"{name} {v}" for name, v in (("train loss", train_loss), ("val loss", val_loss)) if not math.isfinite(v)]
    what += [f"{bad_weights:,} weights NaN or infinite"] if bad_weights else []
    if not what:
        return False
    state["diverged"] = {"epoch": epoch, "what": ", ".join(what), "lr": lr}
    log.info(f"epoch {epoch:3d}  {divergence_message(state)}")
    return True


def divergence_message(state):
    """The one line that says a run diverged, where, and what to do."""
    d = state["diverged"]
    kept = (f"best.pt keeps the best earlier epoch (val clip accuracy {state['best']:.3f})" if state["best"] >= 0
            else "nothing was saved")
    return (f"training diverged at epoch {d['epoch']} ({d['what']}); {kept}. Start again with a lower --lr "
            f"(this run had {d['lr']:g})")


def test(run_dir, data, device="auto", hop=0.0):
    """Score run_dir/best.pt on data.test, on its segments or, with `hop` (seconds), on windows
    every `hop` seconds (windows.overlapping; "segment" metrics are then per window). Returns the
    metrics dict (test_* keys; the CI is experiment.run's, which knows the artists) and
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
    return {"test_clip_accuracy": s["clip_accuracy"], "predictions": clip_predictions(probs, test_set, data.genres),
            "test_segment_accuracy": s["segment_accuracy"], "test_macro_f1": s["macro_f1"],
            "test_macro_f1_genres": s["macro_f1_genres"], "test_loss": loss, "test_per_class": s["per_class"],
            "confusion_matrix": s["confusion_matrix"], "genres": data.genres, "test_clips": s["n_clips"],
            "test_segments": s["n_segments"], "best_epoch": ckpt.get("epoch"), "test_hop": hop}


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

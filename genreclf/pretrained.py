"""The shipped default model: pretrained/ in the repository, checked by SHA-256 when loaded.

    python -m genreclf.pretrained --data-dir work/gtzan187 --model q2 ... --out pretrained/X.pt

trains the given configuration on *every* cached clip (no clip held out: the CV numbers in the
model card come from `make cv-recipe`), for the fixed number of epochs of its schedule, and
writes the last epoch's weights as a self-describing checkpoint of plain tensors and lists (no
optimizer, no paths, no times), so that the same data and flags on the same machine give the same
bytes. `make pretrained` runs it; see pretrained/MODEL_CARD.md.

Beside the checkpoint it writes X.pt.sha256, one line in `sha256sum`'s format, and the loader
checks the file against that line, as model hubs keep a checksum beside the weights: a model
rebuilt on another CPU (other float sums, other bytes) works at once, and a damaged or truncated
file (a failed copy, a Git LFS pointer instead of the file) is refused in one line. The sidecar
guards against damage, not against someone who replaces both files.
"""
import argparse
import io
import tempfile
import time
from pathlib import Path

from .download import sha256
from .errors import UserError
from .io import atomic_path, write_text

REPO = Path(__file__).resolve().parent.parent
FILE = REPO / "pretrained" / "genre_musicnn.pt"
CARD = "pretrained/MODEL_CARD.md"
RESTORE = "restore it with git, or rebuild it with `make pretrained`"


def sidecar(path):
    """The SHA-256 file beside a checkpoint: X.pt -> X.pt.sha256."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_sidecar(path):
    """Write sidecar(path): `<sha256>  <file name>`, as sha256sum prints it. Returns the SHA-256."""
    digest = sha256(path)
    write_text(sidecar(path), f"{digest}  {Path(path).name}\n")
    return digest


def expected_sha256(path):
    """The SHA-256 that sidecar(path) gives for `path`; UserError when it is missing or malformed."""
    side = sidecar(path)
    if not side.exists():
        raise UserError(f"{side}: missing, so {Path(path).name} cannot be checked: {RESTORE}")
    fields = side.read_text(encoding="utf-8", errors="replace").split()
    if len(fields) != 2 or fields[1].lstrip("*") != Path(path).name or len(fields[0]) != 64 \
            or any(c not in "0123456789abcdef" for c in fields[0].lower()):
        raise UserError(f"{side}: not a `<sha256>  {Path(path).name}` line: {RESTORE}")
    return fields[0].lower()


def checkpoint_path(path=FILE):
    """The shipped checkpoint's path, after checking its SHA-256 against its sidecar.
    Raises UserError (one line) when either is missing or they differ."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: the shipped model is missing: {RESTORE}")
    expected, got = expected_sha256(path), sha256(path)
    if got != expected:
        raise UserError(f"{path}: SHA-256 {got[:16]}... is not the {expected[:16]}... of {sidecar(path).name}: the file is "
                        f"damaged: {RESTORE}")
    return path


def build(cfg, caches, out):
    """Train cfg on every clip of `caches` and write the shipped checkpoint to `out`.
    Returns (seconds taken, SHA-256 of the file)."""
    from dataclasses import asdict

    import torch

    from . import checkpoint
    from .data import read_index
    from .experiment import load_data
    from .train import fit, seed_everything

    t0 = time.time()
    seed_everything(cfg.seed)
    index = read_index(next(iter(caches.values())))
    ids = sorted({c["id"] for clips in index["splits"].values() for c in clips})
    # every clip trains; "val" is the training set itself, only logged (the last epoch ships)
    data, _ = load_data(caches, {"train": ids, "val": ids, "test": ids}, augment=False)
    with tempfile.TemporaryDirectory() as tmp:
        state = fit(cfg, data, Path(tmp))
        last = checkpoint.read(Path(tmp) / "last.pt")
    ckpt = dict(model=last["model"], kwargs=last["kwargs"], features=last["features"], genres=last["genres"],
                state=last["state"], config=asdict(cfg), epoch=state["epoch"],
                trained_on={"clips": len(ids), "segments": len(data.train)})
    # torch.save names the zip's root folder after the file it writes, and io.save_torch writes a
    # randomly named temporary file: save to memory (root "archive") so the bytes repeat
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return time.time() - t0, write_sidecar(out)


def main():
    from .config import from_args
    from .experiment import add_training_flags, open_caches
    from .featurizers import FEATURIZERS
    from .paths import cache_root, split_dir
    from .train import TrainConfig
    from model import inputs_of

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(p)
    p.add_argument("--out", default=str(FILE), help=f"where to write the checkpoint (default: {FILE.relative_to(REPO)})")
    args = p.parse_args()
    cfg = from_args(TrainConfig, args, device="cpu")  # CPU: the same bytes on every rebuild here
    featurizers = {name: (lambda f=f: f.from_args(args)) for name, f in FEATURIZERS.items()}
    caches = open_caches(inputs_of(cfg.model), featurizers, cache_root(args), args.data_dir, split_dir(args))
    seconds, digest = build(cfg, caches, Path(args.out))
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {size / 1e6:.2f} MB, built in {seconds:.0f} s, SHA-256 {digest} (in {sidecar(args.out)})")


if __name__ == "__main__":
    from .errors import run_cli
    run_cli(main)

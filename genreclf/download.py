"""Fetch and unpack the official GTZAN archive, resuming a broken transfer, checking its hash."""
import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import UserError

GTZAN_URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
GTZAN_SHA256 = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"  # MD5 5b3d6dddb579ab49814ab86dba69e7c7


def sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url, dest, expected_sha256, timeout=30):
    """Download `url` to `dest`, resuming from `dest.part` with an HTTP Range request.

    A server that ignores Range gets a clean restart. The finished file is renamed into place only
    after its SHA-256 matches; a mismatch deletes the partial file so the next try starts afresh.
    """
    dest = Path(dest)
    if dest.exists() and sha256(dest) == expected_sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # our partial file is already complete (or longer than the file)
            response = None
        else:
            raise UserError(f"cannot download {url}: HTTP {e.code}. {_manual_hint(dest)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach {url} ({reason}). {_manual_hint(dest)}") from None
    if response is not None:
        resumed = response.status == 206
        total = int(response.headers.get("Content-Length", 0)) + (have if resumed else 0)
        with response, open(part, "ab" if resumed else "wb") as out, tqdm(
                total=total or None, initial=have if resumed else 0, unit="B", unit_scale=True,
                desc=f"download {dest.name}" + (" (resumed)" if resumed else "")) as bar:
            while block := response.read(1 << 16):
                out.write(block)
                bar.update(len(block))
    if sha256(part) != expected_sha256:
        part.unlink()
        raise UserError(f"{url}: checksum mismatch (expected SHA-256 {expected_sha256}); the partial file "
                        f"was deleted, run again to restart. {_manual_hint(dest)}")
    part.rename(dest)
    return dest


def _manual_hint(dest):
    return f"If you have genres.tar.gz already, put it at {dest} and run again."


def unpack(archive, data_dir):
    """Extract `genres/<genre>/<file>` members into DATA/wav/<genre>/<file>; returns the count."""
    wav = Path(data_dir) / "wav"
    n = 0
    with tarfile.open(archive, "r:gz") as tar:
        for m in tqdm(tar.getmembers(), desc="unpack", unit="file"):
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3 or ".." in parts:
                continue
            target = wav / parts[-2] / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            n += 1
    return n


def download_gtzan(data_dir, url=GTZAN_URL, expected_sha256=GTZAN_SHA256):
    archive = fetch(url, Path(data_dir) / "genres.tar.gz", expected_sha256)
    return unpack(archive, data_dir)

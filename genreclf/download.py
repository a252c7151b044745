"""Fetch and unpack the GTZAN archive from the first mirror that works, resuming a broken transfer.

Every mirror carries the same genres.tar.gz and is checked against the same SHA-256, so a partial
file from one mirror is resumed from the next. Nothing here ends in a traceback: each failed mirror
is one line, and a run that fails leaves `genres.tar.gz.part` for the next run to resume. The
archive is unpacked into a hidden temporary folder that is renamed to `wav/` when complete, so a
killed unpack leaves no half-filled `wav/`, and the next run starts the unpack again.
"""
import hashlib
import http.client
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import UserError

GTZAN_URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
MIRRORS = (
    GTZAN_URL,  # the official host (Tzanetakis, UVic): offline much of the time
    "https://web.archive.org/web/2015id_/" + GTZAN_URL,  # id_: the archived bytes, not a wrapped page
    "https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz",
)
GTZAN_SHA256 = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"  # MD5 5b3d6dddb579ab49814ab86dba69e7c7
DONE = ".unpacked"  # in wav/: the SHA-256 of the archive it came from, written last


class MirrorFailed(Exception):
    """One mirror did not deliver; the message is one line. The .part file is kept."""


def sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch_one(url, dest, expected_sha256, timeout):
    """Download `url` to `dest` through `dest.part`, resuming with an HTTP Range request."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416:  # 416: our partial file is already complete (or longer than the file)
            raise MirrorFailed(f"{url}: HTTP {e.code}") from None
        response = None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise MirrorFailed(f"cannot reach {url} ({getattr(e, 'reason', e)})") from None
    if response is not None:
        resumed = response.status == 206
        got = have if resumed else 0
        total = int(response.headers.get("Content-Length", 0) or 0) + got
        try:
            with response, open(part, "ab" if resumed else "wb") as out, tqdm(
                    total=total or None, initial=got, unit="B", unit_scale=True,
                    desc=f"download {dest.name}" + (" (resumed)" if resumed else ""), file=sys.stderr) as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException, ValueError) as e:  # reset, timeout, IncompleteRead
            raise MirrorFailed(f"{url}: transfer broke off after {got:,} bytes ({type(e).__name__}); "
                               f"run again to resume from {part}") from None
        if total and got < total:  # the server closed early without an error
            raise MirrorFailed(f"{url}: transfer broke off after {got:,} of {total:,} bytes; run again to resume from {part}")
    if not part.exists() or sha256(part) != expected_sha256:
        part.unlink(missing_ok=True)
        raise MirrorFailed(f"{url}: checksum mismatch (expected SHA-256 {expected_sha256}); the partial file was deleted")
    part.rename(dest)
    return dest


def fetch(url, dest, expected_sha256, timeout=30):
    """Download one `url` to `dest`, resuming from `dest.part`; a UserError (one line) on failure.

    A server that ignores Range gets a clean restart. The finished file is renamed into place only
    after its SHA-256 matches; a mismatch deletes the partial file so the next try starts afresh.
    """
    return fetch_any([url], dest, expected_sha256, timeout, report=lambda line: None)


def fetch_any(urls, dest, expected_sha256, timeout=30, report=None):
    """Try each mirror in turn until one delivers `dest` with `expected_sha256`.

    Each failed mirror is reported as one line through `report` (default: stderr); when all fail,
    a UserError says where to put a copy fetched by hand.
    """
    dest = Path(dest)
    report = report or (lambda line: print(f"warning: {line}", file=sys.stderr))
    if dest.exists() and sha256(dest) == expected_sha256:
        return dest
    failures = []
    for i, url in enumerate(urls, 1):
        try:
            return _fetch_one(url, dest, expected_sha256, timeout)
        except MirrorFailed as e:
            failures.append(str(e))
            report(f"mirror {i} of {len(urls)} failed: {e}")
    raise UserError(f"{failures[-1] if len(urls) == 1 else f'none of the {len(urls)} mirrors worked'}. {_manual_hint(dest)}")


def _manual_hint(dest):
    return f"If you have genres.tar.gz already, put it at {dest} and run again."


def unpack(archive, data_dir, expected_sha256=GTZAN_SHA256):
    """Extract `genres/<genre>/<file>` members into DATA/wav/<genre>/<file>; returns the count.

    Extraction goes to DATA/.wav.partial, then is renamed to DATA/wav, so `wav/` is never half
    full; a leftover .wav.partial (a killed run) is deleted first.
    """
    data_dir = Path(data_dir)
    wav, tmp = data_dir / "wav", data_dir / ".wav.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    with tarfile.open(archive, "r:gz") as tar:
        for m in tqdm(tar, desc="unpack", unit="file", file=sys.stderr):
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3 or ".." in parts:
                continue
            target = tmp / parts[-2] / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            n += 1
    (tmp / DONE).write_text(f"{expected_sha256} {n}\n")
    if wav.exists():  # an unpack by an older version, or interrupted in its time: replaced whole
        shutil.rmtree(wav)
    tmp.rename(wav)
    return n


def download_gtzan(data_dir, urls=MIRRORS, expected_sha256=GTZAN_SHA256, report=None):
    """Make DATA/wav the complete GTZAN archive; returns the number of files in it.

    Cheap when done before (wav/.unpacked names the archive's hash): nothing is fetched. A wav/
    that this function did not make, with no archive beside it, is someone's own copy (Kaggle's):
    it is used as is, with one line saying so. Otherwise the archive is fetched (resumed) and unpacked.
    """
    data_dir, urls = Path(data_dir), [urls] if isinstance(urls, str) else list(urls)
    wav, archive = data_dir / "wav", data_dir / "genres.tar.gz"
    say = report or (lambda line: print(line, file=sys.stderr))
    stamp = wav / DONE
    if stamp.exists() and stamp.read_text().split()[:1] == [expected_sha256]:
        say(f"{wav}: already unpacked from genres.tar.gz; nothing to download")
        return int(stamp.read_text().split()[1])
    in_progress = [p for p in (archive, archive.with_name(archive.name + ".part"), data_dir / ".wav.partial") if p.exists()]
    if wav.is_dir() and not in_progress:
        say(f"{wav}: exists and was not unpacked by --download; using it as is (delete it to download GTZAN)")
        return sum(1 for p in wav.rglob("*") if p.is_file())
    fetch_any(urls, archive, expected_sha256, report=report)
    try:
        return unpack(archive, data_dir, expected_sha256)
    except (OSError, EOFError, tarfile.TarError) as e:  # disk full, a damaged member: run again
        raise UserError(f"{archive}: unpacking failed ({type(e).__name__}: {str(e)[:100]}); run again to redo it") from None

"""What predict.py prints: one record per file, a result or an error, as a table, JSON or CSV.

    result   {"path", "duration", "top": [{"genre", "probability"}], "probabilities": {genre: p},
              "timeline": [{"start", "end", "top", "probabilities", "silent"}]}   (timeline: --timeline)
    failure  {"path", "error"}: no probabilities, so that JSON and CSV list every input file

Musicnn's tags (--musicnn-tags) use "tag" and "tags" where genres use "genre" and "probabilities".
A segment the Classifier found silent (out["silent"]) has "top": "silence", "silent": true and
null probabilities in the timeline (the key is kept, so every segment has the same keys), and is
left out of the file's mean.
"""
import csv
import errno
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from .audio import AUDIO_EXTS, audio_like, shown
from .errors import UserError
from .io import to_json
from .plots import LABEL_NAME as LABEL
from .plots import SILENCE


def result(path, out, labels, top_k, timeline, key="probabilities"):
    """The record of one classified file: top-k and every label's probability (the mean over its
    non-silent segments), and with `timeline` each segment's start and end (s), top label and
    probabilities. out: a runner's {"duration", "segments", "probs": (n_segments, n_labels),
    optionally "silent": (n_segments,) bool}."""
    probs = np.asarray(out["probs"])
    silent = out.get("silent")
    silent = np.zeros(len(probs), bool) if silent is None else np.asarray(silent, bool)
    mean = probs[~silent].mean(0) if (~silent).any() else probs.mean(0)
    order = np.argsort(-mean)[:top_k]
    r = {"path": shown(path), "duration": round(out["duration"], 3),
         "top": [{LABEL[key]: labels[i], "probability": float(mean[i])} for i in order],
         key: {g: float(p) for g, p in zip(labels, mean)}}
    if timeline:
        r["timeline"] = []
        for (a, b), p, quiet in zip(out["segments"], probs, silent):
            seg = {"start": round(a, 3), "end": round(b, 3)}
            if quiet:
                seg.update(top=SILENCE, **{key: None}, silent=True)
            else:
                seg.update(top=labels[int(p.argmax())], **{key: {g: float(x) for g, x in zip(labels, p)}})
                if "silent" in out:
                    seg["silent"] = False
            r["timeline"].append(seg)
    return r


def failure(path, error):
    """The record of a file that could not be classified; `error` is the one-line message, with or
    without the file's name in front."""
    name = path if isinstance(path, str) else shown(path)
    return {"path": name, "error": error[len(name) + 2:] if error.startswith(name + ": ") else error}


def one_line(text):
    """`text` with its control characters (a newline in a file name) escaped as repr does (\\n),
    so that a line of the table, or of stderr, stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def as_table(records, key):
    """One line per classified file (`path  (30.0 s)  metal 0.84, rock 0.06, ...`) and, with a
    timeline, one indented line per segment. Failed files are left out: they are on stderr."""
    lines = []
    for r in records:
        if "error" in r:
            continue
        top = ", ".join(f"{t[LABEL[key]]} {t['probability']:.2f}" for t in r["top"])
        lines.append(f"{one_line(r['path'])}  ({r['duration']:.1f} s)  {top}")
        for seg in r.get("timeline", []):
            lines.append(f"    {seg['start']:7.2f}-{seg['end']:7.2f} s  {seg['top']}")
    return "\n".join(lines)


def as_json(records):
    return to_json(records)  # strict JSON: a non-finite number is null, never a bare NaN


def as_csv(records, labels, key):
    """One row per file (path, duration, top, a column per label, error) or, when the records have
    a timeline, one row per segment (path, start, end, top, a column per label, error). A failed
    file is one row with only its path and error; a silent segment has no probabilities."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    per_segment = any("timeline" in r for r in records)
    header = ["path", "start", "end", "top"] + labels + ["error"] if per_segment else ["path", "duration", "top"] + labels + ["error"]
    w.writerow(header)
    blank = [""] * (len(header) - 2)
    for r in records:
        if "error" in r:
            w.writerow([r["path"], *blank, r["error"]])
        elif per_segment:
            for seg in r["timeline"]:
                cells = [f"{seg[key][g]:.6f}" for g in labels] if seg.get(key) else [""] * len(labels)
                w.writerow([r["path"], seg["start"], seg["end"], seg["top"], *cells, ""])
        else:
            w.writerow([r["path"], r["duration"], r["top"][0][LABEL[key]], *(f"{r[key][g]:.6f}" for g in labels), ""])
    return buf.getvalue().rstrip("\n")


def check_output_target(path, inputs):
    """predict.py --output: refuse, before any work, a file that would replace a song or cannot be
    written: one of the input files, a name with an audio extension (the table, JSON or CSV would
    overwrite audio, or pass for it), and what check_writable refuses. Raises UserError (one line)."""
    path = Path(path)
    if path.exists() and any(os.path.exists(f) and os.path.samefile(path, f) for f in inputs):
        raise UserError(f"--output {shown(path)}: is one of the input files, and would be overwritten: name a new file")
    if path.suffix.lower() in AUDIO_EXTS or audio_like(path):
        raise UserError(f"--output {shown(path)}: {path.suffix} is an audio extension, and predict.py writes text: "
                        "name a .txt, .json or .csv file")
    check_writable("--output", path)


def check_plot_target(path, n_files):
    """predict.py --plot: refuse, before any work, a picture that cannot be drawn: several files,
    a format not offered, or what check_writable refuses. Raises UserError (one line)."""
    path = Path(path)
    if n_files > 1:
        raise UserError(f"--plot draws one file's timeline, and {n_files} files were given or found: pass one file")
    if path.is_dir():
        raise UserError(f"--plot {path}: a folder; name the picture's file, such as {path / 'timeline.png'}")
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"--plot {path}: name a .png (or .svg, .pdf) file")
    check_writable("--plot", path)


def check_writable(flag, path):
    """Refuse a file that cannot be written: a folder, a file inside a file, a folder in which no
    file can be made (tried with a temporary file, which also catches a read-only file system where
    the permission bits say yes, running as root, and /proc). A missing folder is made, as the
    atomic write would. Raises UserError (one line)."""
    if path.is_dir():
        raise UserError(f"{flag} {shown(path)}: a folder; name a file, such as {shown(path / 'predictions.txt')}")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"{flag} {shown(path)}: {shown(path.parent)} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        # /proc and the like exist but take no new file: ENOENT would read "no such file" there
        why = "it takes no new files" if e.errno == errno.ENOENT and path.parent.is_dir() else e.strerror
        raise UserError(f"{flag} {shown(path)}: its folder {shown(path.parent)} cannot be written ({why}): "
                        "choose another place") from None

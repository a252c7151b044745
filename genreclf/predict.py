"""Classify anyone's audio files with a trained checkpoint, or tag them with musicnn.

Audio is decoded once and processed in chunks of CHUNK_SEGMENTS segments (about 28 s, a GTZAN
clip's length), so feature memory is bounded whatever the file's length, and the dB floor of each
chunk is set as it was on the 30 s training clips. Each chunk's DC offset is removed before
features, whatever the checkpoint (a key made before DC removal existed included: on GTZAN's clips,
whose offsets are below 0.02, that moves the shipped model's probabilities by at most 0.016). A
file's probabilities are the mean of its segments' softmax, as in evaluation, over the segments
that are not silent (below audio.SILENCE_DBFS): those are marked in `out["silent"]`.

`predict_many` runs a list of files in worker processes, up to `workers + 1` files ahead, and
yields results in input order. On CPU each worker decodes, featurizes (`prepare`) and runs the
model (`finish`) on one torch thread; with CUDA the workers decode and featurize while this
process runs the model. Calling a runner on one path does both steps in this process.
"""
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from . import audio, musicnn
from .errors import UserError
from .features import remove_dc
from .featurizers import FEATURIZERS

CHUNK_SEGMENTS = 7
MUSICNN_CHUNK_PATCHES = 64  # about 3 minutes of audio per musicnn batch


def choose_checkpoint(given, runs="runs"):
    """The checkpoint predict.py uses, and the one line that says so (None when the user named it).

    None: always the shipped model (pretrained.checkpoint_path, SHA-256 checked), never a run of
    one's own, so that training something does not quietly change what `predict.py song.mp3` says.
    "last": best.pt of the newest run under `runs` (checkpoint.newest_run). A run folder: its
    best.pt. A file: taken as a checkpoint (checkpoint.read refuses anything else in one line).
    Raises UserError for "last" with no run, a folder without best.pt (saying when it is an
    ensemble or a diverged run), a file named as audio, a missing path."""
    from . import pretrained
    from .checkpoint import newest_run

    if given is None:
        path = pretrained.checkpoint_path()
        return path, (f"note: using the shipped model {path.relative_to(pretrained.REPO)} (GTZAN's 10 genres; see "
                      f"{pretrained.CARD}); --checkpoint last for your newest run")
    if given == "last":
        run = newest_run(root=runs)
        if run is None:
            raise UserError(f"--checkpoint last: no run under {runs}/ has a best.pt: train one (python main.py), "
                            "or leave --checkpoint out for the shipped model")
        return run / "best.pt", f"note: --checkpoint last: using {run / 'best.pt'}"
    path = Path(given)
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt", None
        raise UserError(f"--checkpoint {audio.shown(path)}: {_not_a_run(path)}")
    if not path.exists():
        raise UserError(f"--checkpoint {audio.shown(path)}: no such file or folder "
                        "(give a run folder, a .pt checkpoint, or `last` for the newest run)")
    if path.suffix.lower() in audio.AUDIO_EXTS or audio.audio_like(path):  # judged by the name alone
        raise UserError(f"--checkpoint {audio.shown(path)}: not a checkpoint: {path.suffix} is an audio extension; "
                        "give songs as PATHs, and --checkpoint a run folder or a .pt file (or leave it out for "
                        "the shipped model)")
    return path, None


def _not_a_run(folder):
    """Why a folder without best.pt is not a model: an ensemble (ensemble.json), a run that
    diverged (metrics.json says so, and it kept no weights), an experiment (runs inside), or not a
    run folder at all."""
    import json

    from . import checkpoint
    from .ensemble import NAME as ENSEMBLE

    if (folder / ENSEMBLE).is_file():
        try:
            members = json.loads((folder / ENSEMBLE).read_text(encoding="utf-8"))["members"]
        except (OSError, ValueError, KeyError, TypeError):
            members = []
        such = f", such as {members[0]}" if members else ""
        return f"an ensemble, which has no single model predict.py can run: pass one of its members{such}"
    if checkpoint.diverged_message(folder):
        return "this run diverged and kept no model (no best.pt): retrain it with a lower --lr"
    runs_inside = sorted(p.parent.name for p in folder.glob("*/best.pt"))
    hint = f" (an experiment: pass one of its runs, such as {folder / runs_inside[0]})" if runs_inside else ""
    return f"a folder without best.pt, so not a run folder{hint}"


class Classifier:
    """A checkpoint's model with the featurizers its inputs were trained on."""

    def __init__(self, model, ckpt, device="cpu", hop=None):
        self.model = model.to(device).eval()
        self.genres = ckpt["genres"]
        self.device = device
        self.featurizers = {name: FEATURIZERS[key["features"]].from_key(key) for name, key in ckpt["features"].items()}
        first = next(iter(self.featurizers.values()))
        self.segment_s = first.segment_seconds  # all share one grid: 3.99 s for 4 s (172 frames of 512 samples)
        self.segment_set = (first.mel if hasattr(first, "mel") else first.spec).segment  # what the user set: 4 s
        if hop is not None and not 0 < hop <= self.segment_set:  # None: the segment grid alone
            raise UserError(f"--hop {hop:g}: must be more than 0 and at most the {self.segment_set:g} s segment")
        self.hop = hop or 0.0

    def chunk_starts(self, duration, chunk_s):
        """Start times (s) of the chunks to featurize. With --hop, the whole grid again from every
        offset 0, hop, 2 hop, ... below one segment: windows start at k * segment + j * hop (every
        `hop` seconds when it divides the segment), each featurizer (musicnn too) on its own audio."""
        for offset in np.arange(0, self.segment_s - 1e-6, self.hop) if self.hop else [0.0]:
            yield from (float(s) for s in np.arange(offset, duration, chunk_s))

    def prepare(self, path, on_warning=None):
        """Decode and featurize one file (no model): {"duration", "sound": (start, end) seconds,
        "chunks": [{input name: (n, ...), "start": seconds, "silent": (n,) bool}]}. Silence of a
        segment or more before and after the sound (audio.sound_span) is left out, so the segment
        grid starts where the music does and ends as a file of the music alone would. Runs in a
        worker process in predict_many. Raises audio.AudioError, also when there is no sound or
        every segment is silent."""
        waves = {}
        for name, f in self.featurizers.items():
            if f.sr not in waves:
                waves[f.sr] = audio.load(path, f.sr, on_warning=on_warning)
        sr, first = next(iter(waves.items()))
        duration = len(first) / sr
        span = audio.sound_span(first, sr)
        silence = audio.AudioError(f"{audio.shown(path)}: audio is silent: no {self.segment_set:g} s segment is above "
                                   f"{audio.SILENCE_DBFS:.0f} dBFS RMS once its DC offset is removed")
        if span is None:
            raise silence
        t0, t1 = span[0] / sr, span[1] / sr
        # Silence shorter than a segment at either end stays in the first or last segment, as it
        # always did; longer silence is cut off, so that it cannot fill a segment with the music.
        t0, t1 = (t0 if t0 >= self.segment_s else 0.0), (t1 if duration - t1 >= self.segment_s else duration)
        chunk_s = CHUNK_SEGMENTS * self.segment_s
        chunks = []
        for start in (t0 + s for s in self.chunk_starts(t1 - t0, chunk_s)):
            inputs, silent = {}, None
            for name, f in self.featurizers.items():
                w = remove_dc(waves[f.sr][int(round(start * f.sr)):int(round(min(start + chunk_s, t1) * f.sr))])
                try:
                    out = f(w)
                except ValueError:  # the tail is shorter than one segment: dropped, as in training
                    inputs = None
                    break
                inputs[name] = out["segments"]
                silent = out["silent"] if silent is None else silent  # all featurizers share one grid
            if inputs:
                n = min(len(x) for x in inputs.values())
                chunks.append({**{k: v[:n] for k, v in inputs.items()}, "start": start, "silent": silent[:n]})
        if not chunks:
            raise audio.AudioError(f"{audio.shown(path)}: {t1 - t0:.2f} s of sound is shorter than one "
                                   f"{self.segment_set:g} s segment")
        if all(c["silent"].all() for c in chunks):
            raise silence
        return {"duration": duration, "sound": (t0, t1), "chunks": chunks}

    def silences(self, prepared):
        """(start, end) of the segments of the silence cut off before and after the sound: the grid
        of the sound continued outward, the outermost segment stretched to the file's end (by less
        than a segment). The sound's last part shorter than a segment is dropped, as at the end of
        any file, so the timeline has a gap there."""
        (t0, t1), seg, end = prepared["sound"], self.segment_s, prepared["duration"]
        n0, n1 = int(t0 / seg + 1e-6), int((end - t1) / seg + 1e-6)  # 0 when no silence was cut off
        before = [(0.0 if k == n0 - 1 else t0 - (k + 1) * seg, t0 - k * seg) for k in range(n0)]
        after = [(t1 + k * seg, end if k == n1 - 1 else t1 + (k + 1) * seg) for k in range(n1)]
        return before[::-1] + after

    @torch.no_grad()
    def finish(self, prepared):
        """The model on prepare()'s chunks: {"duration", "segments": [(start, end)] in time order,
        "probs": (n_segments, n_genres), "silent": (n_segments,) bool, "mean": (n_genres,)}.
        Silent segments (those below audio.SILENCE_DBFS, and the silence before and after the
        sound) have NaN rows in probs and take no part in the mean, the file's probabilities."""
        probs, bounds, silent = [], [], []
        for inputs in prepared["chunks"]:
            xs = [torch.as_tensor(inputs[k], device=self.device) for k in self.model.inputs]
            probs.append(torch.softmax(self.model(*xs), dim=1).cpu().numpy())
            t0 = inputs.get("start", 0.0)
            bounds += [(t0 + k * self.segment_s, t0 + (k + 1) * self.segment_s) for k in range(len(probs[-1]))]
            silent.append(inputs["silent"])
        quiet = self.silences(prepared)
        bounds += quiet
        probs = np.concatenate(probs + [np.zeros((len(quiet), len(self.genres)), np.float32)])
        silent = np.concatenate(silent + [np.ones(len(quiet), bool)])
        order = np.argsort([a for a, _ in bounds], kind="stable")  # windows of every --hop offset, in time order
        probs, silent = probs[order], silent[order]
        mean = probs[~silent].mean(0)
        probs[silent] = np.nan  # no prediction for silence
        return {"duration": prepared["duration"], "segments": [bounds[i] for i in order], "probs": probs,
                "silent": silent, "mean": mean}

    def __call__(self, path):
        """finish(prepare(path)): {"duration", "segments", "probs", "silent", "mean"} for one file."""
        return self.finish(self.prepare(path))


class Tagger:
    """musicnn's own 50 tags, averaged over the file's 3 s patches: no trained model needed."""

    def __init__(self, name, device="cpu"):
        self.model = musicnn.load(name).to(device)
        self.genres = self.model.tags
        self.device = device

    def prepare(self, path, on_warning=None):
        """Decode one file and cut musicnn's patches: {"duration", "patches": (P, 187, 96)}."""
        wave = audio.load(path, musicnn.SR, on_warning=on_warning)
        return {"duration": len(wave) / musicnn.SR, "patches": musicnn.preprocess(wave)}

    def finish(self, prepared):
        patches = prepared["patches"]
        tags = np.concatenate([musicnn.run(self.model, patches[i:i + MUSICNN_CHUNK_PATCHES], self.device)["taggram"]
                               for i in range(0, len(patches), MUSICNN_CHUNK_PATCHES)])
        step = musicnn.PATCH * musicnn.HOP / musicnn.SR
        return {"duration": prepared["duration"], "probs": tags,
                "segments": [(k * step, (k + 1) * step) for k in range(len(tags))]}

    def __call__(self, path):
        return self.finish(self.prepare(path))


_WORKER = {}  # per worker process: the runner, inherited through the pool initializer


def _init_worker(runner, finish):
    torch.set_num_threads(1)  # N workers x N threads would oversubscribe the cores
    # Ctrl+C reaches the whole process group: the main process handles it and stops the workers,
    # which would otherwise each print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(runner=runner, finish=finish)


def _prepare(path):
    """In a worker: (prepared or finished or None, error line or None, warning lines)."""
    warnings, runner = [], _WORKER["runner"]
    try:
        prepared = runner.prepare(path, on_warning=warnings.append)
        return (runner.finish(prepared) if _WORKER["finish"] else prepared), None, warnings
    except audio.AudioError as e:
        return None, str(e), warnings


def predict_many(runner, paths, workers=2):
    """Yield (path, out or None, error line or None, warning lines) for each path, in input order.

    workers > 0: that many processes each take whole files, at most workers + 1 files ahead, so
    memory holds a few files whatever their number; a file's decoded audio lives only in its
    worker and its features are cut in chunks. On CPU a worker also runs the model, on one torch
    thread: measured on 2 cores, that beat the model on 2 threads in this process with workers
    only decoding (the model is most of base2dcnn's time, and a batch of a few segments on 2
    threads spends much of it at OpenMP barriers). Batching segments across files did not pay
    on CPU either: base2dcnn on 70 segments at once cost more per segment than on 7. On CUDA
    the workers decode and featurize, and this process runs the model (forked workers must not
    touch CUDA). workers == 0: all in this process, one file after the other. Ctrl+C, or closing
    the generator, cancels the files not started and terminates the workers (which ignore SIGINT).
    """
    if workers <= 0 or len(paths) < 2:
        for path in paths:
            warnings = []
            try:
                out = runner.finish(runner.prepare(path, on_warning=warnings.append))
                yield path, out, None, warnings
            except audio.AudioError as e:
                yield path, None, str(e), warnings
        return
    import multiprocessing

    in_worker = str(getattr(runner, "device", "cpu")) == "cpu"
    # fork: workers start in milliseconds and inherit the runner, model included
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=_init_worker, initargs=(runner, in_worker)) as pool:
        todo = iter(paths)
        pending = deque((path, pool.submit(_prepare, path)) for _, path in zip(range(workers + 1), todo))
        try:
            while pending:
                path, future = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_prepare, nxt)))
                out, error, warnings = future.result()
                if out is not None and not in_worker:
                    out = runner.finish(out)
                yield path, out, error, warnings
        except BaseException:  # Ctrl+C, or the caller closing us: stop now, not after the files under way
            for _, future in pending:
                future.cancel()
            for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
                proc.terminate()
            raise

"""A cache knows its audio and its split (issue 18, point 3): a changed audio file is computed
again, alone; two data folders of one name never share a cache; a cache built from other split
lists is refused, while a run's pinned clips still win."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import run_script, sine

from genreclf import experiment, rundata, splits
from genreclf.errors import UserError
from genreclf.extract import clip_file
from genreclf.train import TrainConfig
from tinycache import FEATURIZERS, MEL, SR, build, contents, split, stats, tiny, write_clips  # noqa: F401 (tiny: a fixture)


def test_a_changed_audio_file_is_re_extracted_alone_and_main_py_refuses_it_until_then(tiny, capsys):
    data, work = tiny
    cache = build(data, work)
    before, times = contents(cache), stats(cache)
    changed = data / "wav" / "a" / "clip 0.wav"
    sf.write(changed, sine(300.0, 2.2, SR), SR)  # replaced in place: same size, new content and time
    touched = data / "wav" / "b" / "clip 1.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same content
    with pytest.raises(UserError, match=r"the audio of 1 of its 9 clips changed since dataset.py cached it, such as "
                                        r".*a/clip 0.wav: rerun dataset.py"):
        experiment.open_caches(["mel"], FEATURIZERS, work / "cache", data, work / "split")
    capsys.readouterr()
    build(data, work)
    out = capsys.readouterr().out
    assert "8 of 9 clips already cached, 1 to do" in out and "1 clip changed since cached" in out
    after = contents(cache)
    redone = {p for p in after if after[p] != before.get(p)}
    mine = {p for p in redone if p.parts[0] == "clips"}

    def of_changed(p):  # the changed clip's files: rewritten, some with the same bytes (its .silent.npy)
        return p.parts[1] == "a" and p.name.startswith("clip 0.")
    assert mine and all(of_changed(p) for p in mine), redone
    assert {p.name for p in redone - mine} <= {"index.json"} | {p.name for p in after if p.name.startswith("segments-")}
    untouched = {p: s for p, s in stats(cache).items() if p in after and p not in redone and p.parts[0] == "clips"
                 and not of_changed(p)}
    assert untouched and all(times[p] == s for p, s in untouched.items())  # other clips were not even rewritten
    assert not set(cache.glob("segments-*.npy")) & {cache / p for p in before if str(p).startswith("segments-")}
    experiment.open_caches(["mel"], FEATURIZERS, work / "cache", data, work / "split")  # accepted now


def test_two_data_folders_with_one_name_get_a_cache_each(tmp_path, capsys):
    first, second, work = tmp_path / "x" / "gtzan", tmp_path / "y" / "gtzan", tmp_path / "work"
    write_clips(first)
    write_clips(second, freqs=(330.0, 660.0, 990.0))  # same file names, other audio
    split(first, work)
    a = build(first, work)
    capsys.readouterr()
    b = build(second, work)
    assert a != b and "0 of 9 clips already cached" in capsys.readouterr().out
    assert experiment.open_caches(["mel"], FEATURIZERS, work / "cache", second) == {"mel": b}
    clip = rundata.read_index(a).splits["test"][0]
    assert not np.array_equal(np.load(clip_file(a, clip, "orig")), np.load(clip_file(b, clip, "orig")))
    with pytest.raises(UserError, match="several data folders have one"):
        experiment.open_caches(["mel"], FEATURIZERS, work / "cache")  # no --data-dir: which one?


def test_a_stale_split_is_refused_but_a_run_keeps_its_pinned_clips(tiny):
    data, work = tiny
    build(data, work)
    caches = experiment.open_caches(["mel"], FEATURIZERS, work / "cache", data, work / "split")
    run = work / "run"
    experiment.run(TrainConfig(model="baseline", epochs=1, device="cpu"), caches, run, do_test=False)  # pins its clips
    old = splits.load_split(work / "split")
    split(data, work, seed=1)  # split_data.py again, with another seed, and no dataset.py
    assert splits.load_split(work / "split") != old
    with pytest.raises(UserError, match=r"index.json: built from other split lists than .*split/\*.txt .*: rerun dataset.py"):
        experiment.open_caches(["mel"], FEATURIZERS, work / "cache", data, work / "split")
    r = run_script("main.py", "--data-dir", data, "--work-dir", work, *MEL, "--do_test", "--out", run)
    assert r.returncode == 0 and "using the caches pinned" in r.stderr, r.stderr  # the run's own clips win
    assert json.loads((run / "metrics.json").read_text())["test_clips"] == len(old["test"])
    cfg = TrainConfig(model="baseline", epochs=1, device="cpu")
    assert experiment.run(cfg, caches, run, resume=True, do_test=False)["epochs_run"] == 1  # --resume: pinned too
    build(data, work)
    experiment.open_caches(["mel"], FEATURIZERS, work / "cache", data, work / "split")  # rebuilt: accepted

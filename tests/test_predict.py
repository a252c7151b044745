"""predict.py on real long tracks, GTZAN clips and files the tests generate."""
import csv
import io
import json
import os

import numpy as np
import pytest

from conftest import MINI, SHARED, needs_shared, run_script, sine
from genreclf.errors import UserError


def predict_json(*args):
    r = run_script("predict.py", *args, "--format", "json", "--timeline")
    return r, (json.loads(r.stdout) if r.stdout.strip() else [])


def check_result(res, genres):
    assert set(res["probabilities"]) == set(genres)
    assert sum(res["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert res["top"][0]["probability"] == max(res["probabilities"].values())
    tl = res["timeline"]
    assert tl[0]["start"] == 0 and all(abs(a["end"] - b["start"]) < 1e-3 for a, b in zip(tl, tl[1:]))
    assert res["duration"] - 4.0 < tl[-1]["end"] <= res["duration"] + 1e-3
    for seg in tl:
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-4)


@needs_shared
def test_long_stereo_tracks_and_gtzan_clips(trained_run):
    paths = [SHARED / "long_tracks", MINI / "wav" / "blues" / "blues.00099.mp3", MINI / "wav" / "jazz" / "jazz.00003.wav"]
    r, results = predict_json(*paths, "--checkpoint", trained_run / "best.pt", "--top-k", 2)
    assert r.returncode == 0, r.stderr
    assert len(results) == 4
    genres = json.loads((trained_run / "config.json").read_text())["genres"]
    for res in results:
        check_result(res, genres)
        assert len(res["top"]) == 2
    long = [res for res in results if res["path"].endswith(".ogg")]
    assert all(res["duration"] > 180 for res in long)


@needs_shared
def test_generated_files_good_and_bad(trained_run, wav_factory, tmp_path):
    stereo = wav_factory("in/stereo.flac", np.stack([sine(220, 9, 44100), sine(330, 9, 44100)], 1), 44100)
    mono = wav_factory("in/mono.wav", sine(440, 6, 16000), 16000)
    wav_factory("in/short.wav", sine(440, 2, 22050))
    wav_factory("in/silent.wav", np.zeros(22050 * 5, np.float32))
    (tmp_path / "in" / "corrupt.mp3").write_bytes(b"\xff\xfb" + bytes(500))
    r, results = predict_json(tmp_path / "in", "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 1
    assert sorted(res["path"] for res in results if "error" not in res) == sorted([str(mono), str(stereo)])
    assert len(results) == 5  # the failed files too, each with its error
    lines = r.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("error:")]
    assert "Traceback" not in r.stderr and len(errors) == 3
    warnings = [x for x in lines if x not in errors]  # the 16 kHz file is below the model's 22050 Hz
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {mono}") and "16000 Hz" in warnings[0]
    for name, problem in (("short.wav", "shorter than one"), ("silent.wav", "silent"), ("corrupt.mp3", "corrupt")):
        assert any(name in e and problem in e for e in errors), (name, errors)


def test_missing_path_empty_dir_and_unsupported(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not audio")
    r = run_script("predict.py", tmp_path / "nope.wav", tmp_path / "empty", tmp_path / "notes.txt",
                   "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert "no such file" in lines[0] and "no audio files" in lines[1] and "not an audio file" in lines[2]


def test_no_checkpoint_falls_back_to_the_shipped_model_in_one_line(tmp_path):
    r = run_script("predict.py", "x.wav", cwd=tmp_path)  # no runs/ here: pretrained/ (tests/test_recipe.py)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(lines) == 2
    assert "using the shipped model" in lines[0] and "x.wav: no such file" in lines[1]


@needs_shared
def test_musicnn_tags_match_reference_taggram(tmp_path):
    out = tmp_path / "tags.json"
    r = run_script("predict.py", MINI / "wav" / "classical" / "classical.00000.wav", "--musicnn-tags", "--format", "json",
                   "--output", out, "--timeline")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())[0]
    ref = np.load(SHARED / "musicnn_reference" / "classical.00000.npz")["MSD_musicnn/taggram"]
    assert len(res["tags"]) == 50 and len(res["timeline"]) == len(ref)
    assert np.abs(np.array(list(res["tags"].values())) - ref.mean(0)).max() <= 1e-3


@needs_shared
def test_csv_and_table_formats(trained_run):
    clip = MINI / "wav" / "metal" / "metal.00001.wav"
    r = run_script("predict.py", clip, "--checkpoint", trained_run / "best.pt", "--format", "csv")
    header, row = r.stdout.strip().splitlines()
    assert header.startswith("path,duration,top,") and row.startswith(str(clip))
    r = run_script("predict.py", clip, "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 0 and str(clip) in r.stdout and "30.0 s" in r.stdout


@needs_shared
def test_flag_before_the_path_and_old_model_spelling(tmp_path):
    """`--musicnn-tags song.wav` used to fail with "invalid choice: 'song.wav'"."""
    clip = MINI / "wav" / "classical" / "classical.00000.wav"
    r = run_script("predict.py", "--musicnn-tags", clip, "--format", "json", "--top-k", 1)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["path"] == str(clip)
    ref = np.load(SHARED / "musicnn_reference" / "classical.00000.npz")
    r = run_script("predict.py", clip, "--musicnn-tags", "MTT_musicnn", "--format", "json")
    assert r.returncode == 0, r.stderr
    mtt = np.array(list(json.loads(r.stdout)[0]["tags"].values()))
    assert np.abs(mtt - ref["MTT_musicnn/taggram"].mean(0)).max() <= 1e-3


def test_every_file_gets_a_line_links_and_low_rate(trained_run, wav_factory, tmp_path):
    """A folder with a dangling link, a symlinked sub-folder and an 8 kHz file, run through the
    worker pool: each file is a result or an error line, and the low rate is one warning line."""
    good = wav_factory("music/a.wav", sine(440, 9, 22050), 22050)
    wav_factory("elsewhere/b.wav", sine(330, 9, 22050), 22050)
    low = wav_factory("music/low.wav", sine(300, 9, 8000), 8000)
    (tmp_path / "music" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "music" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    r, results = predict_json(tmp_path / "music", "--checkpoint", trained_run / "best.pt", "--workers", 2)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert sorted(res["path"] for res in results if "error" not in res) == sorted(
        [str(good), str(low), str(tmp_path / "music" / "linked" / "b.wav")])
    assert [res["path"] for res in results if "error" in res] == [str(tmp_path / "music" / "gone.wav")]
    lines = r.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and "gone.wav" in errors[0] and "dangling" in errors[0]
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 1 and "low.wav" in warnings[0] and "8000 Hz" in warnings[0]


def test_workers_give_the_same_results_as_one_process(trained_run, wav_factory, tmp_path):
    for i in range(3):
        wav_factory(f"in/{i}.wav", sine(200 + 100 * i, 6, 22050), 22050)
    wav_factory("in/short.wav", sine(440, 1, 22050))
    outs = []
    for workers in (0, 2):
        r, results = predict_json(tmp_path / "in", "--checkpoint", trained_run / "best.pt", "--workers", workers)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "short.wav" in r.stderr
        outs.append(results)
    assert [x["path"] for x in outs[0]] == [x["path"] for x in outs[1]] and len(outs[0]) == 4
    for a, b in zip(*outs):
        assert a == b if "error" in a else a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_top_k_below_one_is_refused_in_one_line(tmp_path):
    r = run_script("predict.py", tmp_path / "x.wav", "--top-k", 0)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and lines == ["error: --top-k 0: must be at least 1"]


def test_bench_unknown_section_is_one_line():
    r = run_script("bench.py", "--section", "nonsense")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "'nonsense'" in r.stderr


def test_inference_imports_no_training_code_and_groups_no_splits():
    """A user who only classifies songs loads no training module; and groups.py, which splits.py
    uses, imports nothing of splits.py (the import cycle of issue 18 is gone)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import json, sys; import predict; print(json.dumps([m for m in sys.modules if m.startswith('genreclf.')]));"
            "import genreclf.groups; print('genreclf.splits' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded, splits_too = r.stdout.splitlines()
    training = {f"genreclf.{m}" for m in ("train", "experiment", "recipe", "data", "rundata", "metrics", "extract", "splits")}
    assert "genreclf.predict" in loaded and not training & set(json.loads(loaded))
    assert splits_too == "False"


def test_json_and_csv_list_failed_files_with_their_error(trained_run, wav_factory, tmp_path):
    from genreclf.predict_output import as_csv

    good = wav_factory("in/a.wav", sine(440, 9, 22050))
    short = wav_factory("in/short.wav", sine(440, 2, 22050))
    r, results = predict_json(good, short, tmp_path / "nope.wav", "--checkpoint", trained_run, "--workers", 0)  # a run folder
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [res["path"] for res in results] == [str(tmp_path / "nope.wav"), str(good), str(short)]
    assert results[0] == {"path": str(tmp_path / "nope.wav"), "error": "no such file or folder"}
    assert results[2] == {"path": str(short), "error": "2.00 s of sound is shorter than one 4 s segment"}  # the 4 s set, not 3.99
    assert "probabilities" in results[1] and len(results[1]["timeline"]) == 2
    genres = list(results[1]["probabilities"])
    rows = list(csv.DictReader(io.StringIO(as_csv(results, genres, "probabilities"))))  # --format csv --timeline
    assert [row["path"] for row in rows] == [str(tmp_path / "nope.wav"), str(good), str(good), str(short)]
    assert rows[1]["start"] == "0.0" and rows[1]["error"] == "" and float(rows[1][rows[1]["top"]]) > 0
    assert rows[3]["error"].startswith("2.00 s of sound is shorter") and rows[3]["top"] == "" and rows[3]["start"] == ""
    per_file = list(csv.DictReader(io.StringIO(as_csv([{k: v for k, v in res.items() if k != "timeline"} for res in results],
                                                      genres, "probabilities"))))
    assert [row["error"] != "" for row in per_file] == [True, False, True] and per_file[1]["duration"] == "9.0"


def test_plot_draws_one_file_and_refuses_the_rest_in_one_line(trained_run, wav_factory, tmp_path):
    from genreclf.predict_output import check_plot_target

    one = wav_factory("in/a.wav", sine(440, 9, 22050))
    wav_factory("in/b.wav", sine(330, 9, 22050))
    r = run_script("predict.py", one, "--checkpoint", trained_run / "best.pt", "--plot", tmp_path / "out" / "a.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_script("predict.py", tmp_path / "in", "--plot", tmp_path / "x.png")  # refused before the model loads
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines == ["error: --plot draws one file's timeline, and 2 files were given or found: pass one file"]
    (tmp_path / "file").write_text("")
    for target, words in ((tmp_path / "file" / "x.png", "is a file, not a folder"), (tmp_path / "x.jpg", "name a .png"),
                          (tmp_path / "out", "a folder; name the picture's file")):
        with pytest.raises(UserError, match=words):
            check_plot_target(target, 1)


def test_checkpoint_choice(wav_factory, tmp_path):
    from genreclf import pretrained
    from genreclf.predict import choose_checkpoint

    if pretrained.FILE.exists():  # without --checkpoint: the shipped model, whatever runs/ holds
        path, note = choose_checkpoint(None)
        assert path == pretrained.FILE and "using the shipped model" in note
    runs = tmp_path / "runs"
    with pytest.raises(UserError, match="--checkpoint last: no run under"):
        choose_checkpoint("last", runs=runs)
    for age, name in enumerate(("old", "new")):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pt").write_bytes(b"")
        os.utime(runs / name / "best.pt", (1e9 + age, 1e9 + age))  # "new" is the newer, whatever the clock's grain
    assert choose_checkpoint("last", runs=runs)[0] == runs / "new" / "best.pt"
    assert choose_checkpoint(str(runs / "old"), runs=runs) == (runs / "old" / "best.pt", None)  # a run folder
    song = wav_factory("song.wav", sine(440, 5, 22050))
    (tmp_path / "text.wav").write_text("not audio")  # judged by its name: what it is not, whatever it holds
    (tmp_path / "diverged").mkdir()
    (tmp_path / "diverged" / "metrics.json").write_text('{"diverged": true}')
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text('{"members": ["runs/a", "runs/b"]}')
    for given, words in ((runs.parent, "a folder without best.pt"), (song, "not a checkpoint: .wav is an audio extension"),
                         (tmp_path / "text.wav", "not a checkpoint: .wav is an audio extension"),
                         (tmp_path / "diverged", "this run diverged and kept no model"),
                         (tmp_path / "ens", "an ensemble, which has no single model .* such as runs/a"),
                         (tmp_path / "gone.pt", "no such file or folder")):
        with pytest.raises(UserError, match=words):
            choose_checkpoint(str(given), runs=runs)
    r = run_script("predict.py", song, "--checkpoint", song)  # the WAV as --checkpoint: one line, no exception name
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "not a checkpoint" in r.stderr


def test_silent_segments_have_no_genre_and_stay_out_of_the_mean(tmp_path):
    from genreclf.plots import save_timeline
    from genreclf.predict_output import as_csv, result

    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    out = {"duration": 12.0, "segments": [(0, 4), (4, 8), (8, 12)], "probs": probs, "silent": np.array([False, True, False])}
    r = result(tmp_path / "f.wav", out, ["jazz", "metal"], 2, timeline=True)
    assert r["probabilities"] == pytest.approx({"jazz": 0.55, "metal": 0.45})  # segments 1 and 3 only
    assert r["timeline"][1] == {"start": 4, "end": 8, "top": "silence", "probabilities": None, "silent": True}
    assert r["timeline"][2]["top"] == "metal" and r["timeline"][2]["silent"] is False
    rows = list(csv.DictReader(io.StringIO(as_csv([r], ["jazz", "metal"], "probabilities"))))
    assert [row["top"] for row in rows] == ["jazz", "silence", "metal"] and rows[1]["jazz"] == ""
    save_timeline(r, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FakeRunner:
    """A runner of two genres that needs no model: every file is one 4 s segment, jazz 0.3, metal
    0.7; a file named stop.wav is where Ctrl+C is pressed."""
    genres = ["jazz", "metal"]

    def prepare(self, path, on_warning=None):
        if path.name == "stop.wav":
            raise KeyboardInterrupt
        return path

    def finish(self, prepared):
        return {"duration": 4.0, "segments": [(0.0, 4.0)], "probs": np.array([[0.3, 0.7]])}


@pytest.fixture
def predict_main(monkeypatch, tmp_path):
    """predict.py's main() in this process on FakeRunner: run(*argv) -> exit code; empty .wav
    files named in argv are made under tmp_path (nothing decodes them)."""
    import predict as script

    monkeypatch.setattr(script, "_runner", lambda args, device: (FakeRunner(), "probabilities"))
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        for a in argv:
            if a.endswith(".wav"):
                (tmp_path / a).touch()
        monkeypatch.setattr("sys.argv", ["predict.py", *argv])
        return script.main()
    return run


def test_ctrl_c_writes_the_finished_files_and_exits_130(predict_main, tmp_path, capsys):
    code = predict_main("a.wav", "stop.wav", "c.wav", "--workers", "0", "--format", "json", "--output", "out.json")
    assert code == 130
    assert [r["path"] for r in json.loads((tmp_path / "out.json").read_text())] == ["a.wav"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted: 1 of 3 files done; their records are in out.json"


def test_plot_is_saved_before_the_output_is_printed(predict_main, tmp_path, monkeypatch):
    class ClosedPipe:  # `| head` that has gone: the first write fails
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            pass
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    with pytest.raises(BrokenPipeError):
        predict_main("a.wav", "--timeline", "--plot", "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_cli_exits_quietly_when_the_reader_of_stdout_is_gone():
    import subprocess
    import sys

    from conftest import REPO

    read, write = os.pipe()
    os.close(read)  # as `| head` does once it has its lines
    code = "from genreclf.errors import run_cli; run_cli(lambda: print('x' * 100000))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert r.returncode == 141 and r.stderr == ""


def test_output_that_would_replace_audio_or_cannot_be_written_is_refused_before_any_work(predict_main, tmp_path,
                                                                                         monkeypatch):
    import predict as script
    from genreclf.predict_output import check_output_target

    monkeypatch.setattr(script, "_runner", lambda args, device: pytest.fail("the work started"))
    (tmp_path / "song.ogg").touch()
    (tmp_path / "file").touch()
    (tmp_path / "folder").mkdir()
    for target, words in (("song.ogg", "--output song.ogg: is one of the input files"),
                          ("other.wav", "--output other.wav: .wav is an audio extension"),
                          ("x.m4a", ".m4a is an audio extension"),
                          ("folder", "--output folder: a folder; name a file"),
                          ("file/x.csv", "file is a file, not a folder")):
        with pytest.raises(UserError, match=words):
            predict_main("song.ogg", "--output", target)
    if os.path.isdir("/proc/self"):  # exists, takes no new file: not "no such file or directory"
        with pytest.raises(UserError, match="its folder /proc cannot be written .it takes no new files"):
            check_output_target("/proc/x.csv", [])


def test_flags_that_cannot_take_effect_are_refused_or_noted(capsys):
    from predict import _parse

    for flag in (["--checkpoint", "runs/x"], ["--hop", "2"]):
        with pytest.raises(UserError, match=f"^{flag[0]}: --musicnn-tags runs musicnn's own tagger"):
            _parse(["x.wav", "--musicnn-tags", *flag])
    assert _parse(["--musicnn-tags", "MTT_musicnn", "x.wav"]).musicnn_model == "MTT_musicnn"  # the old spelling
    assert capsys.readouterr().err == ""
    _parse(["x.wav", "--musicnn-model", "MTT_musicnn"])
    assert capsys.readouterr().err.startswith("note: --musicnn-model MTT_musicnn is used with --musicnn-tags only")


def test_hop_zero_is_refused_as_any_hop_outside_the_segment():
    from genreclf.featurizers import MelFeatures
    from genreclf.features import MelSpec
    from genreclf.predict import Classifier
    from model import build

    spec = MelSpec(segment=1.0, n_mels=32)
    model = build("baseline", n_classes=2, input_shape={"mel": (32, spec.segment_frames)})
    ckpt = {"genres": ["a", "b"], "features": {"mel": MelFeatures(spec).key()}}
    assert Classifier(model, ckpt).hop == 0.0 and Classifier(model, ckpt, hop=1.0).hop == 1.0  # at most the segment
    for hop in (0.0, -1.0, 1.5):
        with pytest.raises(UserError, match=f"--hop {hop:g}: must be more than 0 and at most the 1 s segment"):
            Classifier(model, ckpt, hop=hop)


def test_a_named_checkpoint_that_cannot_be_read_is_a_checkpoint_line(tmp_path):
    from argparse import Namespace

    from predict import _runner

    (tmp_path / "README.md").write_text("# not a checkpoint")
    args = Namespace(musicnn_tags=False, checkpoint=str(tmp_path / "README.md"), hop=None)
    with pytest.raises(UserError, match=r"^--checkpoint .*README.md: not a readable checkpoint"):
        _runner(args, "cpu")


def test_table_escapes_control_characters_in_names():
    from genreclf.predict_output import as_table, result

    out = {"duration": 4.0, "segments": [(0.0, 4.0)], "probs": np.array([[0.3, 0.7]])}
    table = as_table([result("a\nb\x1b.wav", out, ["jazz", "metal"], 1, timeline=False)], "probabilities")
    assert table == "a\\nb\\x1b.wav  (4.0 s)  metal 0.70"

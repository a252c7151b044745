import io
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from genreclf import GENRES_8, GENRES_10
from genreclf.errors import UserError
from genreclf.groups import groups_for, overlap_report
from genreclf.splits import LISTS, clip_id, genre_of, load_split, make_split, read_list, write_split


@pytest.fixture
def full_gtzan(tmp_path):
    """A data dir with every listed clip as a one-sample WAV: splits look at names and headers."""
    names = set(read_list(LISTS / "train.txt") + read_list(LISTS / "test.txt"))
    for part in ("train", "valid", "test"):
        names |= set(read_list(LISTS / "fault_filtered" / f"{part}_filtered.txt"))
    header = io.BytesIO()
    sf.write(header, np.zeros(1, np.float32), 22050, format="WAV")
    for n in names:
        p = tmp_path / "wav" / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(header.getvalue())
    return tmp_path


def test_course_split_counts_and_disjoint(full_gtzan):
    parts, missing = make_split(full_gtzan, "course", val_per_class=5, seed=0)
    assert missing == 0
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (540, 40, 150)
    assert Counter(genre_of(p) for p in parts["val"]) == {g: 5 for g in GENRES_8}
    sets = [set(parts[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    # val is carved as whole artists (carved clip by clip, 26 of its 40 clips shared an artist with train)
    ids = [clip_id(p) for part in parts.values() for p in part]
    groups = dict(zip(ids, groups_for(ids)[0]))
    artists = {k: {groups[clip_id(p)] for p in parts[k]} for k in ("train", "val", "test")}
    assert not artists["train"] & artists["val"] and not (artists["train"] | artists["val"]) & artists["test"]
    assert overlap_report(parts, groups).endswith("shared between parts: 0 (train/val 0, train/test 0, val/test 0)")


def test_course_split_deterministic_and_seeded(full_gtzan):
    a, _ = make_split(full_gtzan, "course", seed=3)
    b, _ = make_split(full_gtzan, "course", seed=3)
    c, _ = make_split(full_gtzan, "course", seed=4)
    assert a == b
    assert a["val"] != c["val"] and a["test"] == c["test"]


def test_rerun_in_place_pools_train_and_val(full_gtzan, tmp_path_factory):
    """Writing the output over the lists it came from must not shrink train on every rerun."""
    lists = tmp_path_factory.mktemp("lists")
    (lists / "train.txt").write_text((LISTS / "train.txt").read_text())
    (lists / "test.txt").write_text((LISTS / "test.txt").read_text())
    first, _ = make_split(full_gtzan, "course", seed=0, lists=lists)
    write_split(first, lists, {})
    again, _ = make_split(full_gtzan, "course", seed=0, lists=lists)
    assert again == first


def test_fault_filtered(full_gtzan):
    parts, missing = make_split(full_gtzan, "fault-filtered")
    assert missing == 0
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (443, 197, 290)
    assert {genre_of(p) for p in parts["test"]} == set(GENRES_10)


def test_missing_files_are_counted_and_skipped(full_gtzan):
    (full_gtzan / "wav" / "jazz" / "jazz.00054.wav").unlink()
    parts, missing = make_split(full_gtzan, "course")
    assert missing == 1
    assert "jazz/jazz.00054.wav" not in parts["train"] + parts["val"]


def test_random_split_stratified(full_gtzan, tmp_path):
    parts, _ = make_split(full_gtzan, "random", genres=list(GENRES_8), val_per_class=5, test_per_class=10, seed=1)
    for name, n in (("val", 5), ("test", 10)):
        assert Counter(genre_of(p) for p in parts[name]) == {g: n for g in GENRES_8}
    assert not set(parts["train"]) & set(parts["test"])
    write_split(parts, tmp_path / "out", {"seed": 1})
    assert load_split(tmp_path / "out") == parts


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        make_split(tmp_path / "nope", "random")
    (tmp_path / "wav" / "jazz").mkdir(parents=True)
    with pytest.raises(UserError, match="no audio files"):
        make_split(tmp_path, "random", genres=["jazz"])
    with pytest.raises(UserError, match="unknown split"):
        make_split(tmp_path, "bogus")


def test_other_splits_refuse_to_overwrite_the_shipped_course_lists(full_gtzan, tmp_path_factory, monkeypatch):
    """With the default data dir, the work dir is gtzan/ itself, so split_data.py --split random
    would write over gtzan/split/train.txt: refused in one line. The course split may (it pools)."""
    import genreclf.splits as splits
    lists = tmp_path_factory.mktemp("shipped")
    for name in ("train.txt", "test.txt"):
        (lists / name).write_text((LISTS / name).read_text())
    monkeypatch.setattr(splits, "LISTS", lists)
    before = (lists / "train.txt").read_text()
    parts, _ = make_split(full_gtzan, "random", seed=0)
    for meta in ({"split": "random"}, {"split": "course", "genres": ["jazz", "metal"]}):
        with pytest.raises(UserError, match="replace the shipped course lists"):
            write_split(parts, lists, meta)
    assert (lists / "train.txt").read_text() == before and not (lists / "val.txt").exists()
    course, _ = make_split(full_gtzan, "course", seed=0, lists=lists)
    write_split(course, lists, {"split": "course", "genres": list(GENRES_8)})
    assert (lists / "val.txt").exists()


def test_whole_artist_carving_stops_nearest_the_target():
    """Val wants 5 clips of a genre whose artists have 4, 14 and 20: it takes the 4, not 4 + 14."""
    import numpy as np

    from genreclf.groups import grouped_random_split

    sizes = {"small": 4, "mid": 14, "big": 20}
    paths = [f"jazz/{a}.{i}.wav" for a, n in sizes.items() for i in range(n)]
    groups = {clip_id(p): p.split("/")[1].split(".")[0] for p in paths}
    for seed in range(5):
        parts, _ = grouped_random_split(paths, lambda n: 0, lambda n: 5, groups, np.random.default_rng(seed))
        assert len(parts["val"]) == 4 and len(parts["train"]) == 34, seed


def test_unknown_genres_are_named_with_the_ones_found(tmp_path):
    for g in ("Klassik", "metal"):
        (tmp_path / "wav" / g).mkdir(parents=True)
    with pytest.raises(UserError) as e:
        make_split(tmp_path, "random", genres=["heavy metal", "klassik", "metal"])
    assert "genres heavy metal, klassik: no such folder" in str(e.value)
    assert "the genres there are Klassik, metal (names are case-sensitive" in str(e.value)

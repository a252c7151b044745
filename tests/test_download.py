"""split_data.py --download against an HTTP server on 127.0.0.1 serving an archive we build."""
import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from genreclf import download
from genreclf.errors import UserError


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (the standard handler ignores Range)."""

    def log_message(self, *args):
        pass

    drop_after = None  # bytes sent before the connection is cut (a flaky mirror), or None
    ranges = []  # the Range headers received, for the resume tests

    def do_GET(self):
        RangeHandler.ranges.append(self.headers.get("Range"))
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.drop_after is not None:
            self.wfile.write(data[start:start + self.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees the transfer end early
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("genres/jazz/jazz.00000.au", "genres/pop/pop.00001.au"):
            payload = name.encode() * 500
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (root / "genres.tar.gz").write_bytes(buf.getvalue())
    RangeHandler.drop_after, RangeHandler.ranges = None, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/genres.tar.gz", buf.getvalue()
    httpd.shutdown()
    RangeHandler.drop_after = None


def test_download_checks_and_unpacks(server, tmp_path):
    url, blob = server
    n = download.download_gtzan(tmp_path / "gtzan", [url], hashlib.sha256(blob).hexdigest())
    assert n == 2
    assert (tmp_path / "gtzan" / "wav" / "jazz" / "jazz.00000.au").read_bytes().startswith(b"genres/jazz")


def test_broken_transfer_resumes(server, tmp_path):
    url, blob = server
    dest = tmp_path / "genres.tar.gz"
    (tmp_path / "genres.tar.gz.part").write_bytes(blob[:100])  # what a broken transfer leaves
    download.fetch(url, dest, hashlib.sha256(blob).hexdigest())
    assert dest.read_bytes() == blob and not (tmp_path / "genres.tar.gz.part").exists()


def test_bad_checksum_deletes_partial_and_says_so(server, tmp_path):
    url, _ = server
    with pytest.raises(UserError, match="checksum mismatch"):
        download.fetch(url, tmp_path / "g.tar.gz", "0" * 64)
    assert not (tmp_path / "g.tar.gz.part").exists()


def test_unreachable_host_is_one_line_with_manual_hint(tmp_path):
    with pytest.raises(UserError) as e:
        download.fetch("http://127.0.0.1:9/genres.tar.gz", tmp_path / "genres.tar.gz", "0" * 64, timeout=5)
    msg = str(e.value)
    assert "cannot reach" in msg and str(tmp_path / "genres.tar.gz") in msg and "\n" not in msg


DEAD = "http://127.0.0.1:9/genres.tar.gz"  # port 9 (discard): nothing listens, connection refused


def test_dead_first_mirror_then_good_second(server, tmp_path):
    url, blob = server
    lines = []
    n = download.download_gtzan(tmp_path / "gtzan", [DEAD, url], hashlib.sha256(blob).hexdigest(), report=lines.append)
    assert n == 2 and (tmp_path / "gtzan" / "wav" / "pop" / "pop.00001.au").exists()
    assert lines == [f"mirror 1 of 2 failed: cannot reach {DEAD} ([Errno 111] Connection refused)"]
    lines.clear()  # a second run is cheap: nothing fetched, one line
    assert download.download_gtzan(tmp_path / "gtzan", [DEAD, url], hashlib.sha256(blob).hexdigest(), report=lines.append) == 2
    assert len(lines) == 1 and "already unpacked" in lines[0]


def test_all_mirrors_dead_is_one_line(tmp_path):
    lines = []
    with pytest.raises(UserError) as e:
        download.fetch_any([DEAD, DEAD], tmp_path / "genres.tar.gz", "0" * 64, timeout=5, report=lines.append)
    assert len(lines) == 2 and "none of the 2 mirrors worked" in str(e.value) and "\n" not in str(e.value)


def test_dropped_connection_is_one_line_and_the_rerun_resumes(server, tmp_path):
    url, blob = server
    digest = hashlib.sha256(blob).hexdigest()
    RangeHandler.drop_after = len(blob) // 3
    with pytest.raises(UserError) as e:
        download.download_gtzan(tmp_path / "gtzan", [url], digest, report=lambda line: None)
    assert "transfer broke off after" in str(e.value) and "\n" not in str(e.value)
    part = tmp_path / "gtzan" / "genres.tar.gz.part"
    assert part.read_bytes() == blob[: len(blob) // 3]  # kept for the rerun
    RangeHandler.drop_after = None
    assert download.download_gtzan(tmp_path / "gtzan", [url], digest) == 2
    assert RangeHandler.ranges[-1] == f"bytes={len(blob) // 3}-"  # resumed, not restarted
    assert (tmp_path / "gtzan" / "genres.tar.gz").read_bytes() == blob


def test_a_killed_unpack_is_repaired_by_the_rerun(server, tmp_path, monkeypatch):
    url, blob = server
    digest = hashlib.sha256(blob).hexdigest()
    calls = []
    real_copy = download.shutil.copyfileobj

    def killed_after_one(src, dst):  # Ctrl+C (or a kill) after the first file
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        real_copy(src, dst)
    monkeypatch.setattr(download.shutil, "copyfileobj", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        download.download_gtzan(tmp_path / "gtzan", [url], digest)
    assert not (tmp_path / "gtzan" / "wav").exists() and (tmp_path / "gtzan" / ".wav.partial").exists()
    monkeypatch.setattr(download.shutil, "copyfileobj", real_copy)
    assert download.download_gtzan(tmp_path / "gtzan", [url], digest) == 2
    assert sorted(p.name for p in (tmp_path / "gtzan" / "wav").rglob("*.au")) == ["jazz.00000.au", "pop.00001.au"]
    assert not (tmp_path / "gtzan" / ".wav.partial").exists()


def test_someone_elses_wav_folder_is_used_as_is(tmp_path):
    (tmp_path / "wav" / "jazz").mkdir(parents=True)
    (tmp_path / "wav" / "jazz" / "jazz.00000.wav").write_bytes(b"x")
    lines = []
    assert download.download_gtzan(tmp_path, [DEAD], "0" * 64, report=lines.append) == 1
    assert len(lines) == 1 and "using it as is" in lines[0]

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

    def do_GET(self):
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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/genres.tar.gz", buf.getvalue()
    httpd.shutdown()


def test_download_checks_and_unpacks(server, tmp_path):
    url, blob = server
    n = download.download_gtzan(tmp_path / "gtzan", url, hashlib.sha256(blob).hexdigest())
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

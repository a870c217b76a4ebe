"""The model registry and downloads: add/list/info/remove/verify/download through the real CLI, against a
real https server on 127.0.0.1 (self-signed certificate made by openssl), and every way it can go wrong."""
from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import make_model_file, run_cli
from safetensors.torch import load_file, save_file

from AttentionUNetSegLib.models.model_file import METADATA_KEY, read_metadata
from AttentionUNetSegLib.errors import InvalidOptionError, ModelFileError
from AttentionUNetSegLib.models.registry import default_model, list_models, resolve_model_path
from AttentionUNetSegLib.models.user_registry import add_url
from AttentionUNetSegLib.models.user_folders import HOME_VARIABLE, user_cache_dir, user_registry


class ModelServer:
    """An https server on 127.0.0.1 serving `files`; special paths misbehave on purpose."""

    def __init__(self, files: Dict[str, bytes], cert: Path, key: Path) -> None:
        self.files = files
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                if name == "to-http":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{served.port}/model.safetensors")
                    self.end_headers()
                    return
                body = served.files.get(name.removeprefix("truncated/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name.startswith("truncated/"):  # the connection breaks half-way
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A self-signed certificate for 127.0.0.1, made by the openssl command-line tool."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh per-user registry and cache for this test (the CLI subprocesses inherit it)."""
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_model_file(tmp_path_factory.mktemp("served") / "served.safetensors").read_bytes()


@pytest.fixture
def server(certificate: tuple, model_bytes: bytes, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    source = tmp_path / "source.safetensors"
    source.write_bytes(model_bytes)
    incomplete = tmp_path / "no_classes.safetensors"
    _without_field(source, incomplete, "classes")
    running = ModelServer({"model.safetensors": model_bytes, "no-classes.safetensors": incomplete.read_bytes()},
                          *certificate)
    running.thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test's own certificate, as openssl does
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def _without_field(source: Path, target: Path, field: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        header = json.loads(handle.metadata()[METADATA_KEY])
    del header[field]
    save_file(load_file(str(source)), str(target), metadata={METADATA_KEY: json.dumps(header)})
    return target


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_files(home: Path) -> list:
    folder = home / "cache"
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_add_file_list_verify_remove_through_the_cli(home: Path, tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "mine.safetensors")
    added = run_cli(["models", "add", "mine", "--file", model, "--description", "my test model"])
    assert added.returncode == 0, added.stderr
    listed = json.loads(run_cli(["models", "list", "--json"]).stdout)
    mine = next(e for e in listed if e["name"] == "mine")
    assert mine["sha256"] == _sha(model.read_bytes())
    assert mine["file"] == str(model.resolve())
    assert mine["classes"] == read_metadata(model).class_names
    assert not mine["bundled"]
    assert any(e["default"] and e["bundled"] for e in listed)
    assert resolve_model_path("mine") == model.resolve()
    assert "my test model" in run_cli(["models", "list"]).stdout

    info = run_cli(["models", "info", "mine"])
    assert info.returncode == 0
    assert "classes:" in info.stdout
    assert run_cli(["models", "verify"]).returncode == 0

    model.write_bytes(model.read_bytes()[:-8] + b"tampered")  # the file changes behind the registry's back
    verify = run_cli(["models", "verify", "mine"])
    assert verify.returncode == 1
    assert "checksum mismatch" in verify.stdout
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        resolve_model_path("mine")

    removed = run_cli(["models", "remove", "mine"])
    assert removed.returncode == 0
    assert model.exists()  # a --file model's own file stays
    assert "mine" not in {e.name for e in list_models()}


def test_add_url_downloads_verifies_and_caches(home: Path, server: ModelServer, model_bytes: bytes) -> None:
    entry = add_url("remote", server.url("model.safetensors"), _sha(model_bytes), progress=None)
    assert entry.file == user_cache_dir() / "models" / f"{_sha(model_bytes)}.safetensors"
    assert entry.file.read_bytes() == model_bytes
    assert entry.classes
    assert resolve_model_path("remote") == entry.file
    stored = json.loads(user_registry().read_text())["models"]
    assert stored == [{"name": "remote", "sha256": _sha(model_bytes), "description": entry.description,
                       "classes": list(entry.classes), "url": server.url("model.safetensors")}]

    entry.file.unlink()  # the cache was cleared: nothing downloads by itself ...
    with pytest.raises(ModelFileError, match="models download remote"):
        resolve_model_path("remote")
    fetched = run_cli(["models", "download", "remote"])  # ... until the user asks
    assert fetched.returncode == 0, fetched.stderr
    assert "download" in fetched.stderr
    assert entry.file.read_bytes() == model_bytes

    assert run_cli(["models", "remove", "remote"]).returncode == 0
    assert not entry.file.exists()
    assert _cache_files(home) == []


def test_a_download_reports_its_bytes(home: Path, server: ModelServer, model_bytes: bytes) -> None:
    reports: List[Tuple[int, Optional[int]]] = []
    entry = add_url("remote", server.url("model.safetensors"), _sha(model_bytes),
                    progress=lambda received, total: reports.append((received, total)))
    assert entry.file.read_bytes() == model_bytes
    assert reports[-1] == (len(model_bytes), len(model_bytes))
    assert [received for received, _ in reports] == sorted(received for received, _ in reports)


def test_checksum_mismatch_keeps_nothing(home: Path, server: ModelServer) -> None:
    result = run_cli(["models", "add", "remote", "--url", server.url("model.safetensors"), "--sha256", "a" * 64])
    assert result.returncode == 1
    assert "sha256" in result.stderr
    assert "nothing was kept" in result.stderr
    assert _cache_files(home) == []
    assert not user_registry().exists()


def test_interrupted_and_failed_downloads_leave_the_cache_valid(home: Path, server: ModelServer,
                                                                model_bytes: bytes) -> None:
    good = add_url("good", server.url("model.safetensors"), _sha(model_bytes))
    registry_before = user_registry().read_text()
    for url, why in [(server.url("truncated/model.safetensors"), "broke off|IncompleteRead|incomplete"),
                     (server.url("nothing-here.safetensors"), "Not Found|404")]:
        with pytest.raises(ModelFileError, match=why):
            add_url("other", url, "b" * 64)
        assert _cache_files(home) == [good.file.name]  # no partial or temporary file
        assert user_registry().read_text() == registry_before
    closed = server.url("model.safetensors").replace(str(server.port), str(_free_port()))
    result = run_cli(["models", "add", "other", "--url", closed, "--sha256", "b" * 64])
    assert result.returncode == 1
    assert "failed" in result.stderr
    assert "refused" in result.stderr.lower()
    assert resolve_model_path("good") == good.file  # what was there still verifies


def test_only_https_urls_are_accepted(home: Path, server: ModelServer, model_bytes: bytes) -> None:
    for url in (f"http://127.0.0.1:{server.port}/model.safetensors", "ftp://example.org/m.safetensors",
                "file:///tmp/m.safetensors", "https:///no-host"):
        result = run_cli(["models", "add", "plain", "--url", url, "--sha256", _sha(model_bytes)])
        assert result.returncode == 1, url
        assert "is not an https URL" in result.stderr, url
    with pytest.raises(InvalidOptionError, match="not an https URL"):  # nor through a redirect to http
        add_url("redirected", server.url("to-http"), _sha(model_bytes))
    assert _cache_files(home) == []
    assert not user_registry().exists()


def test_models_without_classes_or_spacing_are_refused(home: Path, server: ModelServer, tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "complete.safetensors")
    for field in ("classes", "spacing_mm"):
        broken = _without_field(model, tmp_path / f"no_{field}.safetensors", field)
        result = run_cli(["models", "add", f"no-{field}", "--file", broken])
        assert result.returncode == 1
        assert field in result.stderr
        assert "cannot be used" in result.stderr
    served = server.files["no-classes.safetensors"]
    with pytest.raises(ModelFileError, match="classes"):
        add_url("remote-no-classes", server.url("no-classes.safetensors"), _sha(served))
    # the download was removed again
    assert _cache_files(home) == []
    assert not user_registry().exists()


def test_names_are_unique(home: Path, tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "m.safetensors")
    assert run_cli(["models", "add", "twin", "--file", model]).returncode == 0
    again = run_cli(["models", "add", "twin", "--file", model])
    assert again.returncode == 1
    assert "already registered" in again.stderr
    bundled = run_cli(["models", "add", default_model().name, "--file", model])
    assert bundled.returncode == 1
    assert "already registered" in bundled.stderr
    assert run_cli(["models", "remove", default_model().name]).returncode == 1
    for bad in ("../escape", "x.safetensors", "-flag", ""):
        assert run_cli(["models", "add", bad, "--file", model]).returncode != 0, bad

    stored = json.loads(user_registry().read_text())
    stored["models"] *= 2  # a hand-edited registry with the same name twice
    user_registry().write_text(json.dumps(stored))
    listed = run_cli(["models", "list"])
    assert listed.returncode == 1
    assert "occur more than once" in listed.stderr
    assert "twin" in listed.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

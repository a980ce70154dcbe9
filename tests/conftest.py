from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_MEDIA = SHARED / "media"
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_MEDIA / "speaker_a.mp4").exists():
        pytest.skip("../shared/media is not present")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def conformance() -> Path:
    if not (CONFORMANCE / "wav2lip" / "wav2lip_state_dict.json").exists():
        pytest.skip("../shared/conformance is not present")
    return CONFORMANCE


@pytest.fixture()
def extra_backend(monkeypatch) -> str:
    """A backend name only this test's in-process engine offers (listed by Capabilities, never
    rendered with): the bridges must show it although none of them can know it."""
    import sys
    import types

    from dubline.stages import backends
    from dubline.stages.backends.base import BackendInfo

    class ListedOnly:
        info = BackendInfo("lipsync_extra", "a backend no bridge can know")

        def preflight(self, options):
            raise AssertionError("lipsync_extra is listed, never rendered with")

        prepare = patches = preflight

    module = types.ModuleType("dubline_test_extra_backend")
    module.BACKEND = ListedOnly()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(backends.MANIFEST, "lipsync_extra", module.__name__)
    return "lipsync_extra"


@pytest.fixture()
def in_process_engine(tmp_path: Path):
    """An engine in this process (so monkeypatches reach it): its gRPC address."""
    from dubline.apps.server.app import create_server

    address = f"unix:{tmp_path / 'engine.sock'}"
    server, _ = create_server(address, cache_root=tmp_path / "cache", work_dir=tmp_path / "work")
    server.start()
    yield address
    server.stop(1)


@pytest.fixture()
def fake_engine(tmp_path: Path, monkeypatch):
    """``fake_engine(**options)`` starts an engine in this process with the fake backend and
    ``FakeAnalyses(**options)`` as its resident analyses, the test's folder as its media root, and
    returns a client to it; both are closed after the test."""
    from dubline.apps.server import servicer
    from dubline.apps.server.app import create_server
    from dubline_client import EngineClient
    from fakes import FakeAnalyses, register_fake_backend

    started = []

    def start(**options):
        register_fake_backend(monkeypatch)
        monkeypatch.setattr(servicer, "ResidentAnalyses", lambda *args, **kwargs: FakeAnalyses(**options))
        address = f"unix:{tmp_path / 'engine.sock'}"
        server, _ = create_server(address, media_roots=[tmp_path], cache_root=tmp_path / "cache",
                                  work_dir=tmp_path / "work")
        server.start()
        client = EngineClient(address, timeout=60)
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        client.close()
        server.stop(1)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cert, key), made with the openssl command."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


#: The bearer token of ``tls_engine``.
TLS_ENGINE_TOKEN = "a-token-of-sixteen-plus"


@pytest.fixture()
def tls_engine(certificate, tmp_path: Path) -> str:
    """An engine in this process on 127.0.0.1 over TLS (``certificate``) with ``TLS_ENGINE_TOKEN``:
    its address, as an engine on another machine is reached."""
    from dubline.apps.server.app import create_server
    from dubline.apps.server.security import read_tls

    server, port = create_server("127.0.0.1:0", token=TLS_ENGINE_TOKEN, tls=read_tls(*certificate),
                                 cache_root=tmp_path / "tls-cache")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(1)


def set_cpu_budget(monkeypatch, budget: str | None, needs_cores: bool = False) -> None:
    """Run the test as a process kept to ``budget`` CPUs (None: the whole machine, skipped on a
    one-CPU machine when ``needs_cores``: there nothing is ever threaded)."""
    from dubline.core import cpus

    if budget is not None:
        monkeypatch.setenv(cpus.ENVIRONMENT, budget)
        return
    monkeypatch.delenv(cpus.ENVIRONMENT, raising=False)
    if needs_cores and cpus.machine_cpus() == 1:
        pytest.skip("one CPU here: nothing runs on a thread of its own")

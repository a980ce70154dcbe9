"""Finding the client library and the engine, free of ``bpy``.

The add-on needs grpcio + protobuf + ``dubline_client``. Inside the ``bpy`` wheel's environment or
a 4.2+ extension with bundled wheels they import directly; a Blender that runs its own (or the
system's) Python gets the dubline environment's site-packages appended to ``sys.path``, found from
the ``dubline`` executable. Nothing here imports ``dubline_client`` at module import time, so the
add-on registers (and says what is missing) without it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from types import ModuleType

#: The engine's default address (``dubline serve`` without --listen).
DEFAULT_ADDRESS = "127.0.0.1:50917"


class EngineUnavailable(RuntimeError):
    """No engine answers and none could be started; the message says why."""


@dataclass(frozen=True)
class EngineSettings:
    address: str = DEFAULT_ADDRESS
    token: str = ""
    executable: str = ""
    auto_start: bool = True
    start_timeout: float = 90.0
    tls_ca: str = ""  # PEM of the engine's certificate authority: TLS to an engine on another machine
    tls_server_name: str = ""  # the name its certificate carries, when the address is not it

    def client(self, client_module: ModuleType, timeout: float):
        """An ``EngineClient`` for these settings (TLS when a certificate authority is set)."""
        return client_module.EngineClient(self.address, token=self.token or None, timeout=timeout,
                                          tls_ca=self.tls_ca or None, tls_server_name=self.tls_server_name or None)


def python_tag() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def site_packages_of(executable: str) -> str:
    """The site-packages of the virtual environment holding the ``dubline`` executable, for the
    Python that runs this code ('' when there is none; compiled grpcio only loads in the same
    minor version)."""
    if not executable:
        return ""
    path = os.path.realpath(shutil.which(executable) or executable)
    environment = os.path.dirname(os.path.dirname(path))  # <venv>/bin/dubline or <venv>\Scripts\dubline.exe
    for candidate in (
        os.path.join(environment, "lib", python_tag(), "site-packages"),
        os.path.join(environment, "Lib", "site-packages"),
    ):
        if os.path.isdir(candidate):
            return candidate
    return ""


def add_site_packages(path: str) -> None:
    """Append ``path`` (and its .pth entries, which editable installs use) after Blender's own
    paths, so Blender's bundled modules keep precedence."""
    if path and path not in sys.path:
        site.addsitedir(path)


def load_client(site_packages: str = "") -> ModuleType:
    """Import ``dubline_client``, appending ``site_packages`` first when given. Raises ImportError
    with a message naming what is missing."""
    add_site_packages(site_packages)
    try:
        return importlib.import_module("dubline_client")
    except ImportError as error:
        where = f" (looked in Blender's Python and {site_packages})" if site_packages else " (no dubline environment set)"
        raise ImportError(
            f"the dubline client library cannot be imported: {error}{where}. Set the dubline executable or the"
            f" dubline Python environment in the add-on preferences; it must be a {python_tag()} environment"
        ) from error


def client_problem(site_packages: str = "") -> str:
    """'' when the client imports, else the reason (for the panel)."""
    try:
        load_client(site_packages)
    except ImportError as error:
        return str(error)
    return ""


def is_local(address: str) -> bool:
    """Whether an engine at ``address`` would run on this machine (unix socket or loopback)."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


class LocalEngine:
    """At most one ``dubline serve`` subprocess started by the add-on, stopped on unregister."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._log_path = ""
        self._token_dir: tempfile.TemporaryDirectory | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> str:
        return self._log_path

    def ensure(self, client_module: ModuleType, settings: EngineSettings, stop: threading.Event | None = None) -> None:
        """Return when an engine answers at ``settings.address``; start one if allowed. Setting
        ``stop`` (Cancel) ends the wait for a starting engine, which keeps running for later jobs."""
        if _serving(client_module, settings, timeout=3.0):
            return
        if not settings.auto_start:
            raise EngineUnavailable(
                f"no dubline engine answers at {settings.address}; start one with `dubline serve --listen"
                f" {settings.address}` or turn on 'Start a local engine' in the add-on preferences"
            )
        if not is_local(settings.address):
            raise EngineUnavailable(f"no dubline engine answers at {settings.address}, and only a local address can be started here")
        executable = shutil.which(settings.executable) if settings.executable else None
        if not executable:
            raise EngineUnavailable(
                f"no dubline engine answers at {settings.address}, and the dubline executable"
                f" {settings.executable or '(not set)'!r} is not found; set it in the add-on preferences"
            )
        with self._lock:
            if not self.running:
                self._start(executable, settings)
            process = self._process
        deadline = time.monotonic() + settings.start_timeout
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                raise EngineUnavailable("cancelled while the engine was starting")
            if process.poll() is not None:
                raise EngineUnavailable(f"the dubline engine exited with status {process.returncode}: {self._log_tail()}")
            if _serving(client_module, settings, timeout=1.0):
                return
            time.sleep(0.25)
        raise EngineUnavailable(f"the dubline engine did not answer within {settings.start_timeout:g}s: {self._log_tail()}")

    def _start(self, executable: str, settings: EngineSettings) -> None:
        command = [executable, "serve", "--listen", settings.address]
        if settings.token:
            # The token goes in a private file, not on the command line where `ps` shows it.
            self._token_dir = tempfile.TemporaryDirectory(prefix="dubline-token-")
            token_file = os.path.join(self._token_dir.name, "token")
            with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
                handle.write(settings.token + "\n")
            command += ["--token-file", token_file]
        log = tempfile.NamedTemporaryFile(prefix="dubline-engine-", suffix=".log", delete=False)
        self._log_path = log.name
        # The engine's output goes to a file: a pipe nobody reads would block it once full.
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as handle:
                return " | ".join(handle.read().strip().splitlines()[-lines:]) or "(no output)"
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """Stop the engine this add-on started (SIGTERM lets it cancel jobs and clean up)."""
        with self._lock:
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self._token_dir is not None:
                self._token_dir.cleanup()
                self._token_dir = None
            if self._log_path:
                # Kept while the engine runs (and when it failed to start) for troubleshooting.
                try:
                    os.remove(self._log_path)
                except OSError:
                    pass
                self._log_path = ""


def _serving(client_module: ModuleType, settings: EngineSettings, timeout: float) -> bool:
    client = settings.client(client_module, timeout)
    try:
        return client.health(timeout=timeout) == "SERVING"
    except client_module.EngineError:
        return False
    finally:
        client.close()

"""The service as a child process on a loopback port: what the tests and the HTTP benchmark run against (and what
an application's own integration tests can use). Start and stop are bounded; the process is always stopped."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType


class ServiceStartError(RuntimeError):
    """The service did not become healthy in time; the message carries what it printed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``policy-engine serve ARGS --port <free port>`` on 127.0.0.1, waited for until ``/healthz`` answers.

    >>> with ServiceProcess(["--rules", "rules"]) as svc:
    ...     svc.request("GET", "/readyz")
    """

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, start_timeout: float = 30.0):
        self.port = free_port()
        self.args = [sys.executable, "-m", "policy_engine.cli", "serve", *args, "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        # what the service prints goes to a file, never a pipe nobody reads (a full pipe would stall it)
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        """Everything the service printed so far (its log)."""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceStartError(f"serve exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.request("GET", "/healthz", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ServiceStartError(f"serve did not answer /healthz within {self.start_timeout}s: {self.output()}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: status, headers (lower-case names), body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            sent = {"content-type": "application/json", **(headers or {})} if body is not None else dict(headers
                                                                                                         or {})
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (drain, then exit); SIGKILL to the whole process group if that takes longer than ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self._output.close()

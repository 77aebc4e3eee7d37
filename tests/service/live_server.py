"""Start the real service (``python -m marktrace.service serve``) on a free loopback port, for tests and benches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """One service process; ``start`` waits for /readyz, ``kill`` sends SIGKILL, ``stop`` SIGTERM."""

    def __init__(self, data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "MARKTRACE_DATA_DIR": str(self.data_dir),
            "MARKTRACE_DATABASE_URL": self.database_url,
            "MARKTRACE_READER": "marktrace.service.fake_reader:FakeReader",
            "MARKTRACE_WORKERS": "2",
            "MARKTRACE_QUEUE_SIZE": "6",
            **self.extra_env,
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "marktrace.service", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

"""A real ``scopeflow server`` in a subprocess, for end-to-end tests and benchmarks.

It is started as a command (``python -m scopeflow server``), never imported: this module knows
nothing of the service's code, only its command line and its health endpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

__all__ = ["Server", "free_port"]

HEALTH_PATH = "/api/v1/health"
"""The endpoint :meth:`Server.start` polls until it answers 200."""

LOG_ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
"""Added to the server's default environment: its log file is plain, wide and up to date."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` when asked.

    Parameters
    ----------
    host
        The address to bind to.

    Returns
    -------
    int
        The port the operating system chose. Another process may take it before it is used.
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Server:
    """A ``scopeflow server`` process group (uvicorn API and its worker) on a free loopback port.

    The server runs in a session of its own, so that :meth:`stop` and :meth:`kill` reach the
    worker process too. Its output goes to ``server-PORT.log`` in the data folder.

    Parameters
    ----------
    data
        The service's data folder (``--data-dir``): its database, ``templates.yaml`` and jobs.
        Created if missing.
    extra
        More arguments of ``scopeflow server``, e.g. ``["--config", "service.yaml"]`` or
        ``["--log-level", "warning"]``.
    env
        Environment of the process; default: this process's, with :data:`LOG_ENV`.
    timeout
        Seconds :meth:`start` waits for the health endpoint to answer.

    Attributes
    ----------
    port : int
        The TCP port on 127.0.0.1.
    url : str
        ``http://127.0.0.1:PORT``, the base of the API (``/api/v1``) and the web UI.
    proc : subprocess.Popen or None
        The server's process (the leader of its group) once started.

    Examples
    --------
    >>> with Server(tmp_path / "service") as srv:  # doctest: +SKIP
    ...     httpx.get(f"{srv.url}/api/v1/health").status_code
    200
    """

    def __init__(
        self,
        data: Path,
        extra: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.data = Path(data)
        self.extra = list(extra or [])
        self.env = dict(env) if env is not None else {**os.environ, **LOG_ENV}
        self.timeout = timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the server and wait until its health endpoint answers.

        Returns
        -------
        Server
            This server, running.

        Raises
        ------
        RuntimeError
            The process ended, or did not answer within ``timeout`` seconds (it is then
            stopped); the message ends with the server's log.
        """
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "scopeflow", "server", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--data-dir", str(self.data), *self.extra]
        with (self.data / f"server-{self.port}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"scopeflow server exited with code {code}:\n{self.log()}")
            try:
                if httpx.get(self.url + HEALTH_PATH, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"scopeflow server did not answer in {self.timeout} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of the output of every server run on this data folder."""
        logs = sorted(self.data.glob("server-*.log"), key=lambda p: p.stat().st_mtime)
        return "\n".join(p.read_text(errors="replace") for p in logs)[-tail:]

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL the whole process group (API and worker), as a crash would.

        Returns once no process of the group is left (the worker, not a child of this process,
        is reaped by init); raises RuntimeError if one still is after ``timeout`` seconds.
        """
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.killpg(self.proc.pid, 0)  # signal 0: is any process of the group left?
                except ProcessLookupError:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"process group {self.proc.pid} still alive after SIGKILL")
                time.sleep(0.05)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the process group; SIGKILL it if the server has not ended after ``grace`` s."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

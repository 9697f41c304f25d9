"""The worker as a child process of ``scopeflow server``: started, restarted if it dies, stopped.

:class:`WorkerProcess` runs a command (``python -m scopeflow worker …``) and watches it from a
thread: when it exits without being asked to, it is started again after a delay that grows
while it keeps dying quickly (1 s, 2 s, 4 s … up to 30 s). :meth:`WorkerProcess.stop` sends
SIGTERM (the worker finishes its round) and SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = ["WorkerProcess"]

log = logging.getLogger("scopeflow.service.worker")

_MAX_DELAY_S = 30.0
_STABLE_S = 60.0


class WorkerProcess:
    """Keep one worker process running until :meth:`stop`.

    Parameters
    ----------
    argv
        The worker's command (an argv list, no shell).
    env
        Its environment (default: this process's).
    grace_s
        Seconds between SIGTERM and SIGKILL in :meth:`stop`.
    restart_delay_s
        First delay before a restart; doubled while the worker dies within a minute of starting.

    Attributes
    ----------
    restarts
        How many times the worker was started again after it exited on its own (each restart
        is also logged).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        grace_s: float = 10.0,
        restart_delay_s: float = 1.0,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.grace_s = grace_s
        self.restart_delay_s = restart_delay_s
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the current worker process (None before the start and after the stop)."""
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self) -> WorkerProcess:
        """Start the worker and the thread that restarts it."""
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)
            log.info("worker process %d started", self._proc.pid)

    def _watch(self) -> None:
        delay = self.restart_delay_s
        while not self._stopping.is_set():
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            delay = self.restart_delay_s if lived > _STABLE_S else delay
            log.log(
                logging.WARNING if code == 0 else logging.ERROR,
                "worker process %d exited (status %s); restarting it in %.0f s",
                proc.pid,
                code,
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _MAX_DELAY_S)
            self.restarts += 1
            self._spawn()

    def stop(self) -> int | None:
        """Stop the worker: SIGTERM, then SIGKILL after ``grace_s``.

        Returns
        -------
        int or None
            The worker's exit status (None if it was not running).
        """
        self._stopping.set()
        with self._lock:
            proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("worker process %d did not stop; killing it", proc.pid)
                    proc.kill()
                    proc.wait()
            code = proc.returncode
        if self._thread is not None:
            self._thread.join(5)
        return code

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

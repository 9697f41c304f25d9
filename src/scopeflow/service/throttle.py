"""A limit on failed logins: password guessing gets a 429 instead of more tries.

Failures are counted in a sliding window under three keys, each with its own limit:

- the user name *and* client address: a few tries, then wait (the usual guessing);
- the client address alone: many names tried from one place (password spraying);
- the user name alone: one account guessed from many places. Its limit is high, so that
  someone who only knows a user's name cannot easily lock that user out.

While any key is over its limit, a login is refused before the password is checked (no argon2
work is spent on it). An allowed attempt counts as a failure from its start (:meth:`begin`),
so that logins checked in parallel cannot all pass the limit before any of them has failed;
a successful one is taken back and clears the failures of its name-and-address key. The
counts live in the API process's memory: a restart clears them, and several API processes
count separately. Behind a reverse proxy, run uvicorn with its proxy headers trusted so the
client address is the real one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Failed logins per name and address in a sliding window (thread-safe).

    Parameters
    ----------
    window_s
        Length of the window, seconds.
    per_pair, per_address, per_name
        Failures allowed in the window for one name from one address, from one address, and
        for one name.
    max_keys
        Keys remembered at most (the least recently failed are forgotten first): bounds memory.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        per_pair: int = 5,
        per_address: int = 30,
        per_name: int = 100,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.limits = {"pair": per_pair, "address": per_address, "name": per_name}
        self.max_keys = max_keys
        self.clock = clock
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, name: str, address: str) -> list[tuple[str, str]]:
        return [("pair", f"{name}\0{address}"), ("address", address), ("name", name)]

    def retry_after(self, name: str, address: str) -> int:
        """Seconds until a login of ``name`` from ``address`` is allowed again; 0 now."""
        with self._lock:
            return self._wait(name, address, self.clock())

    def begin(self, name: str, address: str) -> tuple[int, float]:
        """Start a login: ``(seconds to wait, 0 when allowed; the attempt's time)``.

        An allowed attempt is counted as a failure at once (atomically with the check): call
        :meth:`succeeded` with its time when the password was right.
        """
        now = self.clock()
        with self._lock:
            wait = self._wait(name, address, now)
            if wait:
                return wait, now
            for key in self._keys(name, address):
                times = self._recent(key, now)
                if times is None:
                    times = self._fails[key] = deque()
                times.append(now)
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        return 0, now

    def succeeded(self, name: str, address: str, started: float) -> None:
        """The login begun at ``started`` was right: not a failure; its pair's failures go."""
        pair, *others = self._keys(name, address)
        with self._lock:
            self._fails.pop(pair, None)
            for key in others:
                times = self._fails.get(key)
                if times is not None and started in times:
                    times.remove(started)
                    if not times:
                        del self._fails[key]

    def _wait(self, name: str, address: str, now: float) -> int:
        wait = 0.0
        for key in self._keys(name, address):
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limits[key[0]]:
                # allowed again once enough of the oldest failures leave the window
                oldest = times[len(times) - self.limits[key[0]]]
                wait = max(wait, oldest + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        """The failures of ``key`` still in the window (older ones dropped); None if none."""
        times = self._fails.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._fails[key]
            return None
        return times

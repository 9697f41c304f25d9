"""A limit on failed logins: password guessing gets a 429 instead of more tries.

Failures are counted in a sliding window under three keys, each with its own limit:

- the user name *and* client address: a few tries, then wait (the usual guessing);
- the client address alone: many names tried from one place (password spraying);
- the user name alone: one account guessed from many places. Its limit is high, so that
  someone who only knows a user's name cannot easily lock that user out.

While any key is over its limit, a login is refused before the password is checked (no argon2
work is spent on it); a successful login clears the failures of its name-and-address key. The
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
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in self._keys(name, address):
                times = self._recent(key, now)
                if times is not None and len(times) >= self.limits[key[0]]:
                    # allowed again once enough of the oldest failures leave the window
                    oldest = times[len(times) - self.limits[key[0]]]
                    wait = max(wait, oldest + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, name: str, address: str) -> None:
        """Count a failed login."""
        now = self.clock()
        with self._lock:
            for key in self._keys(name, address):
                times = self._recent(key, now)
                if times is None:
                    times = self._fails[key] = deque()
                times.append(now)
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, name: str, address: str) -> None:
        """A successful login clears the failures of its name from its address."""
        with self._lock:
            self._fails.pop(self._keys(name, address)[0], None)

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

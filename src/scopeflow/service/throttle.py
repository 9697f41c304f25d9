"""A limit on failed logins: password guessing gets a 429 instead of more tries.

Failures are counted in a sliding window under three keys:

- the user name *and* client address (``per_pair``): a few tries, then wait (the usual
  guessing);
- the client address alone (``per_address``): many names tried from one place (password
  spraying);
- the user name alone (``per_name``): one account guessed from many places. This limit never
  refuses a login by itself, so that someone who only knows a user's name cannot lock that
  user out from any number of addresses. Past it the name is *under attack*, and guessing is
  slowed instead: an address gets ``per_pair_attacked`` failures for that name per window
  (default one) rather than ``per_pair``. An address that has not failed for the name may
  always try, so the user still logs in from a new place; an address the user has logged in
  from before (in the last ``known_s`` seconds) keeps the full ``per_pair``. This follows the
  OWASP Authentication Cheat Sheet (count failures per account, but do not hand attackers a
  lockout; slow guessing down instead) and OWASP's device-cookie scheme (clients that logged
  in before go through), with the address in place of a cookie.

While a limit is reached, a login is refused before the password is checked (no argon2 work is
spent on it). An allowed attempt counts as a failure from its start (:meth:`LoginThrottle.begin`),
so that logins checked in parallel cannot all pass the limit before any of them has failed; a
successful one is taken back, clears the failures of its name-and-address key and makes the
address known for the name. The counts live in the API process's memory: a restart clears them,
and several API processes count separately. Behind a reverse proxy, run uvicorn with its proxy
headers trusted so the client address is the real one.
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
    per_pair, per_address
        Failures allowed in the window for one name from one address, and from one address.
    per_name
        Failures of one name in the window (from any addresses) past which the name is under
        attack: it refuses nothing itself, but lowers the pair limit to ``per_pair_attacked``
        for addresses the name has not logged in from.
    per_pair_attacked
        Failures allowed in the window for one name from one address while the name is under
        attack (at least 1, so an address that has not failed may always try).
    known_s
        How long, seconds, an address where a name logged in stays known (exempt from the
        slowdown) for that name.
    max_keys
        Keys remembered at most, failures and known addresses each (the least recently used are
        forgotten first): bounds memory.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        per_pair: int = 5,
        per_address: int = 30,
        per_name: int = 20,
        per_pair_attacked: int = 1,
        known_s: float = 30 * 86400.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_pair_attacked < 1:
            raise ValueError(
                f"per_pair_attacked must be at least 1, not {per_pair_attacked}: with 0, "
                "anyone could lock a user out by failing for their name"
            )
        self.window_s = window_s
        self.limits = {"pair": per_pair, "address": per_address}
        self.per_name = per_name
        self.per_pair_attacked = per_pair_attacked
        self.known_s = known_s
        self.max_keys = max_keys
        self.clock = clock
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._known: OrderedDict[str, float] = OrderedDict()  # name\0address -> last success
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
        """The login begun at ``started`` was right: not a failure (its pair's failures go).

        ``address`` is known for ``name`` from now on (for ``known_s`` seconds).
        """
        pair, *others = self._keys(name, address)
        with self._lock:
            self._fails.pop(pair, None)
            for key in others:
                times = self._fails.get(key)
                if times is not None and started in times:
                    times.remove(started)
                    if not times:
                        del self._fails[key]
            self._known[pair[1]] = self.clock()
            self._known.move_to_end(pair[1])
            while len(self._known) > self.max_keys:
                self._known.popitem(last=False)

    def _wait(self, name: str, address: str, now: float) -> int:
        pair, by_address, by_name = self._keys(name, address)
        limits = {pair: self.limits["pair"], by_address: self.limits["address"]}
        name_fails = self._recent(by_name, now)
        if (
            name_fails is not None
            and len(name_fails) >= self.per_name
            and not self._is_known(pair[1], now)
        ):  # under attack: fewer tries per address, but never none
            limits[pair] = min(limits[pair], self.per_pair_attacked)
        wait = 0.0
        for key, limit in limits.items():
            times = self._recent(key, now)
            if times is not None and len(times) >= limit:
                # allowed again once enough of the oldest failures leave the window
                oldest = times[len(times) - limit]
                wait = max(wait, oldest + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def _is_known(self, pair: str, now: float) -> bool:
        """Whether the name logged in from the address of ``pair`` in the last ``known_s``."""
        last = self._known.get(pair)
        if last is not None and now - last >= self.known_s:
            del self._known[pair]
            return False
        return last is not None

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

"""What the client's callers handle without the HTTP stack: errors, progress, job states.

Kept apart from :mod:`scopeflow.client._client` so that the command line can name them without
importing httpx at start-up (every ``scopeflow`` command would pay for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FINAL", "APIError", "Progress", "TransferError", "TransferProgress"]

#: Job states that do not change any more (until a restart).
FINAL = frozenset({"succeeded", "failed", "cancelled"})


class APIError(RuntimeError):
    """The service answered with an error status.

    Attributes
    ----------
    status : int
        The HTTP status.
    detail : Any
        The service's ``detail`` (a message, or a list of ``{"loc", "msg"}`` for a 422).
    body : dict
        The whole JSON answer (e.g. ``expected_offset`` of a 409 upload).
    """

    def __init__(self, status: int, detail: Any, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.body = body or {}
        if isinstance(detail, list):
            text = "; ".join(
                f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail
            )
        else:
            text = str(detail)
        super().__init__(f"HTTP {status}: {text}")


class TransferError(RuntimeError):
    """A transfer cannot go on.

    The local file changed while it was uploaded, or a download broke off.
    """


@dataclass
class TransferProgress:
    """What a transfer callback gets: bytes done of ``total``, since ``started`` (monotonic)."""

    path: str
    done: int
    total: int
    started: float
    resumed_from: int = 0

    @property
    def rate(self) -> float:
        """Bytes per second of this session's transfer."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (self.done - self.resumed_from) / elapsed

    @property
    def remaining_s(self) -> float | None:
        """Estimated seconds left (None before there is a rate)."""
        rate = self.rate
        return None if rate <= 0 else (self.total - self.done) / rate


Progress = Callable[[TransferProgress], None]

"""Python client of the scopeflow service (HTTP only): ``from scopeflow.client import Client``.

>>> c = Client("http://127.0.0.1:8000")                            # doctest: +SKIP
>>> c.login("alice", "secret")                                     # doctest: +SKIP
>>> job = c.create_job("cyto-ifc", "run 1", {"batch_size": 500})  # doctest: +SKIP
>>> c.upload(job["id"], "ch0.tif", "ifc/ch0.tif")                  # doctest: +SKIP
>>> c.start(job["id"]); c.wait(job["id"])                          # doctest: +SKIP
>>> c.download_zip(job["id"], "results.zip")                       # doctest: +SKIP

``Client`` is imported on first use (PEP 562), so that importing the errors does not load httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scopeflow.client._types import FINAL, APIError, TransferError, TransferProgress

if TYPE_CHECKING:
    from scopeflow.client._client import Client

__all__ = ["FINAL", "APIError", "Client", "TransferError", "TransferProgress"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from scopeflow.client._client import Client

        return Client
    raise AttributeError(f"module 'scopeflow.client' has no attribute {name!r}")

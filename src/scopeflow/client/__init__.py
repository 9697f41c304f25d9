"""Python client of the scopeflow service (HTTP only): ``from scopeflow.client import Client``.

>>> c = Client("http://127.0.0.1:8000")                            # doctest: +SKIP
>>> c.login("alice", "secret")                                     # doctest: +SKIP
>>> job = c.create_job("cyto-ifc", "run 1", {"batch_size": 500})  # doctest: +SKIP
>>> c.upload(job["id"], "ch0.tif", "ifc/ch0.tif")                  # doctest: +SKIP
>>> c.start(job["id"]); c.wait(job["id"])                          # doctest: +SKIP
>>> c.download_zip(job["id"], "results.zip")                       # doctest: +SKIP
"""

from scopeflow.client._client import APIError, Client, TransferError, TransferProgress

__all__ = ["APIError", "Client", "TransferError", "TransferProgress"]

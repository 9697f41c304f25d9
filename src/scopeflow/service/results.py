"""HTTP answers for a run's result files: one file with Range / If-Range, or a zip of them.

Shared by the bearer-authenticated job routes (``/api/v1/jobs/{id}/results…``) and the signed
download links of the web UI (``/dl/<token>/…``): the lookup (only files that
:func:`~scopeflow.service.transfers.list_results` would list, checked one name at a time by
:func:`~scopeflow.service.transfers.result_path`; names through
:func:`~scopeflow.service.files.safe_relpath`), the ``ETag`` (size and modification time), the
ranges, the zip of all results or of one folder (``prefix``) and the streaming are the same
for both.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path, PurePosixPath

from fastapi import HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse

from scopeflow.service.files import safe_relpath
from scopeflow.service.transfers import (
    iter_file,
    list_results,
    parse_range,
    result_path,
    zip_listed,
)

__all__ = ["FILE_HEADERS", "result_file_response", "results_zip_response"]

FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
"""Headers of every result file answer (both routes).

A result file is the job's output, served with a guessed content type on the origin whose pages
keep the user's bearer token in ``sessionStorage``: ``nosniff`` keeps the browser to that type,
and the ``sandbox`` policy gives an HTML or SVG result opened in a tab a unique origin with no
script. Neither changes how an ``<img>`` shows a PNG preview or how ``fetch`` reads a file.
"""


def result_file_response(
    run_dir: Path, path: str, request: Request, headers: dict[str, str] | None = None
) -> Response:
    """One result file of ``run_dir``: 200, or 206 for a ``Range`` (416 when unsatisfiable).

    Every answer carries :data:`FILE_HEADERS`. A ``Range`` counts only when an ``If-Range`` is
    absent or equals the file's ``ETag``, so a client resumes only the file it started;
    otherwise the whole file comes back. ``HEAD`` gets the headers alone.

    Raises
    ------
    HTTPException
        404 when ``path`` is not one of the run's results.
    """
    rel = str(safe_relpath(path))  # BadPathError -> 400
    target = result_path(run_dir, rel)  # one name checked: no walk of the run per request
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no result {rel!r}")
    st = target.stat()
    size = st.st_size
    etag = f'"{size:x}-{st.st_mtime_ns:x}"'
    if_range = request.headers.get("if-range")
    wanted = request.headers.get("range") if if_range in (None, etag) else None
    rng = parse_range(wanted, size)  # RangeNotSatisfiableError -> 416
    out = (headers or {}) | FILE_HEADERS | {"Accept-Ranges": "bytes", "ETag": etag}
    start, end = (0, size - 1) if rng is None else (rng.start, rng.end)
    if rng is None:
        out["Content-Length"] = str(size)
    else:
        out |= {"Content-Range": rng.content_range(size), "Content-Length": str(rng.length)}
    code = status.HTTP_200_OK if rng is None else status.HTTP_206_PARTIAL_CONTENT
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if request.method == "HEAD":
        return Response(status_code=code, media_type=media, headers=out)
    return StreamingResponse(
        iter_file(target, start, end), status_code=code, media_type=media, headers=out
    )


def results_zip_response(
    run_dir: Path,
    name: str,
    request: Request,
    headers: dict[str, str] | None = None,
    *,
    prefix: str | None = None,
) -> Response:
    """Every result file of ``run_dir`` (and the summary) streamed as ``NAME-results.zip``.

    With ``prefix`` (a folder of the results, e.g. ``outputs/fused.ome.zarr``) only the result
    files under that folder, as ``NAME-FOLDER.zip`` (``FOLDER`` its last component); the
    archive names stay relative to the run either way. The files are listed before the answer
    starts, so a missing folder is a plain 404.

    Raises
    ------
    HTTPException
        404 when ``prefix`` holds no result file.
    BadPathError
        ``prefix`` is not an acceptable relative name (400).
    """
    head_of_all = request.method == "HEAD" and prefix is None  # nothing to list for it
    listed = [] if head_of_all else list_results(run_dir, prefix=prefix)  # BadPathError -> 400
    if prefix is not None and not listed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no result files under {prefix!r}")
    stem = "results" if prefix is None else _filename(PurePosixPath(prefix).name)
    out = (headers or {}) | {"Content-Disposition": f'attachment; filename="{name}-{stem}.zip"'}
    if request.method == "HEAD":
        return Response(media_type="application/zip", headers=out)
    return StreamingResponse(zip_listed(run_dir, listed), media_type="application/zip", headers=out)


def _filename(text: str) -> str:
    """``text`` made safe for a quoted ``Content-Disposition`` file name (ASCII, no quotes)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)

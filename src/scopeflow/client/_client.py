"""The HTTP client: every action of the REST API, resumable uploads and downloads."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from scopeflow.client._types import (
    FINAL,
    APIError,
    Progress,
    TransferError,
    TransferProgress,
)

__all__ = ["APIError", "Client", "TransferError", "TransferProgress"]

API = "/api/v1"
CHUNK = 8 * 2**20


def _q(name: str) -> str:
    """``name`` for a URL path: every character that means something in a URL escaped."""
    return urllib.parse.quote(name, safe="/")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Client:
    """A session with one scopeflow service.

    Parameters
    ----------
    url
        Base URL, e.g. ``http://127.0.0.1:8000``.
    token
        A session token or API key (or call :meth:`login`).
    timeout
        Seconds per request.
    transport
        The httpx transport to send requests through (default: httpx's own); e.g. one that
        breaks a transfer off, to measure a resume.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.url + API, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """``extra`` and the bearer token (when logged in)."""
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @staticmethod
    def _raise_for(r: httpx.Response) -> None:
        """An :class:`APIError` from an error answer (its body read already)."""
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {"detail": r.text}
            raise APIError(r.status_code, body.get("detail"), body)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        r = self._http.request(method, path, headers=headers, **kw)
        self._raise_for(r)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._request(method, path, **kw)
        return None if r.status_code == 204 else r.json()

    # ------------------------------------------------------------------ session
    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        out: dict[str, Any] = self._json("GET", "/health")
        return out

    def login(self, name: str, password: str) -> str:
        """Log in; the token is kept for the next requests and returned."""
        self.token = None
        answer = self._json("POST", "/auth/login", json={"name": name, "password": password})
        self.token = str(answer["token"])
        return self.token

    def logout(self) -> None:
        """Revoke the current token."""
        self._json("POST", "/auth/logout")
        self.token = None

    def me(self) -> dict[str, Any]:
        """The logged-in user."""
        out: dict[str, Any] = self._json("GET", "/me")
        return out

    def templates(self) -> list[dict[str, Any]]:
        """The command templates with the JSON Schema of their parameters."""
        out: list[dict[str, Any]] = self._json("GET", "/templates")
        return out

    def api_keys(self) -> list[dict[str, Any]]:
        """The caller's API keys (never the keys themselves)."""
        out: list[dict[str, Any]] = self._json("GET", "/auth/api-keys")
        return out

    def create_api_key(self, name: str, days: int = 90) -> str:
        """A new API key of the caller (``days`` 1 … 365); the key is shown only now."""
        out: dict[str, Any] = self._json(
            "POST", "/auth/api-keys", json={"name": name, "days": days}
        )
        return str(out["key"])

    def revoke_api_key(self, key_id: int) -> None:
        """Revoke one of the caller's API keys."""
        self._json("DELETE", f"/auth/api-keys/{int(key_id)}")

    # ------------------------------------------------------------------ jobs
    def create_job(
        self, template: str, name: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new job (state ``created``)."""
        body = {"template": template, "name": name, "params": params or {}}
        out: dict[str, Any] = self._json("POST", "/jobs", json=body)
        return out

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """The user's jobs (filters: ``state``, ``template``, ``since``, ``until``, ``limit``)."""
        params = {k: v for k, v in filters.items() if v is not None}
        out: list[dict[str, Any]] = self._json("GET", "/jobs", params=params)
        return out

    def job(self, job_id: str) -> dict[str, Any]:
        """One job."""
        out: dict[str, Any] = self._json("GET", f"/jobs/{_q(job_id)}")
        return out

    def demo_data(self, job_id: str) -> dict[str, Any]:
        """Write the template's demo data into a new job's input (the job becomes ``ready``)."""
        out: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/demo-data")
        return out

    def start(self, job_id: str) -> dict[str, Any]:
        """Queue the job."""
        out: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/start")
        return out

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel the job."""
        out: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/cancel")
        return out

    def restart(self, job_id: str) -> dict[str, Any]:
        """Queue a finished job again (only unfinished units rerun)."""
        out: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/restart")
        return out

    def delete(self, job_id: str) -> None:
        """Delete the job and its files."""
        self._json("DELETE", f"/jobs/{_q(job_id)}")

    def progress(self, job_id: str) -> dict[str, Any]:
        """Per step x unit states."""
        out: dict[str, Any] = self._json("GET", f"/jobs/{_q(job_id)}/progress")
        return out

    def summary(self, job_id: str) -> dict[str, Any]:
        """The run's summary.json."""
        out: dict[str, Any] = self._json("GET", f"/jobs/{_q(job_id)}/summary")
        return out

    def logs(
        self, job_id: str, *, offset: int = 0, limit: int | None = None, **which: str
    ) -> dict[str, Any]:
        """One page of a log from byte ``offset``.

        ``which`` is ``step`` + ``unit`` (a unit's log), or ``stream`` (stdout / stderr).
        Returns ``{"text", "offset" (where the next page starts), "size" (of the log now)}``;
        a page holds at most ``limit`` bytes (the service's default, 1 MiB, when None). See
        :meth:`read_logs` for a whole log.
        """
        params: dict[str, Any] = {"offset": offset, **which}
        if limit is not None:
            params["limit"] = limit
        out: dict[str, Any] = self._json("GET", f"/jobs/{_q(job_id)}/logs", params=params)
        return out

    def _log_pages(
        self, job_id: str, offset: int, limit: int | None, which: dict[str, str], *, chase: bool
    ) -> Iterator[tuple[str, int]]:
        """``(text, next offset)`` of each page from ``offset`` on, without waiting.

        Stops at the log's end: its size as the first page saw it, or with ``chase`` as the last
        page saw it (a log written meanwhile is read on); or at a page that does not advance.
        """
        end: int | None = None
        while True:
            part = self.logs(job_id, offset=offset, limit=limit, **which)
            end = part["size"] if end is None or chase else end
            moved = part["offset"] > offset
            offset = part["offset"]
            if part["text"] or moved:
                yield part["text"], offset
            if offset >= end or not moved:
                return

    def read_logs(self, job_id: str, *, limit: int | None = None, **which: str) -> Iterator[str]:
        """Yield a log's text page by page, from its start to its current end.

        Unlike :meth:`logs`, not only the first page (the service sends at most ``limit``
        bytes per request, 1 MiB by default): the pages follow one another without waiting.
        ``which`` is ``step`` + ``unit``, or ``stream`` (stdout / stderr).
        """
        for text, _offset in self._log_pages(job_id, 0, limit, which, chase=False):
            yield text

    def follow_logs(
        self, job_id: str, *, poll_s: float = 1.0, limit: int | None = None, **which: str
    ) -> Iterator[str]:
        """Yield new log text until the job has finished and the log is read to its end.

        Pages follow one another without waiting while the log has more; only once it is read
        to its end does the client wait ``poll_s`` before asking again.
        """
        offset = 0
        while True:
            final = self.job(job_id)["state"] in FINAL  # before reading: then the log is whole
            for text, after in self._log_pages(job_id, offset, limit, which, chase=True):
                offset = after
                if text:
                    yield text
            if final:
                return
            time.sleep(poll_s)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 1.0,
        on_progress: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; return it.

        Parameters
        ----------
        job_id
            The job.
        timeout
            Seconds to wait at most (no limit when None).
        poll_s
            Seconds between polls.
        on_progress
            Called at every poll, the last included, with the job's progress (as
            :meth:`progress` returns it) and the job (as :meth:`job` returns it).

        Raises
        ------
        TimeoutError
            Not finished within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(self.progress(job_id), job)
            if job["state"] in FINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll_s)

    # ------------------------------------------------------------------ files
    def upload(
        self,
        job_id: str,
        local: str | Path,
        remote: str | None = None,
        *,
        chunk: int = CHUNK,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a file into the job's input folder, resuming where the service stopped.

        The file is declared with its size and SHA-256; the service answers how many bytes it
        already holds (a previous, interrupted upload), and only the rest is sent.
        """
        path = Path(local)
        name = remote or path.name
        size = path.stat().st_size
        decl = {"path": name, "size": size, "sha256": _sha256(path)}
        offset = int(self._json("POST", f"/jobs/{_q(job_id)}/files", json=decl)["offset"])
        state = TransferProgress(name, offset, size, time.monotonic(), resumed_from=offset)
        if progress is not None:
            progress(state)
        with path.open("rb") as fh:
            fh.seek(offset)
            while offset < size:
                want = min(chunk, size - offset)
                data = fh.read(want)
                if len(data) < want:  # the file shrank since it was declared
                    with contextlib.suppress(APIError, httpx.HTTPError):
                        self.delete_input(job_id, name)
                    raise TransferError(
                        f"{path} changed while uploading: {offset + len(data)} bytes readable, "
                        f"{size} declared (the upload was discarded; upload it again)"
                    )
                try:
                    answer = self._json(
                        "PUT",
                        f"/jobs/{_q(job_id)}/files/{_q(name)}",
                        params={"offset": offset},
                        content=data,
                    )
                except APIError as exc:
                    if exc.status != 409 or "expected_offset" not in exc.body:
                        raise
                    offset = int(exc.body["expected_offset"])  # the service knows better
                    fh.seek(offset)
                    continue
                offset = int(answer["offset"])
                state.done = offset
                if progress is not None:
                    progress(state)
        out: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/files/{_q(name)}/finish")
        return out

    def delete_input(self, job_id: str, remote: str) -> dict[str, Any]:
        """Delete a file from the job's input before the job starts.

        The service removes an unfinished upload of that name if there is one (the answer is
        ``{"path", "discarded": True}``), else the finished input file
        (``{"path", "deleted": True, "size"}``); the job's state follows its input (``created``
        once nothing is left).

        Raises
        ------
        APIError
            404 when there is no such file (or the job is not the user's), 400 for a folder or
            a name against the path rules, 409 once the job has started.
        """
        out: dict[str, Any] = self._json("DELETE", f"/jobs/{_q(job_id)}/files/{_q(remote)}")
        return out

    def results(self, job_id: str) -> list[dict[str, Any]]:
        """The job's result files."""
        out: list[dict[str, Any]] = self._json("GET", f"/jobs/{_q(job_id)}/results")
        return out

    def download(
        self,
        job_id: str,
        remote: str,
        dest: str | Path,
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download one result file to ``dest``, resuming an interrupted download.

        The bytes go to ``dest.part`` (the file's ``ETag`` to ``dest.part.etag``) and are renamed
        to ``dest`` when complete. A later call continues the part with an HTTP ``Range`` and
        ``If-Range``: only while the result is still the file the part came from; otherwise the
        service sends the whole file again. A part that is already whole (the service answers
        416 with the file's size) is renamed without sending it again. An existing ``dest`` is
        replaced, never appended to.
        """
        url = f"/jobs/{_q(job_id)}/results/{_q(remote)}"
        return self._fetch(url, Path(dest), progress, True)

    def download_zip(
        self, job_id: str, dest: str | Path, *, progress: Progress | None = None
    ) -> Path:
        """Download every result (and the summary) as one zip (through ``dest.part``)."""
        return self._fetch(f"/jobs/{_q(job_id)}/results.zip", Path(dest), progress, False)

    def _fetch(self, url: str, dest: Path, progress: Progress | None, resume: bool) -> Path:
        part = dest.with_name(dest.name + ".part")
        tag_file = dest.with_name(dest.name + ".part.etag")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if resume and part.is_file() and tag_file.is_file():
            have, etag = part.stat().st_size, tag_file.read_text(encoding="utf-8").strip()
        else:  # nothing to resume from safely
            have, etag = 0, ""
        for _attempt in range(3):
            restart = self._fetch_once(url, dest, have=have, etag=etag, progress=progress)
            if not restart:
                part.replace(dest)
                tag_file.unlink(missing_ok=True)
                return dest
            have, etag = 0, ""  # the part does not fit the file: from scratch
        raise TransferError(f"cannot download {url}: the service keeps answering with ranges")

    def _fetch_once(
        self, url: str, dest: Path, *, have: int, etag: str, progress: Progress | None
    ) -> bool:
        """One GET into ``dest.part``; True when it must start over (the part does not fit)."""
        part = dest.with_name(dest.name + ".part")
        tag_file = dest.with_name(dest.name + ".part.etag")
        ranged = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
        with self._http.stream("GET", url, headers=self._headers(ranged)) as r:
            if r.status_code == 416:
                # An If-Range that does not match makes the service send the whole file
                # (RFC 9110, 13.1.5), so a 416 answers a part of the same file whose range starts
                # at or past its end: complete when its size is the file's, ``bytes */N``.
                m = re.fullmatch(r"bytes \*/(\d+)", r.headers.get("content-range", ""))
                if m is None or int(m.group(1)) != have:
                    return True  # the part is longer than the file: start over
                if progress is not None:
                    progress(TransferProgress(str(dest), have, have, time.monotonic(), have))
                return False
            if r.status_code >= 400:
                r.read()
                self._raise_for(r)
            append = r.status_code == 206
            if append:
                m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", r.headers.get("content-range", ""))
                if m is None or int(m.group(1)) != have:
                    return True
                total = int(m.group(3)) if m.group(3) != "*" else 0
            else:
                total = int(r.headers.get("content-length", 0))
                have = 0
            tag = r.headers.get("etag", "")
            if tag and not tag.startswith("W/"):  # a strong ETag: the part may be resumed later
                tag_file.write_text(tag, encoding="utf-8")
            else:
                tag_file.unlink(missing_ok=True)
            expected = int(r.headers["content-length"]) if "content-length" in r.headers else None
            state = TransferProgress(str(dest), have, total, time.monotonic())
            state.resumed_from = have
            got = 0
            with part.open("ab" if append else "wb") as fh:
                for block in r.iter_bytes(CHUNK):
                    fh.write(block)
                    got += len(block)
                    state.done += len(block)
                    if progress is not None:
                        progress(state)
            if expected is not None and got != expected:
                raise TransferError(
                    f"download of {url} broke off after {have + got} bytes (run it again to resume)"
                )
        return False

"""Request limits: streaming multipart parsing with size caps, content sniffing, the bounded inference pool.

Uploads are hashed and written to the evidence temp folder while they stream in; a part or request
over its cap stops the stream with 413 before the rest is read, and a body that does not arrive within
its time stops with 408. Admission has two stages, so a slow upload never holds an inference place: the
:class:`UploadGate` bounds the requests whose body is still arriving, and only a fully received upload
asks the :class:`InferencePool` for a place (at most ``workers + queue_size`` running or waiting).
Either full, the API answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException

from marktrace.inference.images import is_heif
from marktrace.service.evidence import EvidenceStore, TempUpload

T = TypeVar("T")

FIELD_CAP_BYTES = 64 * 1024
MAX_PARTS = 256
TEXT_FIELDS = ("lights", "case_ref", "notes")

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WEBP"),
)


class UploadError(Exception):
    """A client error in an upload: HTTP status and a message naming the file and the problem."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def sniff_image_type(head: bytes) -> str | None:
    """The image format from the first bytes (magic numbers), or None; the client's type is never trusted."""
    for magic, offset, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if fmt == "WEBP" and head[:4] != b"RIFF":
                continue
            return fmt
    return "HEIF" if is_heif(head) else None


@dataclass
class ParsedUpload:
    """The parts of an identification upload."""

    files: list[tuple[str, TempUpload]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Delete all temp files not yet committed."""
        for _, temp in self.files:
            temp.discard()


def _header_param(value: bytes, key: bytes) -> str | None:
    _, params = parse_options_header(value)
    raw = params.get(key)
    return None if raw is None else raw.decode("utf-8", "replace")


async def parse_upload(
    content_type: str,
    stream: AsyncIterator[bytes],
    evidence: EvidenceStore,
    *,
    max_file_bytes: int,
    max_request_bytes: int,
    max_files: int,
    timeout_s: float | None = None,
) -> ParsedUpload:
    """Stream a multipart/form-data body into temp files, enforcing caps as bytes arrive.

    ``timeout_s`` bounds the whole body's arrival (None: no bound). Whatever the way out other than a
    complete body (error, timeout, a cancelled request), the temp files written so far are deleted.

    Raises:
        UploadError: 400 malformed, 408 not received within ``timeout_s``, 413 too large, 415 not multipart.
    """
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        raise UploadError(415, "Unsupported Media Type", "the request body must be multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "Bad Request", "multipart body without a boundary")
    result = ParsedUpload()
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "part": None, "parts": 0}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["part"] = None
        state["parts"] += 1
        if state["parts"] > MAX_PARTS:
            raise UploadError(413, "Payload Too Large", f"more than {MAX_PARTS} parts in one request")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"] = b""
        state["value"] = b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")
        name = _header_param(disposition, b"name")
        filename = _header_param(disposition, b"filename")
        if name == "files" and filename is not None:
            if len(result.files) >= max_files:
                raise UploadError(413, "Payload Too Large", f"more than {max_files} files in one request")
            label = filename.replace("\\", "/").rsplit("/", 1)[-1] or f"file{len(result.files) + 1}"
            temp = evidence.new_temp()
            result.files.append((label, temp))
            state["part"] = ("file", label, temp)
        elif name in TEXT_FIELDS:  # sent as text, or as a file (``-F lights=@lights.json``): read the same
            state["part"] = ("field", name, bytearray())
        else:
            state["part"] = ("ignored", name, None)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["part"]
        if part is None or part[0] == "ignored":
            return
        chunk = data[start:end]
        if part[0] == "file":
            temp: TempUpload = part[2]
            if temp.size + len(chunk) > max_file_bytes:
                raise UploadError(
                    413,
                    "Payload Too Large",
                    f"{part[1]}: file is larger than the limit of {max_file_bytes:,} bytes",
                )
            temp.write(chunk)
        else:
            buf: bytearray = part[2]
            if len(buf) + len(chunk) > FIELD_CAP_BYTES:
                raise UploadError(
                    413, "Payload Too Large", f"form field {part[1]!r} over {FIELD_CAP_BYTES} bytes"
                )
            buf.extend(chunk)

    def on_part_end() -> None:
        part = state["part"]
        if part is not None and part[0] == "field":
            result.fields[part[1]] = bytes(part[2]).decode("utf-8", "replace")
        state["part"] = None

    parser = MultipartParser(
        boundary,
        {  # type: ignore[arg-type]
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": lambda: state.update(ended=True),
        },
    )
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                total += len(chunk)
                if total > max_request_bytes:
                    raise UploadError(
                        413,
                        "Payload Too Large",
                        f"request body is larger than the limit of {max_request_bytes:,} bytes",
                    )
                parser.write(chunk)
        parser.finalize()
        if not state.get("ended"):  # python-multipart's finalize does not check that the closing boundary came
            raise UploadError(400, "Bad Request", "multipart body ends before its closing boundary (cut short?)")
    except (UploadError, HTTPException):  # HTTPException: the body cap of the request middleware (413)
        result.discard()
        raise
    except TimeoutError:
        result.discard()
        raise UploadError(
            408, "Request Timeout", f"the upload did not arrive within {timeout_s:g} s ({total:,} bytes received)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types on malformed bodies
        result.discard()
        raise UploadError(400, "Bad Request", f"malformed multipart body ({exc})") from None
    except BaseException:  # the request was cancelled (client gone, server stopping): leave nothing behind
        result.discard()
        raise
    return result


MAX_FILE_NAME_CHARS = 255
"""Longest uploaded file name kept (after its folders are dropped): a file system's own limit."""
TEXT_FIELD_CHARS = {"case_ref": 200, "notes": 10_000}
"""Longest text of each form field that is stored as text (the store's column sizes)."""


def upload_text_problem(names: list[str], fields: dict[str, str]) -> str | None:
    """Why an upload's file names or text fields cannot be stored as sent, or None when they can."""
    for name in names:
        if len(name) > MAX_FILE_NAME_CHARS:
            return f"file name {name[:40]!r}... is {len(name)} characters long; at most {MAX_FILE_NAME_CHARS}"
    for field_name, limit in TEXT_FIELD_CHARS.items():
        value = fields.get(field_name)
        if value is not None and len(value) > limit:
            return f"form field {field_name!r} is {len(value)} characters long; at most {limit}"
    return None


def parse_lights(raw: str | None, names: list[str]) -> dict[str, tuple[float, float]] | None:
    """Parse the optional ``lights`` JSON part: {file name: [azimuth_deg, elevation_deg] or an object}.

    Objects are ``{"azimuth_deg", "elevation_deg"}`` as in ``lights.json`` (``azimuth``/``elevation`` too).

    The directions follow the batch's rule (:func:`marktrace.inference.enhance.photometric.checked_direction`:
    finite numbers, elevation in (0, 90]), and either every uploaded photo has one or none does.

    Raises:
        UploadError: 422 naming the problem.
    """
    from marktrace.inference.enhance.photometric import checked_direction

    if raw is None or not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UploadError(422, "Unprocessable Content", f"lights: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise UploadError(422, "Unprocessable Content", "lights: nested too deeply to be a light map") from None
    if not isinstance(data, dict):
        raise UploadError(422, "Unprocessable Content", "lights: must be an object {file name: direction}")
    lights: dict[str, tuple[float, float]] = {}
    for key, value in data.items():
        if key not in names:
            raise UploadError(
                422, "Unprocessable Content", f"lights: {key!r} is not one of the uploaded files"
            )
        if isinstance(value, dict):
            value = [value.get("azimuth_deg", value.get("azimuth")), value.get("elevation_deg", value.get("elevation"))]
        if not isinstance(value, list) or len(value) != 2:
            raise UploadError(
                422, "Unprocessable Content", f"lights: {key!r} must be [azimuth_deg, elevation_deg]"
            )
        try:
            lights[key] = checked_direction(value[0], value[1])
        except ValueError as exc:
            raise UploadError(422, "Unprocessable Content", f"lights: {key!r}: {exc}") from None
    missing = [n for n in names if n not in lights]
    if lights and missing:
        raise UploadError(
            422, "Unprocessable Content",
            f"lights: some photos have directions and some do not (none for {', '.join(missing)})",
        )
    return lights or None


class PoolFull(Exception):
    """No room in the inference queue."""


class UploadsFull(Exception):
    """Too many uploads arriving at once."""


class UploadGate:
    """Bounds the requests whose body is still arriving (each holds temp files, none holds an inference place).

    Use as ``with gate.enter(): ...``; :class:`UploadsFull` at once when ``limit`` requests are inside.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._inside = 0

    @property
    def inside(self) -> int:
        """Uploads arriving now."""
        return self._inside

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Hold a place while the body arrives; raise :class:`UploadsFull` if there is none."""
        with self._lock:
            if self._inside >= self.limit:
                raise UploadsFull()
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1


class InferenceTimeout(Exception):
    """Inference took longer than the per-request timeout."""


class InferencePool:
    """A fixed pool of inference threads with bounded admission (running + waiting)."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="marktrace-infer")
        self._lock = threading.Lock()
        self._outstanding = 0

    @property
    def depth(self) -> int:
        """Requests admitted and not yet finished (running or waiting)."""
        return self._outstanding

    @property
    def full(self) -> bool:
        """Whether :meth:`acquire` would raise now (a request that sees it full need not send its body)."""
        return self._outstanding >= self.capacity

    def acquire(self) -> Slot:
        """Reserve a place or raise :class:`PoolFull` at once."""
        with self._lock:
            if self._outstanding >= self.capacity:
                raise PoolFull()
            self._outstanding += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def shutdown(self) -> None:
        """Let running work finish, then stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=False)


class Slot:
    """One admitted request's place in the pool; released when its work ends (even after a timeout)."""

    def __init__(self, pool: InferencePool) -> None:
        self._pool = pool
        self._submitted = False
        self._released = False

    async def run(self, fn: Callable[[], T], timeout_s: float) -> T:
        """Run ``fn`` on a worker thread, off the event loop; :class:`InferenceTimeout` after the timeout."""
        self._submitted = True
        future: Future[T] = self._pool._executor.submit(fn)
        future.add_done_callback(lambda _f: self._done())
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
        except TimeoutError:
            raise InferenceTimeout() from None

    def _done(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release()

    def close(self) -> None:
        """Release the place if no work was submitted (work releases it when it finishes)."""
        if not self._submitted:
            self._done()

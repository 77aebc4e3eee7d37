"""The FastAPI application: upload photos, get pre-filled records, review them, fetch evidence.

Build it with :func:`create_app` (settings, and optionally a reader factory and a store, so tests
and the lead's real reader plug in with one argument). Nothing is loaded at import.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, Header, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marktrace.inference.export import ExportError, record_of
from marktrace.inference.images import ImageLoadError, ImageTooLargeError, probe_image
from marktrace.inference.reader import Reader
from marktrace.inference.records import (
    REQUIRED_FOR_TRACE,
    TracingHumanFields,
    TracingRequest,
    UnconfirmedFieldsError,
    build_tracing_request,
    tracing_request_problem,
)
from marktrace.inference.schema import ItemResult
from marktrace.service.evidence import EvidenceError, EvidenceStore, TempUpload
from marktrace.service.exports import render_report, schema_bytes, schema_names, schema_summary
from marktrace.service.limits import (
    InferencePool,
    InferenceTimeout,
    PoolFull,
    UploadError,
    UploadGate,
    UploadsFull,
    parse_lights,
    parse_upload,
    sniff_image_type,
    upload_text_problem,
)
from marktrace.service.review import ReviewError, ReviewRequest, apply_changes
from marktrace.service.settings import ServiceSettings
from marktrace.service.store import TIME_FORMAT, AuditEvent, IdempotencyConflict, Principal, Store, StoredFile

_log = logging.getLogger("marktrace.service")

PROBLEM_JSON = "application/problem+json"
SCHEMA_JSON = "application/schema+json"
API_VERSION = "1"


# --------------------------------------------------------------------------------------------
# Problems (RFC 9457)
# --------------------------------------------------------------------------------------------
class Problem(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}


class ProblemBody(BaseModel):
    """The body of every error answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


IdentParam = Annotated[str, PathParam(max_length=64)]
"""An identification id in a path (a UUID; longer ones are refused before any lookup or audit entry)."""
ShaParam = Annotated[str, PathParam(max_length=64)]
"""A SHA-256 in a path (64 hex characters)."""


def problem_response(
    status: int,
    title: str,
    detail: str | None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body = ProblemBody(title=title, status=status, detail=detail, instance=instance)
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}, "description": desc}
    for code, desc in (
        (401, "missing, unknown or revoked API key"),
        (404, "no such identification in your lab"),
        (422, "invalid input"),
    )
}


# --------------------------------------------------------------------------------------------
# Response models
# --------------------------------------------------------------------------------------------
class EvidenceFileOut(BaseModel):
    """An original or derived image attached to an identification."""

    name: str
    sha256: str
    size: int
    url: str


class IdentificationOut(ItemResult):
    """An identification: the batch record's shape plus id, lab metadata and evidence links."""

    id: str
    lab: str
    created_at: str
    created_by: str
    case_ref: str | None = None
    notes: str | None = None
    version: int
    originals: list[EvidenceFileOut] = Field(default_factory=list)
    derived: list[EvidenceFileOut] = Field(default_factory=list)


class IdentificationPage(BaseModel):
    """One page of identifications, newest first."""

    items: list[IdentificationOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None = None


class TracingRequestBody(TracingHumanFields):
    """The human-only fields of an ITI tracing request (para 17 (a), (c)), and whether to force it."""

    force: bool = False
    """Issue the request although serial number, manufacturer or country of manufacture are not
    confirmed; it is then stamped ``unconfirmed`` with the list of those fields."""


class SchemaInfo(BaseModel):
    """A published JSON Schema."""

    name: str
    title: str | None = None
    id: str | None = None
    url: str


class SchemaList(BaseModel):
    """The published JSON Schemas (identification record, tracing request)."""

    items: list[SchemaInfo]


class Health(BaseModel):
    """Liveness/readiness answer."""

    status: Literal["ok", "not_ready"]
    checks: dict[str, bool] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    """The app's Prometheus metrics, on their own registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "marktrace_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "marktrace_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60),
        )
        self.queue_depth = Gauge("marktrace_inference_queue_depth", "inference requests admitted", registry=r)
        self.inference = Histogram(
            "marktrace_inference_seconds", "inference time per model/stage", ["model"], registry=r
        )
        self.rejected = Counter("marktrace_rejected_total", "requests refused", ["reason"], registry=r)
        self.errors = Counter("marktrace_errors_total", "server-side errors", ["kind"], registry=r)


class MetricsMiddleware:
    """Counts requests and latencies by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request and time it for the metrics, then pass it on (ASGI)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], label, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], label).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses bodies over the request cap: by Content-Length at once, and by counting streamed bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a body over ``max_bytes`` with 413: at once by its Content-Length, else as streamed bytes pass it.

        A chunked body (no Content-Length) is counted as the route reads it; past the cap the read raises a
        413 HTTPException, so nothing more is buffered and the client gets the 413.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    response = problem_response(
                        413,
                        "Payload Too Large",
                        f"request body of {declared:,} bytes is over the limit of {self.max_bytes:,}",
                        instance=scope.get("path"),
                        headers={"Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # an HTTPException passes through FastAPI's body parsing and is answered as problem+json
                    raise StarletteHTTPException(413, f"request body is over the limit of {self.max_bytes:,} bytes",
                                                 headers={"Connection": "close"})
            return message

        await self.app(scope, counted_receive, send)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------
class ServiceState:
    """Everything the routes share: settings, store, evidence, reader, pool, metrics, readiness."""

    def __init__(
        self, settings: ServiceSettings, store: Store, reader_factory: Callable[[], Reader], metrics: Metrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.evidence = EvidenceStore(settings.resolved_evidence_dir)
        self.reader_factory = reader_factory
        self.reader: Reader | None = None
        self.reader_error: str | None = None
        self.pool = InferencePool(settings.workers, settings.queue_size)
        self.uploads = UploadGate(settings.resolved_max_uploads)
        self.metrics = metrics
        self.draining = False
        self.ready_event = threading.Event()

    def load_reader(self) -> None:
        """Build and warm the reader (runs on a background thread at start)."""
        try:
            reader = self.reader_factory()
            if self.settings.warm_up:
                reader.warm_up()
            self.reader = reader
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and in the server log
            self.reader_error = f"{type(exc).__name__}: {exc}"
            self.metrics.errors.labels("reader_load").inc()
            _log.error("the reader failed to load: %s", self.reader_error)
        finally:
            self.ready_event.set()


def resolve_reader_factory(spec: str, settings: ServiceSettings | None = None) -> Callable[[], Reader]:
    """Turn ``module:attr.attr`` into a zero-argument callable returning a Reader.

    A callable that takes a ``settings`` argument (like ``MarkingReader.from_settings``) gets reader settings
    made from the service's: ``threads_per_worker`` onnxruntime threads, ``model_variant``, ``max_pixels`` and
    ``lexicon_makers``.
    """
    module_name, _, attr_path = spec.partition(":")

    def factory() -> Reader:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
        if settings is not None and "settings" in inspect.signature(obj).parameters:
            from marktrace.inference.pipeline import ReaderSettings

            reader_settings = ReaderSettings(
                threads=settings.threads_per_worker,
                variant=settings.model_variant,
                max_pixels=settings.max_pixels,
                lexicon_makers=settings.lexicon_makers,
            )
            reader: Reader = obj(settings=reader_settings)
        else:
            reader = obj()
        return reader

    return factory


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(_state)]
_bearer = HTTPBearer(auto_error=False, description="A lab API key: `Authorization: Bearer mtk_...`")


def _principal(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    principal = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        principal = state.store.authenticate(credentials.credentials.strip())
    if principal is None:
        state.store.audit(
            AuditEvent(
                actor="anonymous",
                lab=None,
                event="auth_failed",
                target=f"{request.method} {request.url.path}",
                outcome="denied",
                detail={
                    "client": request.client.host if request.client else None,
                    "reason": "missing" if credentials is None else "unknown_or_revoked",
                },
            )
        )
        raise Problem(
            401, "Unauthorized", "a valid API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def _require_examiner(
    principal: Principal, state: ServiceState, target: str, event: str = "change", act: str = "change records"
) -> None:
    if principal.role != "examiner":
        state.store.audit(AuditEvent(principal.actor, principal.lab, event, target, "forbidden", {}))
        raise Problem(403, "Forbidden", f"viewer keys cannot {act}")


def _out(row: dict[str, Any]) -> IdentificationOut:
    ident = row["id"]
    files: list[StoredFile] = row["files"]
    return IdentificationOut(
        **row["result"],
        id=ident,
        lab=row["lab"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        case_ref=row["case_ref"],
        notes=row["notes"],
        version=row["version"],
        originals=[
            EvidenceFileOut(
                name=f.name,
                sha256=f.sha256,
                size=f.size,
                url=f"/v1/identifications/{ident}/originals/{f.sha256}",
            )
            for f in files
            if f.kind == "original"
        ],
        derived=[
            EvidenceFileOut(
                name=f.name,
                sha256=f.sha256,
                size=f.size,
                url=f"/v1/identifications/{ident}/derived/{f.sha256}",
            )
            for f in files
            if f.kind == "derived"
        ],
    )


def _fingerprint(hashes: list[tuple[str, str]], fields: dict[str, str]) -> str:
    payload = json.dumps({"files": hashes, "fields": fields}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _read_item(
    reader: Reader, item: str, files: list[tuple[str, bytes]], lights: dict[str, tuple[float, float]] | None
) -> tuple[ItemResult, dict[str, bytes]]:
    with_views = getattr(reader, "read_with_views", None)
    if callable(with_views):
        result, derived = with_views(item, files, lights)
        return result, dict(derived)
    return reader.read_uploaded(item, files, lights), {}


# --------------------------------------------------------------------------------------------
# App factory
# --------------------------------------------------------------------------------------------
def create_app(
    settings: ServiceSettings | None = None,
    reader_factory: Callable[[], Reader] | None = None,
    store: Store | None = None,
) -> FastAPI:
    """Build the service app.

    Args:
        settings: validated settings (default: from the environment).
        reader_factory: zero-argument callable returning a Reader (default: ``settings.reader``).
        store: an open Store (default: one on ``settings.resolved_database_url``).
    """
    settings = settings or ServiceSettings()
    factory = reader_factory or resolve_reader_factory(settings.reader, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_store = store or Store(settings.resolved_database_url)
        await run_in_threadpool(the_store.migrate)
        state = ServiceState(settings, the_store, factory, app_metrics)
        await run_in_threadpool(state.evidence.ensure)
        app.state.service = state
        threading.Thread(target=state.load_reader, name="marktrace-reader-load", daemon=True).start()
        try:
            yield
        finally:
            state.draining = True
            await run_in_threadpool(state.pool.shutdown)
            if store is None:
                the_store.close()

    app = FastAPI(
        title="marktrace forensic lab API",
        version=API_VERSION,
        description="Upload photos of small-arms markings, get pre-filled identification records.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN, which an air-gapped lab cannot reach:
        # a blank page. The schema itself is served (/openapi.json) for any offline viewer or client generator.
        docs_url=None,
        redoc_url=None,
    )
    app_metrics = Metrics()

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the exception's headers travel on (a 405's ``Allow``)
        return problem_response(exc.status_code, _title(exc.status_code), str(exc.detail), request.url.path,
                                dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()[:10]
        )
        return problem_response(422, "Unprocessable Content", errors, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        state: ServiceState | None = getattr(request.app.state, "service", None)
        if state is not None:
            state.metrics.errors.labels("unhandled").inc()
        return problem_response(500, "Internal Server Error", type(exc).__name__, request.url.path)

    # -- health and metrics ------------------------------------------------------------------
    @app.get("/livez", response_model=Health, tags=["health"])
    async def livez() -> Health:
        """The process answers (the event loop is alive)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz(request: Request) -> Response:
        """Ready: reader loaded and warmed, database and evidence folder writable, not draining."""
        state = _state(request)
        checks = {
            "reader": state.reader is not None,
            "database": await run_in_threadpool(state.store.ping),
            "evidence": state.evidence.writable(),
            "not_draining": not state.draining,
        }
        ok = all(checks.values())
        body = Health(status="ok" if ok else "not_ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        state = _state(request)
        state.metrics.queue_depth.set(state.pool.depth)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- identifications ---------------------------------------------------------------------
    upload_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "lights": {
                                "type": "string",
                                "description": 'JSON: {"file name": [azimuth_deg, elevation_deg]}',
                            },
                            "case_ref": {"type": "string", "maxLength": 200},
                            "notes": {"type": "string"},
                        },
                    }
                }
            },
        }
    }

    @app.post(
        "/v1/identifications",
        status_code=201,
        response_model=IdentificationOut,
        tags=["identifications"],
        openapi_extra=upload_schema,
        responses={
            **_ERRORS,
            400: {"model": ProblemBody, "description": "malformed body"},
            403: {"model": ProblemBody, "description": "viewer key"},
            408: {"model": ProblemBody, "description": "the body did not arrive within the upload timeout"},
            413: {"model": ProblemBody, "description": "file, request or image too large"},
            415: {"model": ProblemBody, "description": "not an image"},
            503: {"model": ProblemBody, "description": "busy or not ready; retry after Retry-After seconds"},
        },
    )
    async def create_identification(
        request: Request,
        principal: PrincipalDep,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """Upload one photo (or several of one marking under different lights) and read it."""
        state = _state(request)
        target = "identification:new"
        await run_in_threadpool(_require_examiner, principal, state, target)
        retry = {"Retry-After": str(settings.retry_after_s)}
        if state.reader_error:
            # the cause (with the server's model paths) goes to the server log, not to every client; waiting
            # does not help, so no Retry-After
            state.metrics.rejected.labels("not_ready").inc()
            raise Problem(503, "Service Unavailable", "the models failed to load; an operator must fix the "
                          "service (the cause is in the server log)")
        if state.draining or state.reader is None:
            state.metrics.rejected.labels("not_ready").inc()
            detail = "the service is shutting down" if state.draining else "the models are still loading"
            raise Problem(503, "Service Unavailable", detail, headers=retry)
        def queue_full() -> Problem:
            state.metrics.rejected.labels("queue_full").inc()
            return Problem(503, "Service Unavailable", "the inference queue is full", headers=retry)

        if state.pool.full:  # no place now: refuse before the client sends its photos
            raise queue_full()
        upload = None
        slot = None

        async def reject(status: int, title: str, detail: str, extra: dict[str, Any]) -> Problem:
            await run_in_threadpool(
                state.store.audit,
                AuditEvent(
                    principal.actor, principal.lab, "create", target, "rejected", {"status": status, **extra}
                ),
            )
            return Problem(status, title, detail)

        try:
            try:
                # the body arrives holding an upload place, not an inference place
                with state.uploads.enter():
                    upload = await parse_upload(
                        request.headers.get("content-type", ""),
                        request.stream(),
                        state.evidence,
                        max_file_bytes=settings.max_file_bytes,
                        max_request_bytes=settings.max_request_bytes,
                        max_files=settings.max_files,
                        timeout_s=settings.upload_timeout_s,
                    )
            except UploadsFull:
                state.metrics.rejected.labels("uploads_full").inc()
                raise Problem(
                    503, "Service Unavailable", "too many uploads are arriving at once", headers=retry
                ) from None
            except UploadError as exc:
                if exc.status == 408:
                    state.metrics.rejected.labels("upload_timeout").inc()
                raise await reject(exc.status, exc.title, exc.detail, {"reason": exc.detail}) from None
            for _, temp in upload.files:
                await run_in_threadpool(temp.finish)
            names = [n for n, _ in upload.files]
            hashes = [(n, t.sha256) for n, t in upload.files]
            if not upload.files:
                raise await reject(422, "Unprocessable Content", "no photo in the 'files' part", {})
            if len(set(names)) != len(names):
                raise await reject(422, "Unprocessable Content", "two uploaded files have the same name", {})
            problem = upload_text_problem(names, upload.fields)
            if problem is not None:
                raise await reject(422, "Unprocessable Content", problem, {})
            fingerprint = _fingerprint(hashes, upload.fields)
            if idempotency_key:
                existing = await run_in_threadpool(
                    state.store.find_idempotent, principal.lab, idempotency_key
                )
                if existing is not None:
                    return _replay(existing, fingerprint, idempotency_key)
            files_bytes = await run_in_threadpool(_check_images, upload.files, settings.max_pixels)
            try:
                lights = parse_lights(upload.fields.get("lights"), names)
            except UploadError as exc:
                raise await reject(exc.status, exc.title, exc.detail, {"files": dict(hashes)}) from None
            reader = state.reader
            item = names[0] if len(names) == 1 else (upload.fields.get("case_ref") or "upload")
            try:
                slot = state.pool.acquire()
            except PoolFull:
                raise queue_full() from None
            state.metrics.queue_depth.set(state.pool.depth)
            try:
                result, derived = await slot.run(
                    lambda: _read_item(reader, item, files_bytes, lights), settings.request_timeout_s
                )
            except ImageLoadError as exc:
                raise await reject(422, "Unprocessable Content", str(exc), {"files": dict(hashes)}) from None
            except InferenceTimeout:
                state.metrics.rejected.labels("timeout").inc()
                raise Problem(
                    503, "Service Unavailable", "reading took longer than the request timeout", headers=retry
                ) from None
            if result.status == "error":
                raise await reject(
                    422,
                    "Unprocessable Content",
                    result.error or "the photos could not be read",
                    {"files": dict(hashes)},
                )
            for stage, ms in result.timings_ms.items():
                state.metrics.inference.labels(stage).observe(ms / 1000.0)
            row = await run_in_threadpool(
                _persist,
                state,
                principal,
                upload.files,
                result,
                derived,
                upload.fields,
                idempotency_key,
                fingerprint,
            )
        except UploadError as exc:
            raise await reject(exc.status, exc.title, exc.detail, {}) from None
        finally:
            if upload is not None:
                upload.discard()
            if slot is not None:
                slot.close()
                state.metrics.queue_depth.set(state.pool.depth)
        body = _out(row).model_dump(mode="json")
        return JSONResponse(body, status_code=201, headers={"Location": f"/v1/identifications/{row['id']}"})

    @app.get(
        "/v1/identifications",
        response_model=IdentificationPage,
        tags=["identifications"],
        responses=_ERRORS,
    )
    def list_identifications(
        state: StateDep,
        principal: PrincipalDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        case_ref: Annotated[str | None, Query(max_length=200)] = None,
        status: Literal["ok", "error"] | None = None,
        created_after: Annotated[str | None, Query(max_length=40, description="ISO-8601 UTC")] = None,
        created_before: Annotated[str | None, Query(max_length=40, description="ISO-8601 UTC")] = None,
    ) -> IdentificationPage:
        """Your lab's identifications, newest first; filter by case reference, status and creation time."""
        limit = min(limit, state.settings.page_size_max)
        rows, total = state.store.list_identifications(
            principal.lab,
            limit=limit,
            offset=offset,
            case_ref=case_ref,
            status=status,
            created_after=_stored_time("created_after", created_after),
            created_before=_stored_time("created_before", created_before),
        )
        state.store.audit(
            AuditEvent(
                principal.actor,
                principal.lab,
                "read",
                "identifications:list",
                "success",
                {"count": len(rows)},
            )
        )
        next_offset = offset + len(rows) if offset + len(rows) < total else None
        return IdentificationPage(
            items=[_out(r) for r in rows], total=total, limit=limit, offset=offset, next_offset=next_offset
        )

    def _get_or_404(state: ServiceState, principal: Principal, ident: str, event: str) -> dict[str, Any]:
        row = state.store.get_identification(principal.lab, ident)
        if row is None:
            state.store.audit(
                AuditEvent(principal.actor, principal.lab, event, f"identification:{ident}", "not_found", {})
            )
            raise Problem(404, "Not Found", f"no identification {ident} in your lab")
        return row

    @app.get(
        "/v1/identifications/{ident}",
        response_model=IdentificationOut,
        tags=["identifications"],
        responses=_ERRORS,
    )
    def get_identification(
        state: StateDep, principal: PrincipalDep, ident: IdentParam
    ) -> IdentificationOut:
        """One identification of your lab."""
        row = _get_or_404(state, principal, ident, "read")
        state.store.audit(
            AuditEvent(principal.actor, principal.lab, "read", f"identification:{ident}", "success", {})
        )
        return _out(row)

    @app.patch(
        "/v1/identifications/{ident}",
        response_model=IdentificationOut,
        tags=["identifications"],
        responses={
            **_ERRORS,
            403: {"model": ProblemBody, "description": "viewer key"},
            409: {"model": ProblemBody, "description": "the record changed since the given version"},
        },
    )
    def review_identification(
        state: StateDep, principal: PrincipalDep, ident: IdentParam, body: ReviewRequest
    ) -> IdentificationOut:
        """Confirm, correct or reject record fields; each change is kept in the field's history."""
        target = f"identification:{ident}"
        row = _get_or_404(state, principal, ident, "change")
        _require_examiner(principal, state, target)
        if body.version is not None and body.version != row["version"]:
            raise Problem(409, "Conflict", f"record is at version {row['version']}, not {body.version}")
        result = dict(row["result"])
        try:
            result["record"] = apply_changes(result.get("record", {}), body.changes, principal.actor)
        except ReviewError as exc:
            state.store.audit(
                AuditEvent(principal.actor, principal.lab, "change", target, "rejected", {"reason": str(exc)})
            )
            raise Problem(422, "Unprocessable Content", str(exc)) from None
        detail = {
            "changes": [c.model_dump(mode="json") for c in body.changes],
            "from_version": row["version"],
        }
        updated = state.store.update_result(
            principal.lab,
            ident,
            expected_version=row["version"],
            result=result,
            audit=AuditEvent(principal.actor, principal.lab, "change", target, "success", detail),
        )
        if updated is None:
            raise Problem(
                409, "Conflict", "the record changed while this review was applied; reload and retry"
            )
        return _out(updated)

    def _integrity_failure(
        state: ServiceState, principal: Principal, target: str, exc: EvidenceError, what: str
    ) -> Problem:
        """Count and audit a missing or altered evidence file; the 500 problem to raise."""
        state.metrics.errors.labels("evidence_integrity").inc()
        state.store.audit(
            AuditEvent(principal.actor, principal.lab, "export", target, "integrity_failure", {"error": str(exc)})
        )
        return Problem(500, "Evidence Integrity Failure", f"{what} is missing or altered")

    def _file_response(
        state: ServiceState, principal: Principal, ident: str, sha256: str, kind: str
    ) -> Response:
        row = _get_or_404(state, principal, ident, "export")
        match = next((f for f in row["files"] if f.kind == kind and f.sha256 == sha256), None)
        target = f"identification:{ident}/{kind}/{sha256}"
        if match is None:
            state.store.audit(AuditEvent(principal.actor, principal.lab, "export", target, "not_found", {}))
            raise Problem(404, "Not Found", f"no {kind} file {sha256} in identification {ident}")
        try:
            data = state.evidence.read_verified(sha256)
        except EvidenceError as exc:
            raise _integrity_failure(state, principal, target, exc, f"{kind} {sha256}") from None
        state.store.audit(
            AuditEvent(principal.actor, principal.lab, "export", target, "success", {"sha256": sha256})
        )
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": content_disposition(match.name),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "X-Content-SHA256": sha256,
                "Digest": f"sha-256={sha256}",
            },
        )

    file_responses: dict[int | str, dict[str, Any]] = {
        **_ERRORS,
        200: {"content": {"application/octet-stream": {}}, "description": "the file's exact bytes"},
    }

    @app.get(
        "/v1/identifications/{ident}/originals/{sha256}",
        tags=["evidence"],
        response_class=Response,
        responses=file_responses,
    )
    def get_original(state: StateDep, principal: PrincipalDep, ident: IdentParam, sha256: ShaParam) -> Response:
        """An original photo, byte-exact, as an attachment; ``X-Content-SHA256`` carries its hash."""
        return _file_response(state, principal, ident, sha256, "original")

    @app.get(
        "/v1/identifications/{ident}/derived/{sha256}",
        tags=["evidence"],
        response_class=Response,
        responses=file_responses,
    )
    def get_derived(state: StateDep, principal: PrincipalDep, ident: IdentParam, sha256: ShaParam) -> Response:
        """A derived image (enhanced view), as an attachment; its trail is in the record's ``views``."""
        return _file_response(state, principal, ident, sha256, "derived")

    # -- exports -----------------------------------------------------------------------------
    unconfirmed_desc = (
        "serial number, manufacturer or country of manufacture not confirmed or corrected by an examiner "
        "(the detail names them); send `force: true` for a request stamped `unconfirmed`"
    )

    @app.post(
        "/v1/identifications/{ident}/tracing-request",
        response_model=TracingRequest,
        tags=["exports"],
        responses={
            **_ERRORS,
            403: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}, "description": "viewer key"},
            409: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}, "description": unconfirmed_desc},
        },
    )
    def create_tracing_request(
        state: StateDep,
        principal: PrincipalDep,
        ident: IdentParam,
        body: TracingRequestBody,
    ) -> Response:
        """An ITI tracing request (schema `tracing-request.v1`) from the record and the human-only fields.

        Refused with 409 while serial number, manufacturer and country of manufacture are not all
        confirmed or corrected; with `force: true` it is issued stamped `unconfirmed`. Examiner keys only.
        `X-Content-SHA256` carries the hash of the body, which the audit log keeps.
        """
        target = f"identification:{ident}/tracing-request"
        row = _get_or_404(state, principal, ident, "export")
        _require_examiner(principal, state, target, "export", "export tracing requests")
        human = TracingHumanFields.model_validate(body.model_dump(exclude={"force"}))
        try:
            record = record_of(ItemResult.model_validate(row["result"]))
            request = build_tracing_request(record, human, force=body.force)
        except UnconfirmedFieldsError as exc:
            state.store.audit(
                AuditEvent(
                    principal.actor, principal.lab, "export", target, "refused", {"unconfirmed": exc.fields}
                )
            )
            raise Problem(
                409,
                "Conflict",
                f"tracing request refused: {', '.join(exc.fields)} not yet confirmed or corrected by an "
                f"examiner (required: {', '.join(REQUIRED_FOR_TRACE)}). Review them with PATCH "
                f"/v1/identifications/{ident}, or send \"force\": true to issue the request stamped "
                "'unconfirmed'",
            ) from None
        except (ExportError, ValidationError) as exc:
            detail = str(exc)
            if isinstance(exc, ValidationError):
                detail = tracing_request_problem(exc, correct_with="with PATCH")
            state.store.audit(
                AuditEvent(principal.actor, principal.lab, "export", target, "rejected", {"reason": detail})
            )
            raise Problem(422, "Unprocessable Content", detail) from None
        response = JSONResponse(request.model_dump(mode="json"))
        digest = hashlib.sha256(response.body).hexdigest()
        state.store.audit(
            AuditEvent(
                principal.actor,
                principal.lab,
                "export",
                target,
                "success",
                {
                    "request_id": request.request_id,
                    "case_reference": request.case_reference,
                    "forced": body.force,
                    "unconfirmed": request.unconfirmed_fields,
                    "sha256": digest,
                },
            )
        )
        response.headers["X-Content-SHA256"] = digest
        return response

    @app.get(
        "/v1/identifications/{ident}/report.pdf",
        tags=["exports"],
        response_class=Response,
        responses={
            **_ERRORS,
            200: {"content": {"application/pdf": {}}, "description": "the PDF report"},
            500: {
                "model": ProblemBody,
                "content": {PROBLEM_JSON: {}},
                "description": "an original is missing or altered in the evidence store",
            },
        },
    )
    def get_report(
        state: StateDep, principal: PrincipalDep, ident: IdentParam
    ) -> Response:
        """The printable PDF report: photos with the read boxes, enhanced views, fields with review state, trail.

        Photos come from the evidence store and are hash-checked first. `X-Content-SHA256` carries the
        PDF's hash, which the audit log keeps.
        """
        target = f"identification:{ident}/report.pdf"
        row = _get_or_404(state, principal, ident, "export")
        try:
            pdf = render_report(row["result"], row["files"], state.evidence)
        except EvidenceError as exc:
            raise _integrity_failure(state, principal, target, exc, f"an evidence file of {ident}") from None
        except ExportError as exc:
            state.store.audit(
                AuditEvent(principal.actor, principal.lab, "export", target, "rejected", {"reason": str(exc)})
            )
            raise Problem(422, "Unprocessable Content", str(exc)) from None
        digest = hashlib.sha256(pdf).hexdigest()
        state.store.audit(
            AuditEvent(
                principal.actor, principal.lab, "export", target, "success", {"sha256": digest, "size": len(pdf)}
            )
        )
        safe_id = "".join(c if c.isalnum() or c == "-" else "_" for c in str(row["id"]))[:64]
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="marktrace-{safe_id}.pdf"',
                "X-Content-Type-Options": "nosniff",
                "X-Content-SHA256": digest,
            },
        )

    # -- published schemas (public documents, no key needed) ---------------------------------
    @app.get("/v1/schemas", response_model=SchemaList, tags=["schemas"])
    def list_schemas() -> SchemaList:
        """The published JSON Schemas: identification record and ITI tracing request."""
        return SchemaList(
            items=[
                SchemaInfo(name=n, url=f"/v1/schemas/{n}", **schema_summary(n)) for n in schema_names()
            ]
        )

    @app.get(
        "/v1/schemas/{name}",
        tags=["schemas"],
        response_class=Response,
        responses={
            200: {"content": {SCHEMA_JSON: {}}, "description": "the schema file, byte for byte"},
            404: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}, "description": "no such schema"},
        },
    )
    def get_schema(name: Annotated[str, PathParam(max_length=100)]) -> Response:
        """One published JSON Schema (`identification-record.v1`, `tracing-request.v1`; `.json` optional)."""
        data = schema_bytes(name)
        if data is None:
            raise Problem(404, "Not Found", f"no schema {name!r}; see /v1/schemas")
        return Response(data, media_type=SCHEMA_JSON, headers={"Cache-Control": "public, max-age=3600"})

    # -- middleware --------------------------------------------------------------------------
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    return app


def _replay(existing: dict[str, Any], fingerprint: str, key: str) -> Response:
    if existing.get("request_fingerprint") != fingerprint:
        raise Problem(
            422,
            "Unprocessable Content",
            f"Idempotency-Key {key!r} was already used for a different request",
        )
    body = _out(existing).model_dump(mode="json")
    return JSONResponse(
        body,
        status_code=201,
        headers={"Location": f"/v1/identifications/{existing['id']}", "Idempotent-Replayed": "true"},
    )


def _check_images(files: list[tuple[str, TempUpload]], max_pixels: int) -> list[tuple[str, bytes]]:
    """Sniff and probe each upload; returns (name, bytes). Raises UploadError (413/415/422)."""
    out: list[tuple[str, bytes]] = []
    for name, temp in files:
        if temp.size == 0:
            raise UploadError(422, "Unprocessable Content", f"{name}: empty file (0 bytes)")
        sniffed = sniff_image_type(temp.head)
        if sniffed is None:
            raise UploadError(
                415, "Unsupported Media Type", f"{name}: content is not a JPEG, PNG, TIFF, BMP, WebP or HEIC image"
            )
        data = temp.path.read_bytes()
        try:
            fmt, _, _ = probe_image(data, name, max_pixels=max_pixels)
        except ImageTooLargeError as exc:
            raise UploadError(413, "Payload Too Large", str(exc)) from None
        except ImageLoadError as exc:
            raise UploadError(422, "Unprocessable Content", str(exc)) from None
        if fmt != sniffed:
            raise UploadError(
                415, "Unsupported Media Type", f"{name}: starts like {sniffed} but decodes as {fmt}"
            )
        out.append((name, data))
    return out


def _persist(
    state: ServiceState,
    principal: Principal,
    files: list[tuple[str, TempUpload]],
    result: ItemResult,
    derived: dict[str, bytes],
    fields: dict[str, str],
    idempotency_key: str | None,
    fingerprint: str,
) -> dict[str, Any]:
    """Make the evidence durable, then commit the record (never the other way round)."""
    stored: list[StoredFile] = []
    for position, (name, temp) in enumerate(files):
        size, digest = temp.size, temp.sha256
        state.evidence.commit_temp(temp, digest)
        stored.append(StoredFile("original", name, digest, size, position))
    for position, (view_name, data) in enumerate(sorted(derived.items())):
        digest, _ = state.evidence.put_bytes(data)
        stored.append(StoredFile("derived", view_name, digest, len(data), position))
    try:
        row = state.store.create_identification(
            lab=principal.lab,
            actor=principal.actor,
            result=result.to_json_dict(),
            status=result.status,
            files=stored,
            case_ref=(fields.get("case_ref") or None),
            notes=(fields.get("notes") or None),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            audit_detail={"files": {f.name: f.sha256 for f in stored if f.kind == "original"}},
        )
    except IdempotencyConflict:
        raise Problem(
            422,
            "Unprocessable Content",
            f"Idempotency-Key {idempotency_key!r} was already used for a different request",
        ) from None
    return row


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def _title(status: int) -> str:
    return _TITLES.get(status, "Error")


def _stored_time(name: str, value: str | None) -> str | None:
    """A query's ISO-8601 time as the store writes times (UTC, microseconds, ``Z``), so text order is time order.

    A time without a zone is taken as UTC; a date alone as its midnight.

    Raises:
        Problem: 422 naming the parameter when ``value`` is not an ISO-8601 date or time.
    """
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Problem(422, "Unprocessable Content",
                      f"{name}: {value!r} is not an ISO-8601 date or time (e.g. 2026-11-29T14:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def content_disposition(name: str) -> str:
    """An ``attachment`` Content-Disposition for a stored file's name, safe in a latin-1 header (RFC 6266).

    ``filename`` is an ASCII stand-in (other characters as ``_``); ``filename*`` carries the name itself,
    percent-encoded UTF-8 (RFC 5987), for the clients that read it.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1][:150] or "file"
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in base)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"

"""Storage behind one small interface: SQLite (WAL, synchronous=FULL) or PostgreSQL via SQLAlchemy Core.

Every identification query takes the caller's lab and filters on it; nothing here trusts a lab
named by a client. The audit log is append-only and hash-chained (each entry's hash covers the
previous hash and the entry's canonical JSON); SQLite/PostgreSQL triggers refuse UPDATE/DELETE.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

Role = Literal["examiner", "viewer"]
GENESIS_HASH = "0" * 64
_PG_AUDIT_LOCK = 7_262_775_001

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("lab", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("label", String(200)),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

identifications = Table(
    "identifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("lab", String(200), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("case_ref", String(200)),
    Column("notes", Text),
    Column("status", String(20), nullable=False),
    Column("idempotency_key", String(200)),
    Column("request_fingerprint", String(64)),
    Column("version", Integer, nullable=False),
    Column("result", Text, nullable=False),
    UniqueConstraint("lab", "idempotency_key", name="uq_identifications_lab_idem"),
    Index("ix_identifications_lab_created", "lab", "created_at"),
)

evidence_files = Table(
    "evidence_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("identification_id", String(36), ForeignKey("identifications.id"), nullable=False),
    Column("lab", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("name", String(500), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Index("ix_evidence_files_ident", "identification_id"),
)

AUDIT_TARGET_CHARS = 500
"""Longest audit target kept (the column's size); a longer one (an unauthenticated request's path) is cut."""

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("lab", String(200)),
    Column("event", String(40), nullable=False),
    Column("target", String(AUDIT_TARGET_CHARS)),
    Column("outcome", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)


class StoreError(RuntimeError):
    """The database refused an operation or is unreachable."""


class IdempotencyConflict(StoreError):
    """The idempotency key was used before for a different request."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: which key, which lab, which role."""

    key_id: str
    lab: str
    role: Role

    @property
    def actor(self) -> str:
        """How the caller appears in histories and the audit log."""
        return f"key:{self.key_id}@{self.lab}"


@dataclass(frozen=True)
class StoredFile:
    """One evidence file attached to an identification."""

    kind: str
    name: str
    sha256: str
    size: int
    position: int


@dataclass(frozen=True)
class AuditEvent:
    """An audit entry to append."""

    actor: str
    lab: str | None
    event: str
    target: str | None
    outcome: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditReport:
    """The result of checking the audit chain."""

    ok: bool
    entries: int
    problems: list[str]


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How the store writes times: UTC ISO-8601 with microseconds, so that text order is time order."""


def now_iso() -> str:
    """Current UTC time as ISO-8601 with microseconds (sorts as text)."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def hash_key(secret: str) -> str:
    """The stored form of an API key (keys are 192-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def audit_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """Hash of one audit entry chained to the previous one."""
    return hashlib.sha256(prev_hash.encode("ascii") + _canonical(entry)).hexdigest()


def _entry_fields(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "lab": row.lab,
        "event": row.event,
        "target": row.target,
        "outcome": row.outcome,
        "detail": json.loads(row.detail),
    }


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Store:
    """Records, keys, evidence-file rows and the audit chain in one SQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = _make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    # -- lifecycle ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the Alembic migrations up to head (idempotent)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK + 1})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> bool:
        """Whether the database answers and accepts a write transaction."""
        try:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self.engine.begin() as conn:
            yield conn

    # -- keys --------------------------------------------------------------------------------
    def create_key(self, lab: str, role: Role = "examiner", label: str | None = None) -> tuple[str, str]:
        """Create an API key for a lab; returns (key_id, secret). Only the hash is stored."""
        if not lab.strip():
            raise ValueError("lab name must not be empty")
        if role not in ("examiner", "viewer"):
            raise ValueError(f"role must be examiner or viewer, got {role!r}")
        key_id = secrets.token_hex(6)
        secret = f"mtk_{key_id}_{secrets.token_urlsafe(24)}"
        with self.transaction() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    lab=lab,
                    role=role,
                    key_hash=hash_key(secret),
                    label=label,
                    created_at=now_iso(),
                )
            )
            self._append_audit(
                conn, AuditEvent("admin", lab, "key_create", f"key:{key_id}", "success", {"role": role})
            )
        return key_id, secret

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by id; returns False if no active key has that id."""
        with self.transaction() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
            if row is None or row.revoked_at is not None:
                return False
            conn.execute(api_keys.update().where(api_keys.c.key_id == key_id).values(revoked_at=now_iso()))
            self._append_audit(
                conn, AuditEvent("admin", row.lab, "key_revoke", f"key:{key_id}", "success", {})
            )
        return True

    def list_keys(self) -> list[dict[str, Any]]:
        """All keys (without hashes)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [
            {k: getattr(r, k) for k in ("key_id", "lab", "role", "label", "created_at", "revoked_at")}
            for r in rows
        ]

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for an active key, or None."""
        digest = hash_key(secret)
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
        if row is None or row.revoked_at is not None or not secrets.compare_digest(row.key_hash, digest):
            return None
        return Principal(key_id=row.key_id, lab=row.lab, role=row.role)

    # -- audit -------------------------------------------------------------------------------
    def _append_audit(self, conn: Connection, ev: AuditEvent) -> str:
        if self.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
        last = conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        seq = 1 if last is None else last.seq + 1
        prev = GENESIS_HASH if last is None else last.hash
        target = ev.target[:AUDIT_TARGET_CHARS] if ev.target else ev.target  # a request's path is unbounded
        entry = {
            "seq": seq,
            "at": now_iso(),
            "actor": ev.actor,
            "lab": ev.lab,
            "event": ev.event,
            "target": target,
            "outcome": ev.outcome,
            "detail": ev.detail,
        }
        digest = audit_hash(prev, entry)
        conn.execute(
            audit_log.insert().values(
                seq=seq,
                at=entry["at"],
                actor=ev.actor,
                lab=ev.lab,
                event=ev.event,
                target=target,
                outcome=ev.outcome,
                detail=json.dumps(ev.detail, sort_keys=True),
                prev_hash=prev,
                hash=digest,
            )
        )
        return digest

    def audit(self, ev: AuditEvent) -> str:
        """Append one audit entry in its own transaction; returns its hash."""
        with self.transaction() as conn:
            return self._append_audit(conn, ev)

    def audit_entries(self, lab: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Recent audit entries, newest last (optionally one lab's)."""
        query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
        if lab is not None:
            query = query.where(audit_log.c.lab == lab)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [{**_entry_fields(r), "hash": r.hash} for r in reversed(rows)]

    def verify_audit(self) -> AuditReport:
        """Recompute the chain; report every broken link, gap or altered entry."""
        problems: list[str] = []
        prev = GENESIS_HASH
        expected_seq = 1
        count = 0
        with self.engine.connect() as conn:
            for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
                count += 1
                if row.seq != expected_seq:
                    problems.append(
                        f"entry {row.seq}: expected sequence number {expected_seq} (entries missing)"
                    )
                if row.prev_hash != prev:
                    problems.append(f"entry {row.seq}: previous-hash link broken")
                try:
                    fields = _entry_fields(row)
                except ValueError:
                    problems.append(f"entry {row.seq}: detail is not valid JSON")
                    fields = {}
                if fields and audit_hash(row.prev_hash, fields) != row.hash:
                    problems.append(f"entry {row.seq}: content does not match its hash (altered)")
                prev = row.hash
                expected_seq = row.seq + 1
        return AuditReport(ok=not problems, entries=count, problems=problems)

    # -- identifications ---------------------------------------------------------------------
    def create_identification(
        self,
        *,
        lab: str,
        actor: str,
        result: dict[str, Any],
        status: str,
        files: Sequence[StoredFile],
        case_ref: str | None,
        notes: str | None,
        idempotency_key: str | None,
        fingerprint: str,
        audit_detail: dict[str, Any],
    ) -> dict[str, Any]:
        """Insert a record, its file rows and the create audit entry in one transaction.

        Raises:
            IdempotencyConflict: if the key was used for a different request.
        """
        ident = str(uuid.uuid4())
        try:
            with self.transaction() as conn:
                conn.execute(
                    identifications.insert().values(
                        id=ident,
                        lab=lab,
                        created_at=now_iso(),
                        created_by=actor,
                        case_ref=case_ref,
                        notes=notes,
                        status=status,
                        idempotency_key=idempotency_key,
                        request_fingerprint=fingerprint,
                        version=1,
                        result=json.dumps(result),
                    )
                )
                for f in files:
                    conn.execute(
                        evidence_files.insert().values(
                            identification_id=ident,
                            lab=lab,
                            kind=f.kind,
                            name=f.name,
                            sha256=f.sha256,
                            size=f.size,
                            position=f.position,
                        )
                    )
                self._append_audit(
                    conn, AuditEvent(actor, lab, "create", f"identification:{ident}", "success", audit_detail)
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.find_idempotent(lab, idempotency_key)
            if existing is None:
                raise
            if existing["request_fingerprint"] != fingerprint:
                raise IdempotencyConflict(idempotency_key) from None
            return existing
        found = self.get_identification(lab, ident)
        assert found is not None
        return found

    def find_idempotent(self, lab: str, key: str) -> dict[str, Any] | None:
        """The identification created earlier with this idempotency key, in this lab."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(identifications.c.id).where(
                    identifications.c.lab == lab, identifications.c.idempotency_key == key
                )
            ).first()
        return None if row is None else self.get_identification(lab, row.id)

    def _row_to_dict(self, conn: Connection, row: Any) -> dict[str, Any]:
        files = conn.execute(
            select(evidence_files)
            .where(evidence_files.c.identification_id == row.id)
            .order_by(evidence_files.c.kind, evidence_files.c.position)
        ).all()
        return {
            "id": row.id,
            "lab": row.lab,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "case_ref": row.case_ref,
            "notes": row.notes,
            "status": row.status,
            "version": row.version,
            "idempotency_key": row.idempotency_key,
            "request_fingerprint": row.request_fingerprint,
            "result": json.loads(row.result),
            "files": [StoredFile(f.kind, f.name, f.sha256, f.size, f.position) for f in files],
        }

    def get_identification(self, lab: str, ident: str) -> dict[str, Any] | None:
        """One identification of this lab, or None (missing and other labs' look the same)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(identifications).where(identifications.c.id == ident, identifications.c.lab == lab)
            ).first()
            return None if row is None else self._row_to_dict(conn, row)

    def list_identifications(
        self,
        lab: str,
        *,
        limit: int,
        offset: int,
        case_ref: str | None = None,
        status: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of this lab's identifications, newest first, and the total matching."""
        conds = [identifications.c.lab == lab]
        if case_ref is not None:
            conds.append(identifications.c.case_ref == case_ref)
        if status is not None:
            conds.append(identifications.c.status == status)
        if created_after is not None:
            conds.append(identifications.c.created_at >= created_after)
        if created_before is not None:
            conds.append(identifications.c.created_at < created_before)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(identifications).where(*conds)).scalar_one()
            rows = conn.execute(
                select(identifications)
                .where(*conds)
                .order_by(identifications.c.created_at.desc(), identifications.c.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [self._row_to_dict(conn, r) for r in rows], int(total)

    def update_result(
        self,
        lab: str,
        ident: str,
        *,
        expected_version: int,
        result: dict[str, Any],
        audit: AuditEvent,
    ) -> dict[str, Any] | None:
        """Replace the result if the version still matches; the new row, or None on a stale version."""
        with self.transaction() as conn:
            updated = conn.execute(
                identifications.update()
                .where(
                    identifications.c.id == ident,
                    identifications.c.lab == lab,
                    identifications.c.version == expected_version,
                )
                .values(result=json.dumps(result), version=expected_version + 1)
            )
            if updated.rowcount != 1:
                return None
            self._append_audit(conn, audit)
        return self.get_identification(lab, ident)

    def all_file_rows(self) -> list[tuple[str, str, str]]:
        """(identification id, kind, sha256) of every evidence row (for integrity scrubs and tests)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(evidence_files.c.identification_id, evidence_files.c.kind, evidence_files.c.sha256)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

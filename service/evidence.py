"""The evidence folder: originals and derived images stored by SHA-256, written atomically, never modified.

Layout: ``<root>/sha256/ab/cd/<hex>``; uploads stream into ``<root>/tmp/`` (same filesystem) first,
then are fsynced, renamed into place, and the directory is fsynced. Same bytes → same name, so a
retried write is a no-op after the existing file's hash is verified.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from marktrace.inference.images import sha256_file


class EvidenceError(RuntimeError):
    """The evidence folder is unusable or a stored file does not match its hash."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempUpload:
    """A file being received: bytes are written to a temp file and hashed as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "xb")  # noqa: SIM115 - closed in finish()/discard()
        self._digest = hashlib.sha256()
        self.size = 0
        self.head = b""
        """The first bytes (for content sniffing)."""

    def write(self, data: bytes) -> None:
        """Append a chunk."""
        self._handle.write(data)
        self._digest.update(data)
        if len(self.head) < 64:
            self.head = (self.head + data)[:64]
        self.size += len(data)

    def finish(self) -> str:
        """Flush and fsync; returns the hex SHA-256."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        return self._digest.hexdigest()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""
        return self._digest.hexdigest()

    def discard(self) -> None:
        """Close and delete the temp file."""
        if not self._handle.closed:
            self._handle.close()
        self.path.unlink(missing_ok=True)


class EvidenceStore:
    """Content-addressed, write-once storage for evidence files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.objects = self.root / "sha256"

    def ensure(self) -> None:
        """Create the folders and sweep temp files left by a crash (they were never acknowledged)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def writable(self) -> bool:
        """Whether new evidence can be written now."""
        return os.access(self.tmp_dir, os.W_OK) and os.access(self.objects, os.W_OK)

    def new_temp(self) -> TempUpload:
        """Open a fresh temp file for an incoming upload."""
        return TempUpload(self.tmp_dir / f"up-{secrets.token_hex(12)}.part")

    def path_for(self, sha256: str) -> Path:
        """Where the file with this hash lives."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise EvidenceError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.objects / sha256[:2] / sha256[2:4] / sha256

    def commit_temp(self, temp: TempUpload, sha256: str) -> Path:
        """Move a finished temp file into place atomically (or drop it if the same bytes are stored)."""
        final = self.path_for(sha256)
        if final.exists():
            temp.discard()
            self._verify_existing(final, sha256)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp.path, final)
        os.chmod(final, 0o444)
        _fsync_dir(final.parent)
        return final

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store bytes (e.g. a derived image) atomically; returns (sha256, path)."""
        temp = self.new_temp()
        try:
            temp.write(data)
            digest = temp.finish()
        except BaseException:
            temp.discard()
            raise
        return digest, self.commit_temp(temp, digest)

    def _verify_existing(self, path: Path, sha256: str) -> None:
        actual = sha256_file(path)
        if actual != sha256:
            raise EvidenceError(f"{path}: stored evidence hash {actual} does not match its name {sha256}")

    def read_verified(self, sha256: str) -> bytes:
        """Read a stored file and check its hash.

        Raises:
            EvidenceError: if missing or altered.
        """
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EvidenceError(f"{path}: evidence file missing ({exc.strerror or exc})") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise EvidenceError(f"{path}: evidence file was altered (hash mismatch)")
        return data

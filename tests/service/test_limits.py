"""Upload streaming and admission: the body's time limit, cleanup on every way out, the upload gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marktrace.service.evidence import EvidenceStore
from marktrace.service.limits import InferencePool, UploadError, UploadGate, UploadsFull, parse_upload

BOUNDARY = "marktraceboundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _head(name: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()


async def _slow_body(chunks: list[bytes], pause_s: float) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(pause_s)


def _temp_files(store: EvidenceStore) -> list[Path]:
    return sorted(store.tmp_dir.iterdir())


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    evidence = EvidenceStore(tmp_path / "evidence")
    evidence.ensure()
    return evidence


def test_a_complete_body_within_the_time_limit_is_kept(store: EvidenceStore) -> None:
    body = [_head("a.png"), b"\x89PNG" + b"x" * 100, f"\r\n--{BOUNDARY}--\r\n".encode()]
    upload = asyncio.run(parse_upload(CONTENT_TYPE, _slow_body(body, 0.01), store, max_file_bytes=10_000,
                                      max_request_bytes=20_000, max_files=4, timeout_s=5.0))
    assert [name for name, _ in upload.files] == ["a.png"]
    assert upload.files[0][1].size == 104
    upload.discard()


def test_a_body_slower_than_the_time_limit_is_408_and_leaves_no_temp_file(store: EvidenceStore) -> None:
    body = [_head("slow.png"), b"\x89PNG" + b"x" * 100, b"y" * 100, f"\r\n--{BOUNDARY}--\r\n".encode()]
    with pytest.raises(UploadError) as err:
        asyncio.run(parse_upload(CONTENT_TYPE, _slow_body(body, 0.2), store, max_file_bytes=10_000,
                                 max_request_bytes=20_000, max_files=4, timeout_s=0.3))
    assert err.value.status == 408
    assert "did not arrive within 0.3 s" in err.value.detail and "bytes received" in err.value.detail
    assert _temp_files(store) == []


def test_a_cancelled_upload_leaves_no_temp_file(store: EvidenceStore) -> None:
    body = [_head("gone.png"), b"\x89PNG" + b"x" * 100] + [b"y" * 10] * 100

    async def client_goes_away() -> None:
        task = asyncio.create_task(parse_upload(CONTENT_TYPE, _slow_body(body, 0.01), store, max_file_bytes=10_000,
                                                max_request_bytes=20_000, max_files=4))
        await asyncio.sleep(0.1)
        assert len(_temp_files(store)) == 1  # the part is being written
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(client_goes_away())
    assert _temp_files(store) == []


def test_the_upload_gate_holds_its_limit_and_frees_places_on_errors() -> None:
    gate = UploadGate(2)
    with gate.enter(), gate.enter():
        assert gate.inside == 2
        with pytest.raises(UploadsFull), gate.enter():
            pass
    assert gate.inside == 0
    with pytest.raises(RuntimeError), gate.enter():
        raise RuntimeError("upload failed")
    assert gate.inside == 0  # a failed upload gives its place back


def test_the_pool_says_when_it_is_full() -> None:
    pool = InferencePool(workers=1, queue_size=1)
    try:
        first = pool.acquire()
        assert not pool.full
        second = pool.acquire()
        assert pool.full
        second.close()
        assert not pool.full
        first.close()
    finally:
        pool.shutdown()


def test_a_body_cut_before_its_closing_boundary_is_refused_and_leaves_no_temp_file(store: EvidenceStore) -> None:
    body = [_head("cut.png"), b"\x89PNG" + b"x" * 100]  # the connection ended before "--boundary--"
    with pytest.raises(UploadError) as err:
        asyncio.run(parse_upload(CONTENT_TYPE, _slow_body(body, 0.0), store, max_file_bytes=10_000,
                                 max_request_bytes=20_000, max_files=4, timeout_s=5.0))
    assert err.value.status == 400 and "before its closing boundary" in err.value.detail
    assert _temp_files(store) == []


def test_upload_names_and_text_fields_are_held_to_what_the_store_keeps() -> None:
    from marktrace.service.limits import upload_text_problem

    assert upload_text_problem(["a.png", "é" * 255], {"case_ref": "C" * 200, "notes": "n" * 10_000}) is None
    assert "is 256 characters long; at most 255" in str(upload_text_problem(["x" * 256], {}))
    too_long = upload_text_problem(["a.png"], {"case_ref": "C" * 201})
    assert "'case_ref' is 201 characters long; at most 200" in str(too_long)
    assert "'notes' is 10001 characters" in str(upload_text_problem(["a.png"], {"notes": "n" * 10_001}))

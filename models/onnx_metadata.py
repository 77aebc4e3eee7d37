"""Read and rewrite an ONNX file's ``metadata_props`` (needs the ``onnx`` package; no torch)."""

from __future__ import annotations

from pathlib import Path

import onnx


def read_metadata(path: Path) -> dict[str, str]:
    """The file's metadata as a dict (the graph's external data is not loaded)."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def write_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace the file's metadata with ``props`` (keys sorted); the file is replaced atomically."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)

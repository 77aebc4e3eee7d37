"""Publish a training run: export both models to ONNX, record them in the registry with their SHA-256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from marktrace.inference.images import sha256_file
from marktrace.models.registry import REGISTRY_FILE
from marktrace.training.run import atomic_write_text

DETECTOR_NAME = "marktrace-line-detector"
RECOGNIZER_NAME = "marktrace-line-recognizer"
RESTORER_NAME = "marktrace-restorer"


def _parity_samples(height: int) -> tuple[np.ndarray, np.ndarray]:
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.detect import prepare_detector_input
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.recognize import batch_line_crops

    marking = render_marking(424242, SynthConfig(fonts="heldout", rotation="small"))
    det = prepare_detector_input(marking.image, 640).tensor
    crops = [
        rectify_line(marking.image, pad_quad(np.asarray(line.polygon, np.float32), 0.2, 0.1), height)
        for line in marking.lines
    ]
    return det, batch_line_crops(crops, height)


def update_registry(folder: Path, entries: list[dict[str, Any]]) -> None:
    """Add or replace entries (by file name) in ``registry.json``; new entries become the default of their task.

    The registry is replaced atomically (temporary file in the same folder, then ``os.replace``).
    """
    path = folder / REGISTRY_FILE
    data = json.loads(path.read_text()) if path.exists() else {"models": []}
    models = [m for m in data["models"] if m["file"] not in {e["file"] for e in entries}]
    for entry in entries:
        if entry.get("default"):
            for m in models:
                if m["task"] == entry["task"] and m.get("variant", "fp32") == entry.get("variant", "fp32"):
                    m["default"] = False
        models.append(entry)
    data["models"] = sorted(models, key=lambda m: (m["task"], m["file"]))
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _run_info(run: Path) -> tuple[str, dict[str, str]]:
    info = json.loads((run / "run.json").read_text())
    extra = {"training_run": run.name, "training_seed": str(info.get("seed", "")), "license": "Apache-2.0"}
    return str(info.get("commit", "unknown")), extra


def export_run(
    run: Path,
    out: Path,
    version: str,
    checkpoint: str = "best",
    register: bool = True,
    recognizer_run: Path | None = None,
    calibrate_images: int = 200,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a run's detector and recognizer checkpoints; returns paths, parity figures and checksums.

    An ONNX file that already exists in ``out`` under the same name and version is never replaced unless
    ``overwrite`` (checked for every target before anything is exported). When an export fails, the files this
    call created are removed again and the registry is left as it was.

    The exported detector's line geometry is calibrated on ``calibrate_images`` synthetic markings
    (:mod:`marktrace.models.calibrate`; 0 skips it). A detector that matches too few lines to fit (an
    untrained one) keeps the uncalibrated geometry, and the summary says why.

    A network the run did not train (its steps were 0, e.g. ``cpu-recognizer-finetune``) is not exported,
    so the shipped one stays the default. ``recognizer_run`` takes the recognizer from another run (each
    model records its own run and commit).
    A restorer run (``task: restoration``) is handed to :func:`export_restorer_run`.
    """
    from marktrace.models.export import export_detector, export_recognizer, refuse_existing

    if is_restorer_run(run):
        return export_restorer_run(run, out, version, checkpoint, register, overwrite)
    trained = trained_networks(run)
    export_detector_too = "detector" in trained
    export_recognizer_too = recognizer_run is not None or "recognizer" in trained
    if not (export_detector_too or export_recognizer_too):
        raise ValueError(f"{run}: the run trained neither network (detector and recognizer steps are 0)")
    det_file = out / f"{DETECTOR_NAME}-v{version}.onnx"
    rec_file = out / f"{RECOGNIZER_NAME}-v{version}.onnx"
    targets = [f for f, wanted in ((det_file, export_detector_too), (rec_file, export_recognizer_too)) if wanted]
    for target in targets:
        refuse_existing(target, overwrite)  # before any work: nothing is exported when one target exists
    fresh = [f for f in targets if not f.exists()]  # only these may be removed again on a failure
    det_commit, det_extra = _run_info(run)
    rec_source = recognizer_run or run
    rec_commit, rec_extra = _run_info(rec_source)
    rec_checkpoint = rec_source / "checkpoints" / f"recognizer-{checkpoint}.pt"
    rec_height = 64
    if export_recognizer_too:
        import torch

        # the graph is traced at the height the recognizer was trained at (its metadata says so too)
        rec_height = int(torch.load(rec_checkpoint, map_location="cpu", weights_only=True).get("height", 64))
    det_sample, rec_sample = _parity_samples(rec_height)
    results: dict[str, Any] = {}
    try:
        if export_detector_too:
            results["detector"] = export_detector(
                run / "checkpoints" / f"detector-{checkpoint}.pt",
                det_file,
                DETECTOR_NAME,
                version,
                det_commit,
                det_sample,
                extra=det_extra,
                overwrite=overwrite,
            )
            results["detector"]["line_geometry"] = _calibrate(det_file, calibrate_images)
        if export_recognizer_too:
            results["recognizer"] = export_recognizer(
                rec_checkpoint,
                rec_file,
                RECOGNIZER_NAME,
                version,
                rec_commit,
                rec_sample,
                extra={**rec_extra, "derived_from": "EasyOCR english_g2 (Apache-2.0), fine-tuned"},
                overwrite=overwrite,
            )
        entries = []
        for key, path, task in (
            ("detector", det_file, "line_detection"),
            ("recognizer", rec_file, "line_recognition"),
        ):
            if key not in results:
                continue
            digest = sha256_file(path)
            results[key]["sha256"] = digest
            results[key].pop("metadata", None)
            entries.append(
                {
                    "name": DETECTOR_NAME if key == "detector" else RECOGNIZER_NAME,
                    "version": version,
                    "task": task,
                    "file": path.name,
                    "sha256": digest,
                    "card": path.with_suffix(".md").name,
                    "variant": "fp32",
                    "default": True,
                }
            )
        if register:
            update_registry(out, entries)
    except BaseException:
        for created in fresh:  # unregistered leftovers would only block the retry
            created.unlink(missing_ok=True)
        raise
    return results


def _calibrate(detector_file: Path, images: int) -> dict[str, Any] | str:
    """Calibrate an exported detector's line geometry in place; the fit's summary, or why there is none."""
    from marktrace.models.calibrate import calibrate

    if images <= 0:
        return "not calibrated (calibrate_images=0)"
    try:
        summary = calibrate(detector_file, images)
    except ValueError as exc:
        return f"not calibrated: {exc}"
    summary["geometry"] = json.loads(summary["geometry"].to_json())
    return summary


def trained_networks(run: Path) -> set[str]:
    """The networks a detector-and-recognizer run trained: those whose resolved config asks for steps.

    A run folder without a readable config counts as having trained both (older runs).
    """
    config = run / "config.yaml"
    if not config.is_file():
        return {"detector", "recognizer"}
    import yaml

    data = yaml.safe_load(config.read_text()) or {}
    return {
        name for name in ("detector", "recognizer") if int((data.get(name) or {}).get("steps", 1)) > 0
    }


def is_restorer_run(run: Path) -> bool:
    """True for a run folder written by the restorer's training loop."""
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    return info.get("task") == "restoration"


def restorer_parity_sample(height: int) -> np.ndarray:
    """Line crops of a rendered ground-like marking (held-out fonts, a seed no set uses) at the restorer's height."""
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.recognize import batch_line_crops

    marking = render_marking(424243, SynthConfig(fonts="heldout", rotation="small", wear=(0.6, 0.8), n_lines=(2, 3)))
    crops = [
        rectify_line(marking.image, pad_quad(np.asarray(line.polygon, np.float32), 0.2, 0.1), height)
        for line in marking.lines
    ]
    return batch_line_crops(crops, height)


def export_restorer_run(
    run: Path, out: Path, version: str, checkpoint: str = "best", register: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Export a restorer run's checkpoint to ``OUT/marktrace-restorer-vVERSION.onnx`` and register it.

    Registered with task ``restoration``, variant fp32 (no INT8 variant). An existing file of that name is
    never replaced unless ``overwrite``.
    """
    import torch

    from marktrace.models.export import export_restorer, refuse_existing

    target = out / f"{RESTORER_NAME}-v{version}.onnx"
    refuse_existing(target, overwrite)
    commit, extra = _run_info(run)
    path = run / "checkpoints" / f"restorer-{checkpoint}.pt"
    height = int(torch.load(path, map_location="cpu", weights_only=True)["height"])
    result = export_restorer(
        path, target, RESTORER_NAME, version, commit, restorer_parity_sample(height), extra=extra, overwrite=overwrite
    )
    result["sha256"] = sha256_file(target)
    result.pop("metadata", None)
    if register:
        update_registry(
            out,
            [
                {
                    "name": RESTORER_NAME,
                    "version": version,
                    "task": "restoration",
                    "file": target.name,
                    "sha256": result["sha256"],
                    "card": target.with_suffix(".md").name,
                    "variant": "fp32",
                    "default": True,
                }
            ],
        )
    return {"restorer": result}

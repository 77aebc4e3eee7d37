"""Items: what one answer is about — one photo, or a multi-light folder of photos of one marking.

A folder that holds a ``lights.json`` or an RTI ``.lp`` file is one multi-light item; every other
image file is an item of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from marktrace.inference.images import IMAGE_SUFFIXES

LIGHT_FILE_NAMES = ("lights.json",)
LIGHT_FILE_SUFFIXES = (".lp",)


@dataclass(frozen=True)
class Item:
    """One unit of work for the reader."""

    name: str
    """Path relative to the batch root, with forward slashes: the file, or the multi-light folder."""
    files: tuple[Path, ...]
    """Absolute paths of the photos, sorted by name."""
    kind: Literal["photo", "multi_light"]
    light_file: Path | None = None

    def file_label(self, path: Path, root: Path) -> str:
        """The name of one of the item's files relative to the batch root."""
        return path.resolve().relative_to(root.resolve()).as_posix()


def _light_file(folder: Path, names: list[str]) -> Path | None:
    for name in names:
        if name in LIGHT_FILE_NAMES or name.lower().endswith(LIGHT_FILE_SUFFIXES):
            return folder / name
    return None


def is_image_name(name: str) -> bool:
    """Whether a file name carries an image suffix (the content is checked only when read)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def discover_items(root: Path) -> list[Item]:
    """Find the items under ``root`` (a folder tree, or one file), in a stable order.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        return [Item(name=root.name, files=(root.resolve(),), kind="photo")]
    items: list[Item] = []
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        folder = Path(dirpath)
        names = sorted(filenames)
        light = _light_file(folder, names)
        photos = tuple(folder / n for n in names if is_image_name(n) and not n.startswith("."))
        if light is not None:
            dirnames[:] = []  # a multi-light item is a leaf
            items.append(
                Item(
                    name=folder.relative_to(base).as_posix() if folder != base else base.name,
                    files=photos,
                    kind="multi_light",
                    light_file=light,
                )
            )
            continue
        for photo in photos:
            items.append(Item(name=photo.relative_to(base).as_posix(), files=(photo,), kind="photo"))
    items.sort(key=lambda item: item.name)
    return items

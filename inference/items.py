"""Items: what one answer is about — one photo, or a multi-light folder of photos of one marking.

A folder that holds a ``lights.json`` or an RTI ``.lp`` file is one multi-light item made of the photos
directly in it; every other image file is an item of its own. The sub-folders of a multi-light folder are
walked like any other folder (their photos, or their own multi-light stacks, are items of their own), so no
photo under the root is silently left out.

Names are built from the paths as found, relative to the batch root; symbolic links are not resolved, so a
link to a photo outside the root keeps its own name under the root (and a dangling link is still an item,
which then fails to load with an error naming it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from marktrace.inference.images import IMAGE_SUFFIXES, RAW_SUFFIXES

LIGHT_FILE_NAMES = ("lights.json",)
LIGHT_FILE_SUFFIXES = (".lp",)


@dataclass(frozen=True)
class Item:
    """One unit of work for the reader."""

    name: str
    """Path relative to the batch root, with forward slashes: the file, or the multi-light folder."""
    files: tuple[Path, ...]
    """Absolute paths of the photos as found under the root (links not resolved), sorted by name."""
    kind: Literal["photo", "multi_light"]
    light_file: Path | None = None

    def file_label(self, path: Path, root: Path) -> str:
        """The name of one of the item's files relative to the batch root, with forward slashes.

        The path is not resolved: a symbolic link is named where it lies under the root, wherever it
        points (or whether it points anywhere at all). ``root`` may be given as found or resolved.

        Raises:
            ValueError: if ``path`` does not lie under ``root`` (neither as given nor resolved).
        """
        for base in dict.fromkeys((root, root.absolute(), root.resolve())):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        raise ValueError(f"{path}: not under the batch root {root}")


def light_file_in(folder: Path, names: list[str]) -> Path | None:
    """The light file among a folder's file ``names``: ``lights.json``, else the first ``.lp`` by name, else None.

    Discovery and the photometric loader (:func:`marktrace.inference.enhance.photometric.find_light_file`)
    both choose with this.
    """
    for name in LIGHT_FILE_NAMES:
        if name in names:
            return folder / name
    lps = sorted(n for n in names if n.lower().endswith(LIGHT_FILE_SUFFIXES))
    return folder / lps[0] if lps else None


def is_image_name(name: str) -> bool:
    """Whether a file name carries a photo's suffix (the content is checked only when read).

    Camera raw files count: they become items whose error says to export the photo, rather than being
    passed over without a word.
    """
    suffix = Path(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in RAW_SUFFIXES


def discover_items(root: Path, others: dict[str, int] | None = None) -> list[Item]:
    """Find the items under ``root`` (a folder tree, or one file), in a stable order.

    ``others``, when given, receives the files of the same walk that are not read, counted by suffix (``""``:
    none). Light files and hidden files (``.DS_Store``, ``._IMG_0001.jpg``) are not counted: the count tells an
    officer what was passed over (``.pdf`` reports, ``.mov`` clips, ``.txt`` notes), not housekeeping.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        return [Item(name=root.name, files=(root.absolute(),), kind="photo")]  # a link keeps its own name
    items: list[Item] = []
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        folder = Path(dirpath)
        names = sorted(filenames)
        light = light_file_in(folder, names)
        photos = tuple(folder / n for n in names if is_image_name(n) and not n.startswith("."))
        if others is not None:
            for n in names:
                lower = n.lower()
                if not (n.startswith(".") or is_image_name(n) or lower in LIGHT_FILE_NAMES
                        or lower.endswith(LIGHT_FILE_SUFFIXES)):
                    suffix = Path(lower).suffix
                    others[suffix] = others.get(suffix, 0) + 1
        if light is not None:
            # The folder's own photos are one item; its sub-folders are still walked (their own items).
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


def describe_other_files(counts: dict[str, int]) -> str:
    """``'3 other files not read (.txt 2, .pdf 1)'`` (commonest first), or ``''`` when there are none."""
    total = sum(counts.values())
    if not total:
        return ""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kinds = ", ".join(f"{suffix or 'no suffix'} {n}" for suffix, n in ranked[:6])
    more = ", ..." if len(ranked) > 6 else ""
    return f"{total} other file{'s' if total != 1 else ''} not read ({kinds}{more})"

"""Items: what one answer is about — one photo, or a multi-light folder of photos of one marking.

A folder that holds a ``lights.json`` or an RTI ``.lp`` file is one multi-light item made of the photos
directly in it; every other image file is an item of its own. The sub-folders of a multi-light folder are
walked like any other folder (their photos, or their own multi-light stacks, are items of their own), so no
photo under the root is silently left out.

Names are built from the paths as found, relative to the batch root; symbolic links are not resolved, so a
link to a photo outside the root keeps its own name under the root (and a dangling link is still an item,
which then fails to load with an error naming it). Linked folders are walked, each folder once; a folder that
cannot be listed is an item whose answer is an error naming it.
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
    kind: Literal["photo", "multi_light", "folder"]
    """``folder``: a folder that could not be listed (its ``problem`` says why); it is answered with an error."""
    light_file: Path | None = None
    problem: str | None = None
    """Why the item cannot be read at all (set by discovery), or None."""

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

    Names match in any case (``Lights.json``, ``STACK.LP``); hidden files (a Mac's ``._lights.json`` copy of the
    resource fork) are not light files. Discovery and the photometric loader
    (:func:`marktrace.inference.enhance.photometric.find_light_file`) both choose with this.
    """
    visible = sorted(n for n in names if not n.startswith("."))
    for name in LIGHT_FILE_NAMES:
        matches = [n for n in visible if n.lower() == name]
        if matches:
            return folder / (name if name in matches else matches[0])
    lps = [n for n in visible if n.lower().endswith(LIGHT_FILE_SUFFIXES)]
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
    try:
        root.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{root}: no such file or folder") from None
    except OSError as exc:  # a link loop, a path through a file, ...: the system's own words
        raise FileNotFoundError(f"{root}: cannot be reached ({exc.strerror or exc})") from None
    if root.is_file():
        return [Item(name=root.name, files=(root.absolute(),), kind="photo")]  # a link keeps its own name
    items: list[Item] = []
    base = root.resolve()
    # Real folders are walked first, then linked ones (a photo behind a link is not left out); a folder
    # reached a second time (a link loop, a link to a folder already walked) is not walked again. A folder
    # that cannot be listed is an item of its own whose answer is an error naming it.
    seen: set[tuple[int, int]] = set()
    links: list[Path] = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else base
        name = where.relative_to(base).as_posix() if where != base and where.is_relative_to(base) else base.name
        items.append(Item(name=name, files=(), kind="folder",
                          problem=f"folder cannot be listed ({exc.strerror or exc}); its photos were not read"))

    def walk(top: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
            folder = Path(dirpath)
            key = _folder_key(folder)
            if key is not None and key in seen:
                dirnames[:] = []
                continue
            if key is not None:
                seen.add(key)
            dirnames.sort()
            links.extend(folder / d for d in dirnames if (folder / d).is_symlink())
            _add_folder(folder, sorted(filenames), base, items, others)

    walk(base)
    while links:
        link = links.pop(0)
        if _folder_key(link) not in seen:
            walk(link)
    items.sort(key=lambda item: item.name)
    return items


def _add_folder(folder: Path, names: list[str], base: Path, items: list[Item], others: dict[str, int] | None) -> None:
    """The items of one folder's files (its photos, or the folder as one multi-light item)."""
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
        name = folder.relative_to(base).as_posix() if folder != base else base.name
        items.append(Item(name=name, files=photos, kind="multi_light", light_file=light))
        return
    for photo in photos:
        items.append(Item(name=photo.relative_to(base).as_posix(), files=(photo,), kind="photo"))


def _folder_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder ``path`` leads to, or None when it cannot be reached."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def describe_other_files(counts: dict[str, int]) -> str:
    """``'3 other files not read (.txt 2, .pdf 1)'`` (commonest first), or ``''`` when there are none."""
    total = sum(counts.values())
    if not total:
        return ""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kinds = ", ".join(f"{suffix or 'no suffix'} {n}" for suffix, n in ranked[:6])
    more = ", ..." if len(ranked) > 6 else ""
    return f"{total} other file{'s' if total != 1 else ''} not read ({kinds}{more})"

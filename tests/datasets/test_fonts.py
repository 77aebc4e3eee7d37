"""Every TrueType/OpenType face of the renderer draws every character the text generators use."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageFont

from marktrace.datasets.fontlib import all_fonts
from marktrace.datasets.text import charset

TTF_FACES = [f for f in all_fonts() if f.kind == "ttf"]


@pytest.mark.parametrize("font", TTF_FACES, ids=[f.name for f in TTF_FACES])
def test_face_covers_the_marking_charset(font) -> None:
    face = ImageFont.truetype(str(font.path), 40)
    notdef = np.asarray(face.getmask("\ue000"))
    missing = [c for c in charset() if c.strip() and np.array_equal(np.asarray(face.getmask(c)), notdef)]
    assert not missing, f"{font.name} ({font.file}) lacks glyphs for {''.join(missing)!r}: labels would not match"
    caps_for_lower = "".join(
        c
        for c in "abcdefghijklmnopqrstuvwxyz"
        if np.array_equal(np.asarray(face.getmask(c)), np.asarray(face.getmask(c.upper())))
    )
    assert len(caps_for_lower) < 3, f"{font.name} draws capitals for lower case ({caps_for_lower}): labels would lie"


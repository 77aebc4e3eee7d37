"""Reading an unsure photo turned so its longest line is level, with boxes mapped back to the original."""

from __future__ import annotations

import numpy as np
import pytest

from marktrace.inference.geometry import rotate_quad
from marktrace.inference.pipeline import OBLIQUE_DEG, level_turn, turn_image
from marktrace.inference.schema import Line


def _line(box: list[tuple[float, float]], text: str = "AB1234") -> Line:
    return Line(text=text, confidence=0.5, box=box, file="x.png")


def _box(cx: float, cy: float, length: float, height: float, deg: float) -> list[tuple[float, float]]:
    """A line box centred at (cx, cy) whose reading direction makes ``deg`` degrees with +x (screen, y down)."""
    u = np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])
    v = np.array([-u[1], u[0]])
    c = np.array([cx, cy])
    pts = [c - u * length / 2 - v * height / 2, c + u * length / 2 - v * height / 2,
           c + u * length / 2 + v * height / 2, c - u * length / 2 + v * height / 2]
    return [(float(p[0]), float(p[1])) for p in pts]


@pytest.mark.parametrize("deg", [35.0, -50.0, 90.0, -90.0, 150.0, 215.0])
def test_oblique_lines_ask_for_the_turn_that_levels_them(deg: float) -> None:
    turn = level_turn([_line(_box(200, 150, 180, 30, deg)), _line(_box(100, 100, 40, 20, 0.0))])
    assert turn is not None
    image = np.zeros((300, 400, 3), np.uint8)
    turned, back = turn_image(image, turn)
    forward = np.vstack([np.linalg.inv(np.vstack([back, [0, 0, 1]]))[:2], [0, 0, 1]])[:2]
    quad = rotate_quad(_box(200, 150, 180, 30, deg), forward)
    dx, dy = quad[1] - quad[0]
    level = (np.degrees(np.arctan2(dy, dx)) + 90.0) % 180.0 - 90.0
    assert abs(level) < 0.5, f"after turning by {turn:.1f} the line still slopes {level:.1f} degrees"


@pytest.mark.parametrize("deg", [0.0, 12.0, -19.0, 180.0, 170.0])
def test_near_level_lines_and_no_lines_are_left_alone(deg: float) -> None:
    assert abs(deg % 180.0) < OBLIQUE_DEG or abs(deg % 180.0 - 180.0) < OBLIQUE_DEG
    assert level_turn([_line(_box(200, 150, 180, 30, deg))]) is None
    assert level_turn([]) is None


def test_turned_canvas_holds_the_whole_photo_and_maps_back() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    turned, back = turn_image(image, 90.0)
    assert turned.shape[:2] == (200, 120)
    corners = np.array([[0, 0], [199, 0], [199, 119], [0, 119]], np.float32)
    forward = np.linalg.inv(np.vstack([back, [0, 0, 1]]))[:2]
    there = rotate_quad(corners, forward)
    assert np.all(there >= -1) and np.all(there[:, 0] <= 121) and np.all(there[:, 1] <= 201)
    np.testing.assert_allclose(rotate_quad(there, back), corners, atol=1e-3)
    # a quarter turn moves pixels without blending them
    assert set(np.unique(turned)) <= set(np.unique(image))


def test_an_upside_down_photo_turns_its_symmetric_serial_with_the_other_lines() -> None:
    from marktrace.inference.pipeline import orientation_flips

    # 'M72' / 'CAL .40 S&W' read far better rotated; the serial 'X6Z0Z' / '2029X' only a little, less than the
    # detector's (wrong) direction margin on its own: the photo's vote turns it too.
    assert orientation_flips([0.14, 0.18, 0.05], [0.79, 0.77, 0.77]) == [True, True, True]
    assert orientation_flips([0.05], [0.77]) == [False]


def test_an_upright_photo_keeps_its_symmetric_serial_upright() -> None:
    from marktrace.inference.pipeline import orientation_flips

    assert orientation_flips([-0.5, -0.4, 0.05], [0.8, 0.8, 0.8]) == [False, False, False]
    # without a detector preference, a clear gain alone flips a single line
    assert orientation_flips([0.1], [0.5]) == [True]
    assert orientation_flips([], []) == []


def test_a_turned_read_records_its_turn_on_every_field() -> None:
    import cv2

    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.images import decode_image
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings, turn_image

    # held-out faces: the scene stays the same when training faces are added
    upright = render_marking(1_250_000_322, SynthConfig(fonts="heldout", wear=(0.0, 0.1), rotation="upright")).image
    tilted, _ = turn_image(upright, -35.0)
    ok, buf = cv2.imencode(".png", tilted)
    assert ok
    image = decode_image(bytes(buf), "tilted.png")
    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    direct = reader._attempt(image.image, image.path, image.sha256, "direct", "original")
    attempts = [direct]
    angle = reader._turned_attempt(image, direct, attempts)
    assert angle is not None and abs(abs(angle) - 35.0) < 5.0
    turned = attempts[-1]
    fields = [v for v in turned.record.values() if isinstance(v, dict) and "evidence" in v]
    assert fields and turned.record.get("serial_number", {}).get("value")
    for value in fields:
        flag = next(f for f in value["flags"] if f["kind"] == "read_turned")
        assert flag["angle_deg"] == round(angle, 3)
    assert not any(f.get("kind") == "read_turned" for v in direct.record.values() if isinstance(v, dict)
                   for f in (v.get("flags") or []))


class _Scripted:
    """A detector and recognizer stand-in: three lines; each crop's line and orientation told by its grey levels."""

    def __init__(self, reads: dict[tuple[int, bool], tuple[str, float]]) -> None:
        self.reads = reads
        self.turned_reads: list[int] = []
        self.image = np.zeros((200, 300), np.uint8)
        self.quads = []
        for i in range(3):
            y = 20 + 60 * i
            self.image[y:y + 30, 20:280] = np.linspace(40 * i + 10, 40 * i + 90, 260).astype(np.uint8)
            self.quads.append(np.array([[20, y], [280, y], [280, y + 30], [20, y + 30]], np.float32))

    def detect(self, image: np.ndarray, long_side: int | None = None) -> list[object]:
        from marktrace.inference.detect import DetectedLine

        return [DetectedLine(quad=q, score=0.9, direction_confidence=0.8) for q in self.quads]

    def recognize(self, crops: list[np.ndarray]) -> list[object]:
        from marktrace.inference.ctc import DecodedText

        out = []
        for crop in crops:
            middle = crop[crop.shape[0] // 2].astype(float)
            line = int(round((middle.mean() - 50) / 40))
            turned = middle[: len(middle) // 4].mean() > middle[-len(middle) // 4:].mean()
            if turned:
                self.turned_reads.append(line)
            text, confidence = self.reads[(line, bool(turned))]
            out.append(DecodedText(text, confidence, (confidence,) * len(text), ((),) * len(text),
                                   tuple(range(len(text)))))
        return out


def _scripted_reader(script: _Scripted, monkeypatch: pytest.MonkeyPatch, bar: float) -> object:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, turn_read_below=bar))
    monkeypatch.setattr(reader, "detect", script.detect)
    monkeypatch.setattr(reader, "recognize", script.recognize)
    return reader


def test_lines_read_confidently_are_read_one_way_unless_another_line_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    # An upright photo: two confident lines are read upright only; the unsure one is read both ways and stays.
    upright = {(0, False): ("GLOCK", 0.99), (1, False): ("AB12345", 0.97), (2, False): ("9MM", 0.6),
               (0, True): ("XOT9", 0.2), (1, True): ("SVZLBV", 0.3), (2, True): ("WW6", 0.3)}
    script = _Scripted(upright)
    texts = [line.text for line in _scripted_reader(script, monkeypatch, 0.95).read_image(script.image, "x", "0")]
    assert texts == ["GLOCK", "AB12345", "9MM"] and script.turned_reads == [2]
    # Every line both ways when asked (1.0): the same reads.
    script = _Scripted(upright)
    texts = [line.text for line in _scripted_reader(script, monkeypatch, 1.0).read_image(script.image, "x", "0")]
    assert texts == ["GLOCK", "AB12345", "9MM"] and sorted(script.turned_reads) == [0, 1, 2]
    # An upside-down photo: the unsure line turns, so the confident symmetric serial ('V1988B' read '8886TA') is
    # read turned too and turns with the photo's vote.
    upside_down = {(0, False): ("MW6", 0.3), (1, False): ("8886TA", 0.96), (2, False): ("T7", 0.3),
                   (0, True): ("9MM", 0.97), (1, True): ("V1988B", 0.97), (2, True): ("GLOCK", 0.98)}
    script = _Scripted(upside_down)
    texts = [line.text for line in _scripted_reader(script, monkeypatch, 0.95).read_image(script.image, "x", "0")]
    assert set(texts) == {"9MM", "V1988B", "GLOCK"} and sorted(script.turned_reads) == [0, 1, 2]

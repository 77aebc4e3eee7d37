"""CTC decoding in numpy: greedy best path with per-character confidences and alternatives."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DecodedText:
    """A decoded line with its per-character evidence."""

    text: str
    confidence: float
    """Product-free line confidence: the geometric mean of the character confidences (1.0 when empty)."""
    char_confidences: tuple[float, ...]
    char_alternatives: tuple[tuple[tuple[str, float], ...], ...]
    """For each character, the top candidates (character, probability) at its best time step."""
    char_steps: tuple[int, ...]
    """The time step of each character (for locating it along the line)."""
    probs: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The (T, C) per-step class probabilities it was decoded from (over-stamp flags read them); None when
    not kept."""
    charset: str = field(default="", compare=False, repr=False)
    """The charset of ``probs`` (class ``i >= 1`` is ``charset[i - 1]``); empty when not kept."""


def greedy_decode(probs: np.ndarray, charset: str, blank: int = 0, top_k: int = 3) -> DecodedText:
    """Best-path CTC decoding of one (T, C) probability matrix; class ``i >= 1`` is ``charset[i - 1]``."""
    best = probs.argmax(axis=1)
    chars: list[str] = []
    confidences: list[float] = []
    alternatives: list[tuple[tuple[str, float], ...]] = []
    steps: list[int] = []
    previous = blank
    t = 0
    total = len(best)
    while t < total:
        cls = int(best[t])
        if cls in (blank, previous):
            previous = cls
            t += 1
            continue
        # The run of this class: take the step where it is most confident.
        end = t
        while end + 1 < total and int(best[end + 1]) == cls:
            end += 1
        run = probs[t : end + 1, cls]
        step = t + int(run.argmax())
        row = probs[step]
        order = np.argsort(-row)
        candidates: list[tuple[str, float]] = []
        for index in order:
            if len(candidates) >= top_k:
                break
            if int(index) == blank:
                continue
            candidates.append((charset[int(index) - 1], float(row[index])))
        chars.append(charset[cls - 1])
        confidences.append(float(row[cls]))
        alternatives.append(tuple(candidates))
        steps.append(step)
        previous = cls
        t = end + 1
    line_conf = float(np.exp(np.mean(np.log(np.clip(confidences, 1e-06, 1.0))))) if confidences else 1.0
    return DecodedText(
        text="".join(chars),
        confidence=line_conf,
        char_confidences=tuple(confidences),
        char_alternatives=tuple(alternatives),
        char_steps=tuple(steps),
        probs=probs,
        charset=charset,
    )

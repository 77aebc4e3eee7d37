import numpy as np

from marktrace.inference.ctc import greedy_decode

CHARSET = "0123456789ABO"


def _probs(sequence: list[int], classes: int, sure: float = 0.9) -> np.ndarray:
    probs = np.full((len(sequence), classes), (1 - sure) / (classes - 1), np.float32)
    for t, cls in enumerate(sequence):
        probs[t, cls] = sure
    return probs


def test_collapses_repeats_and_drops_blanks():
    # classes: 0 blank, 1 -> '0', 2 -> '1', ...
    seq = [0, 2, 2, 0, 2, 3, 3, 0, 0, 4]
    decoded = greedy_decode(_probs(seq, len(CHARSET) + 1), CHARSET)
    assert decoded.text == "1123"
    assert len(decoded.char_confidences) == 4
    assert decoded.char_steps == (1, 4, 5, 9)


def test_alternatives_rank_confusable_characters():
    probs = _probs([0, 1, 0], len(CHARSET) + 1)
    # '0' at 0.55, 'O' at 0.35: the alternative must be offered with its probability.
    probs[1] = 0.0
    probs[1, 1] = 0.55
    probs[1, CHARSET.index("O") + 1] = 0.35
    probs[1, 0] = 0.10
    decoded = greedy_decode(probs, CHARSET)
    assert decoded.text == "0"
    first, second = decoded.char_alternatives[0][:2]
    assert first == ("0", np.float32(0.55).item())
    assert second[0] == "O" and abs(second[1] - 0.35) < 1e-6
    assert abs(decoded.confidence - 0.55) < 1e-6


def test_empty_sequence_is_empty_text():
    decoded = greedy_decode(_probs([0, 0, 0], len(CHARSET) + 1), CHARSET)
    assert decoded.text == ""
    assert decoded.char_alternatives == ()

"""Manufacturer and country pre-fill accuracy on generated clean and worn marking lines.

A proxy for the issue's acceptance figure (≥ 95 % clean, ≥ 85 % worn) at the text level: lines are
generated from the registry (maker mark, model, 'MADE IN' country name in several languages, serial,
calibre) and worn with OCR-like damage (confusable substitutions, dropped characters, lower
confidence). The image-level figure needs the renderer and recogniser (issues 2/3).
"""

from __future__ import annotations

import random

import pytest

from marktrace.inference.parse import parse_lines
from marktrace.inference.registry import MakerEntry, Registry, load_registry
from marktrace.inference.schema import Line

ISSUE_MAKERS = ["fn-herstal", "glock", "beretta", "zastava", "heckler-koch", "ceska-zbrojovka", "smith-wesson",
                "ruger", "taurus", "walther", "steyr", "sig-sauer-de", "colt", "izhmash"]
SWAP = {"O": "0", "0": "O", "I": "1", "1": "I", "S": "5", "5": "S", "B": "8", "8": "B", "G": "6", "6": "G",
        "Z": "2", "2": "Z", "D": "0", "L": "1"}
CALIBRES = ["9x19", "CAL .45 ACP", "7.62x39", "12 GA", ".22 LR", "5.56x45"]
BOX = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def _wear(text: str, rng: random.Random) -> str:
    out = []
    for ch in text:
        r = rng.random()
        if ch in SWAP and r < 0.12:
            out.append(SWAP[ch])
        elif ch.isalnum() and r > 0.985 and len(text) > 6:
            continue  # a dropped character on a long line
        else:
            out.append(ch)
    return "".join(out)


def _item(maker: MakerEntry, reg: Registry, rng: random.Random, worn: bool) -> list[Line]:
    mark = rng.choice(maker.marks)
    model = rng.choice(maker.models) if maker.models and rng.random() < 0.7 else ""
    texts = [f"{mark} {model}".strip()]
    country = reg.country(maker.country)
    if country is not None and rng.random() < 0.6:
        name = rng.choice([country.name.upper(), *country.names])
        texts.append(rng.choice(["MADE IN ", "", ""]) + name)
    texts.append(rng.choice(["", "S/N ", "SN: "]) + rng.choice("ABCKMT") + str(rng.randint(10000, 999999)))
    texts.append(rng.choice(CALIBRES))
    rng.shuffle(texts)
    conf = 0.6 if worn else 0.93
    return [Line(text=_wear(t, rng) if worn else t, confidence=conf, box=BOX, file="x.png") for t in texts]


def _accuracy(reg: Registry, makers: list[MakerEntry], worn: bool, n: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    ok_maker = ok_country = 0
    for k in range(n):
        maker = makers[k % len(makers)]
        rec = parse_lines(_item(maker, reg, rng, worn), reg)
        m, c = rec["manufacturer"], rec["country_of_manufacture"]
        ok_maker += m is not None and m.value == maker.name
        ok_country += c is not None and c.value == maker.country
    return ok_maker / n, ok_country / n


@pytest.mark.parametrize(("worn", "floor"), [(False, 0.95), (True, 0.85)])
def test_issue_makers_accuracy(worn: bool, floor: float) -> None:
    reg = load_registry()
    makers = [reg.maker(m) for m in ISSUE_MAKERS]
    acc_m, acc_c = _accuracy(reg, makers, worn, n=420, seed=4)
    assert acc_m >= floor, f"manufacturer accuracy {acc_m:.3f} < {floor}"
    assert acc_c >= floor, f"country accuracy {acc_c:.3f} < {floor}"


@pytest.mark.parametrize(("worn", "floor"), [(False, 0.95), (True, 0.80)])
def test_all_registry_manufacturers_accuracy(worn: bool, floor: float) -> None:
    reg = load_registry()
    makers = [m for m in reg.makers if m.kind == "manufacturer"]
    acc_m, acc_c = _accuracy(reg, makers, worn, n=len(makers) * 6, seed=5)
    assert acc_m >= floor, f"manufacturer accuracy {acc_m:.3f} < {floor}"
    assert acc_c >= floor, f"country accuracy {acc_c:.3f} < {floor}"

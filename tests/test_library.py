"""The built-in exercise library, its illustrations and the app icons are complete and safe to serve."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from server.library import BUILTIN_EXERCISES, BuiltinExercise

ROOT = Path(__file__).resolve().parent.parent
EXERCISES_DIR = ROOT / "static" / "exercises"
ICONS_DIR = ROOT / "static" / "icons"
SVG_NS = "{http://www.w3.org/2000/svg}"
SIDES = {"none", "left", "right", "both"}


def _ids(e: BuiltinExercise) -> str:
    return e.slug


def test_library_size_and_unique_keys() -> None:
    assert 10 <= len(BUILTIN_EXERCISES) <= 12
    slugs = [e.slug for e in BUILTIN_EXERCISES]
    assert len(set(slugs)) == len(slugs)
    assert len({e.name for e in BUILTIN_EXERCISES}) == len(slugs)
    assert len({e.image for e in BUILTIN_EXERCISES}) == len(slugs)
    for slug in slugs:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), slug


@pytest.mark.parametrize("ex", BUILTIN_EXERCISES, ids=_ids)
def test_exercise_fields(ex: BuiltinExercise) -> None:
    assert ex.name.strip() and ex.summary.strip()
    assert ex.sides in SIDES
    assert ex.hold_seconds >= 2
    assert ex.reps >= 1 and ex.sets >= 1
    assert 3 <= len(ex.steps) <= 6
    for step in ex.steps:
        assert step.strip()
        assert not re.search(r"\d", step), f"steps carry no numbering or doses: {step!r}"
    assert ex.safety.strip()
    assert ex.image == f"{ex.slug}.svg"
    # one exercise stays modest so a routine of 3-4 fits in 8-15 minutes
    per_side = 2 if ex.sides == "both" else 1
    assert ex.hold_seconds * ex.reps * ex.sets * per_side <= 5 * 60


def _svg_files() -> list[Path]:
    return [EXERCISES_DIR / e.image for e in BUILTIN_EXERCISES] + [EXERCISES_DIR / "custom.svg",
                                                                  ICONS_DIR / "icon.svg"]


@pytest.mark.parametrize("path", _svg_files(), ids=lambda p: p.name)
def test_svg_is_safe_and_labelled(path: Path) -> None:
    assert path.is_file(), path
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("role") == "img"
    title = root.find(f"{SVG_NS}title")
    assert title is not None and (title.text or "").strip()
    for el in root.iter():
        assert el.tag.removeprefix(SVG_NS) not in {"script", "foreignObject", "style", "image", "use"}
        for attr, value in el.attrib.items():
            assert attr != "style", f"inline style in {path.name}"
            assert not attr.startswith("on"), f"event handler in {path.name}"
            if attr.endswith("href"):
                assert value.startswith("#"), f"external reference in {path.name}"
    assert "style=" not in text
    assert 'href="http' not in text
    assert "<script" not in text.lower()


def test_svg_titles_match_names() -> None:
    for ex in BUILTIN_EXERCISES:
        root = ET.fromstring((EXERCISES_DIR / ex.image).read_text(encoding="utf-8"))
        title = root.find(f"{SVG_NS}title")
        assert title is not None and title.text == ex.name
        assert root.get("viewBox") == "0 0 320 200"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("icon-192.png", 192),
        ("icon-512.png", 512),
        ("maskable-512.png", 512),
        ("badge-96.png", 96),
        ("apple-touch-icon-180.png", 180),
    ],
)
def test_icon_png_sizes(name: str, size: int) -> None:
    assert _png_size(ICONS_DIR / name) == (size, size)

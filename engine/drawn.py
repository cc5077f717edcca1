"""A drawn-digit evaluation set: digits that look like what people draw in a browser, made on the fly.

Two groups, both rendered on a 280x280 canvas in the three looks a browser canvas produces
(`LOOKS`: transparent background with dark ink, where the alpha channel carries the stroke; black
ink on white; white ink on black):

- `mnist`: MNIST *test* digits (never training digits), blown up to 40-90% of the canvas and placed
  off-centre, their soft edges sharpened into the solid strokes of a pen;
- `fonts`: the digits 0-9 in every font installed on the machine, rotated by up to 15 degrees.

Everything is seeded, so the set is the same on every run. `evaluate_drawn` sends each picture
through `engine.preprocess.to_mnist` (what /predict does) and reports accuracy per group and look.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.preprocess import to_mnist

CANVAS = 280
LOOKS = ("transparent", "black_on_white", "white_on_black")
DEFAULT_MNIST_COUNT = 1500
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
_INK_RGB = np.array([20, 20, 30], dtype=np.float64)  # a dark pen colour, not quite black


@dataclass(frozen=True)
class DrawnDigit:
    image: np.ndarray  # (280, 280) grey, (280, 280, 3) RGB or (280, 280, 4) RGBA, uint8
    label: int
    group: str  # "mnist" or "fonts"
    look: str  # one of LOOKS
    source: str  # where it came from: "mnist-test[123]" or a font file name


def drawn_digits(data, n_mnist: int = DEFAULT_MNIST_COUNT, seed: int = 0, fonts: bool = True
                 ) -> Iterator[DrawnDigit]:
    """Yield the drawn-digit set one picture at a time (a 280x280 RGBA picture is 300 kB).

    `data` is anything with `test_images` and `test_labels` (an MnistData): only test digits are used.
    """
    rng = np.random.default_rng(seed)
    test_images = np.asarray(data.test_images).reshape(-1, 28, 28)
    test_labels = np.asarray(data.test_labels)
    chosen = rng.choice(len(test_images), size=min(n_mnist, len(test_images)), replace=False)
    for i, index in enumerate(chosen):
        look = LOOKS[i % len(LOOKS)]
        ink = mnist_stroke(test_images[index])
        yield DrawnDigit(render(place(ink, rng), look), int(test_labels[index]), "mnist", look,
                         f"mnist-test[{index}]")
    if fonts:
        for f, path in enumerate(font_files()):
            for digit in range(10):
                ink = font_glyph(path, digit, rotation=rng.uniform(-15, 15))
                if ink is None:
                    break  # the font has no digits
                look = LOOKS[(f + digit) % len(LOOKS)]
                yield DrawnDigit(render(place(ink, rng), look), digit, "fonts", look, path.name)


def drawn_digit_set(data, n_mnist: int = DEFAULT_MNIST_COUNT, seed: int = 0, fonts: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The set after `to_mnist`: x (N, 784) float32, labels (N,), and each sample's "group/look"."""
    pixels, labels, groups = [], [], []
    for drawn in drawn_digits(data, n_mnist, seed, fonts):
        pixels.append(to_mnist(drawn.image))
        labels.append(drawn.label)
        groups.append(f"{drawn.group}/{drawn.look}")
    return np.stack(pixels), np.array(labels), groups


def evaluate_drawn(predict_proba: Callable[[np.ndarray], np.ndarray], data,
                   n_mnist: int = DEFAULT_MNIST_COUNT, seed: int = 0, fonts: bool = True
                   ) -> dict[str, dict[str, float]]:
    """Accuracy on the drawn set through `to_mnist`, per group ("mnist", "fonts"), per look and
    overall: {"mnist": {"accuracy": .., "count": ..}, "mnist/transparent": {...}, ...}."""
    x, labels, groups = drawn_digit_set(data, n_mnist, seed, fonts)
    correct = np.asarray(predict_proba(x)).argmax(axis=1) == labels
    group_of = np.array(groups)
    family = np.array([g.split("/")[0] for g in groups])
    report: dict[str, dict[str, float]] = {}
    for name in ("mnist", "fonts"):
        for key, mask in [(name, family == name)] + [
            (f"{name}/{look}", group_of == f"{name}/{look}") for look in LOOKS
        ]:
            if mask.any():
                report[key] = {"accuracy": float(correct[mask].mean()), "count": int(mask.sum())}
    report["all"] = {"accuracy": float(correct.mean()), "count": int(len(correct))}
    return report


# --- making the pictures ------------------------------------------------------------------------
def mnist_stroke(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit cropped to its ink, blown up 10x, its grey edges sharpened like a pen's."""
    rows = np.flatnonzero(digit.any(axis=1))
    columns = np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    big = Image.fromarray(crop).resize((crop.shape[1] * 10, crop.shape[0] * 10),
                                       Image.Resampling.BICUBIC)
    level = np.asarray(big, dtype=np.float64) / 255.0
    return np.clip((level - 0.25) / 0.35, 0.0, 1.0)  # a smooth ramp: solid strokes, soft edge


def place(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale the ink so its longer side is 40-90% of the canvas and put it somewhere random on it."""
    height, width = ink.shape
    target = rng.uniform(0.4, 0.9) * CANVAS
    factor = target / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    scaled = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    scaled = np.clip(scaled, 0.0, 1.0)
    top = int(rng.integers(0, CANVAS - size[1] + 1))
    left = int(rng.integers(0, CANVAS - size[0] + 1))
    canvas = np.zeros((CANVAS, CANVAS))
    canvas[top : top + size[1], left : left + size[0]] = scaled
    return canvas


def render(ink: np.ndarray, look: str) -> np.ndarray:
    """The uint8 picture a browser canvas would give for this ink coverage (0..1) and look."""
    if look == "transparent":  # getImageData(): transparent pixels are (0, 0, 0, 0)
        alpha = np.round(ink * 255)
        rgb = np.where(ink[..., None] > 0, _INK_RGB, 0.0)
        return np.dstack([rgb, alpha]).astype(np.uint8)
    if look == "black_on_white":
        grey = np.round(255 * (1 - ink)).astype(np.uint8)
        return np.dstack([grey, grey, grey])
    if look == "white_on_black":
        grey = np.round(255 * ink).astype(np.uint8)
        return np.dstack([grey, grey, grey])
    raise ValueError(f"unknown look {look!r}; expected one of {', '.join(LOOKS)}")


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """Every TrueType/OpenType font on the machine that has real digit glyphs, sorted by name."""
    found: set[Path] = set()
    try:
        listing = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True,
                                 text=True, timeout=20, check=False).stdout
        found.update(Path(line) for line in listing.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # no fontconfig: scan the usual folders
    for folder in FONT_DIRS:
        if folder.is_dir():
            found.update(p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    usable = [p for p in found if p.suffix.lower() in (".ttf", ".otf") and _has_digits(p)]
    return tuple(sorted(usable, key=lambda p: p.name))


@lru_cache(maxsize=2048)  # the set is seeded: evaluating twice renders the same glyphs
def font_glyph(path: Path, digit: int, rotation: float = 0.0) -> np.ndarray | None:
    """The digit rendered in this font, rotated by `rotation` degrees: ink coverage 0..1, cropped."""
    try:
        font = ImageFont.truetype(str(path), size=120)
    except OSError:
        return None
    picture = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(picture).text((120, 120), str(digit), fill=255, font=font, anchor="mm")
    picture = picture.rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True)
    ink = np.asarray(picture, dtype=np.float64) / 255.0
    rows = np.flatnonzero((ink > 0.05).any(axis=1))
    columns = np.flatnonzero((ink > 0.05).any(axis=0))
    if rows.size == 0:
        return None
    glyph = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    glyph.flags.writeable = False  # shared through the cache
    return glyph


def _has_digits(path: Path) -> bool:
    """True when the font draws ten different digits (symbol fonts draw boxes or nothing)."""
    try:
        font = ImageFont.truetype(str(path), size=32)
        masks = [np.asarray(font.getmask(str(d))) for d in range(10)]
        missing = np.asarray(font.getmask("\ue000"))  # private-use: the font's "no glyph" box
    except (OSError, ValueError):
        return False
    shapes = {m.tobytes() for m in masks}
    return all(m.size and m.any() for m in masks) and len(shapes) == 10 and \
        missing.tobytes() not in shapes

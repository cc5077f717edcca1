"""Turn a picture of a digit into an MNIST digit, the way MNIST itself was made.

LeCun et al. size-normalised each NIST digit to fit a 20x20 box, preserving its aspect ratio and
anti-aliasing, then centred it in a 28x28 field on its centre of mass. A drawing from a browser
needs the same treatment, plus a few steps first: flatten transparency, decide which of ink and
background is the light one, and crop to the ink. `to_mnist` is the single entry point used by
the server's /predict and by `mnist-lab evaluate --drawn`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIDE = 28
BOX = 20  # MNIST digits fit a 20x20 box inside the 28x28 field
INK_THRESHOLD = 0.1  # fraction of full contrast below which a pixel counts as background
_LUMA = np.array([0.299, 0.587, 0.114])


class EmptyImageError(ValueError):
    """The picture has no ink: nothing was drawn, or it is one flat colour."""


def to_mnist(image: np.ndarray) -> np.ndarray:
    """A (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 picture -> (784,) float32 in [0, 1].

    The result is white ink on black, the digit scaled so its longer side is 20 pixels and placed
    with its centre of mass at pixel (14, 14), like every MNIST digit.
    """
    ink = ink_map(image)
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    columns = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    cropped = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    digit = _fit_box(cropped)
    return _centre_by_mass(digit).reshape(SIDE * SIDE)


def ink_map(image: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1]: 1 where the ink is strongest, 0 on the background.

    Transparent pixels are composited over a background that contrasts with the ink (white under
    dark ink, black under light ink), so a transparent canvas with dark strokes works: there the
    alpha channel is the drawing. The background's brightness is the median of the border pixels;
    ink is whatever differs from it, scaled so the strongest ink is 1.
    """
    grey = _luminance_over_background(_validated(image))
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(border))
    contrast = (background - grey) if background >= 0.5 else (grey - background)
    contrast = np.clip(contrast, 0.0, None)
    strongest = float(contrast.max())
    if strongest < 0.1:
        raise EmptyImageError(
            "the image has no visible digit: it is (almost) one flat colour "
            f"(strongest ink contrast {strongest:.2f} of 1); draw a digit and try again"
        )
    return contrast / strongest


def _validated(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"expected a grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4) image, got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise EmptyImageError(f"the image is empty (shape {image.shape}); draw a digit and try again")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating) and np.isfinite(image).all():
        if image.min() >= 0 and image.max() <= 1:
            return image.astype(np.float64)
    raise ValueError(
        f"expected uint8 pixels (0-255) or floats in [0, 1], got dtype {image.dtype}; "
        "convert the image to 8-bit first"
    )


def _luminance_over_background(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    luminance = image[:, :, :3] @ _LUMA
    if image.shape[2] == 3:
        return luminance
    alpha = image[:, :, 3]
    if alpha.sum() < 1e-9:
        raise EmptyImageError("the image is fully transparent: nothing was drawn")
    ink_brightness = float((alpha * luminance).sum() / alpha.sum())
    if alpha.min() > 0.999:  # opaque: nothing to composite
        return luminance
    # The brightness of the (mostly opaque) strokes decides the backdrop that shows them best.
    background = 1.0 if ink_brightness < 0.5 else 0.0
    return alpha * luminance + (1.0 - alpha) * background


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Scale so the longer side is 20 pixels, keeping the aspect ratio, with anti-aliasing."""
    height, width = ink.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))  # Pillow: (w, h)
    # BOX averages the source pixels under each target pixel (area averaging) when shrinking;
    # BILINEAR interpolates smoothly when a tiny drawing has to grow.
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    scaled = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, resample))
    scaled = np.clip(scaled, 0.0, None)
    return scaled / scaled.max()


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place the digit in a 28x28 field so its centre of mass lands on pixel (14, 14)."""
    height, width = digit.shape
    mass = digit.sum()
    centre_row = float((digit.sum(axis=1) * np.arange(height)).sum() / mass)
    centre_column = float((digit.sum(axis=0) * np.arange(width)).sum() / mass)
    top = int(round(SIDE / 2 - centre_row))
    left = int(round(SIDE / 2 - centre_column))
    field = np.zeros((SIDE, SIDE), dtype=np.float32)
    # paste with clipping: a very lopsided digit may poke out of the field, as in MNIST
    rows = slice(max(0, top), min(SIDE, top + height))
    columns = slice(max(0, left), min(SIDE, left + width))
    field[rows, columns] = digit[
        rows.start - top : rows.stop - top, columns.start - left : columns.stop - left
    ]
    return np.clip(field, 0.0, 1.0)

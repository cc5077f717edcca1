"""Random distortions of training digits, one whole batch at a time (Simard, Steinkraus & Platt 2003).

Every output pixel p of a 28x28 digit is read from the source image at

    q = A^-1 (p - c - t) + c + alpha * (G_sigma * U)(p)

where c is the image centre, A = R(theta) Sh(phi) s is a random rotation, shear and zoom, t a
random shift, U a field of independent uniform [-1, 1] displacements and G_sigma * U that field
smoothed by a Gaussian of width sigma (the paper's elastic distortion). The value at q comes from
bilinear interpolation, done for the whole batch with one gather per corner. Before warping, a
random subset of digits gets thicker or thinner strokes: a blend towards the grey-scale dilation
(the maximum over a pixel's cross-shaped neighbourhood) or erosion (the minimum).

Everything is vectorised over the batch and drawn from the caller's Generator, so the same seed
gives the same distortions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from engine.config import AugmentConfig

SIDE = 28
_CENTRE = (SIDE - 1) / 2.0
_PADDED = SIDE + 3  # one zero pixel before each row/column, two after: out-of-image reads give 0


def augment_batch(
    images: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Distort a (B, 784) uint8 batch; returns (B, 784) float32 in [0, 1].

    With every field of `config` at zero this is exactly `images / 255`.
    """
    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != SIDE * SIDE:
        raise ValueError(
            f"augment_batch expects a (batch, 784) array of 28x28 digits, got shape {images.shape}"
        )
    batch = images.shape[0]
    pixels = images.reshape(batch, SIDE, SIDE).astype(np.float32) * np.float32(1 / 255)

    if config.thickness > 0:
        pixels = vary_thickness(pixels, config.thickness, rng)

    has_affine = config.shift > 0 or config.rotation > 0 or config.scale > 0 or config.shear > 0
    has_elastic = config.elastic_alpha > 0 and config.elastic_sigma > 0
    if not (has_affine or has_elastic):
        return pixels.reshape(batch, SIDE * SIDE)

    affine = random_affine(batch, config, rng) if has_affine else None
    displacement = (
        elastic_displacements(batch, config.elastic_alpha, config.elastic_sigma, rng)
        if has_elastic
        else None
    )
    return warp(pixels, affine, displacement).reshape(batch, SIDE * SIDE)


def warp(
    pixels: np.ndarray,
    affine: np.ndarray | None = None,
    displacement: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Resample (B, 28, 28) images: output pixel p reads the source at affine (p - c, 1) + c + d(p).

    `affine` is (B, 2, 3), acting on output coordinates relative to the centre c (None: identity);
    `displacement` is the (dx, dy) elastic field, each (B, 28, 28) (None: no displacement).
    """
    batch = pixels.shape[0]
    if affine is None:
        affine = np.broadcast_to(np.eye(2, 3, dtype=np.float32), (batch, 2, 3))
    sources = affine.astype(np.float32) @ _homogeneous_grid() + np.float32(_CENTRE)
    source_x = sources[:, 0].reshape(batch, SIDE, SIDE)
    source_y = sources[:, 1].reshape(batch, SIDE, SIDE)
    if displacement is not None:
        source_x = source_x + displacement[0]
        source_y = source_y + displacement[1]
    return bilinear_sample(pixels, source_x, source_y)


def vary_thickness(pixels: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Thicken or thin the strokes of each digit with the given probability.

    A chosen digit moves a random fraction a in [-1, 1] of the way towards its dilation (a > 0) or
    its erosion (a < 0) by a 3x3 cross, so stroke width varies continuously by up to ~2 pixels.
    """
    batch = pixels.shape[0]
    amount = rng.uniform(-1.0, 1.0, size=batch).astype(np.float32)
    chosen = rng.random(batch) < probability
    amount = np.where(chosen, amount, np.float32(0))
    if not chosen.any():
        return pixels
    selected = np.flatnonzero(chosen)
    digits = pixels[selected]
    padded = np.pad(digits, ((0, 0), (1, 1), (1, 1)))
    neighbours = np.stack(
        [
            digits,
            padded[:, :-2, 1:-1],
            padded[:, 2:, 1:-1],
            padded[:, 1:-1, :-2],
            padded[:, 1:-1, 2:],
        ]
    )
    a = amount[selected][:, None, None]
    target = np.where(a > 0, neighbours.max(axis=0), neighbours.min(axis=0))
    out = pixels.copy()
    out[selected] = digits + np.abs(a) * (target - digits)
    return out


def elastic_displacements(
    batch: int, alpha: float, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simard's elastic field: alpha * (Gaussian_sigma * uniform[-1, 1] noise), one per digit and axis.

    The separable Gaussian is a 28x28 matrix G (reflecting at the border), so smoothing the whole
    batch is two matrix products: G U G^T.
    """
    smooth = _gaussian_matrix(float(sigma))
    noise = rng.random((2 * batch, SIDE, SIDE), dtype=np.float32) * np.float32(2) - np.float32(1)
    rows = (noise.reshape(-1, SIDE) @ smooth.T).reshape(2 * batch, SIDE, SIDE)  # along x
    columns = rows.transpose(0, 2, 1).reshape(-1, SIDE) @ smooth.T  # along y
    field = columns.reshape(2 * batch, SIDE, SIDE).transpose(0, 2, 1) * np.float32(alpha)
    return field[:batch], field[batch:]


def bilinear_sample(pixels: np.ndarray, source_x: np.ndarray, source_y: np.ndarray) -> np.ndarray:
    """Read each (B, 28, 28) image at fractional positions; outside the image reads 0."""
    batch = pixels.shape[0]
    padded = np.zeros((batch, _PADDED, _PADDED), dtype=np.float32)
    padded[:, 1 : SIDE + 1, 1 : SIDE + 1] = pixels
    flat = padded.reshape(-1)

    x = np.clip(source_x, -1.0, float(SIDE), dtype=np.float32)
    y = np.clip(source_y, -1.0, float(SIDE), dtype=np.float32)
    x0 = np.floor(x)
    y0 = np.floor(y)
    wx = x - x0
    wy = y - y0
    base = (np.arange(batch, dtype=np.int32) * (_PADDED * _PADDED))[:, None, None]
    index = base + (y0.astype(np.int32) + 1) * _PADDED + (x0.astype(np.int32) + 1)
    top_left, top_right = flat[index], flat[index + 1]
    bottom_left, bottom_right = flat[index + _PADDED], flat[index + _PADDED + 1]
    top = top_left + wx * (top_right - top_left)
    bottom = bottom_left + wx * (bottom_right - bottom_left)
    return top + wy * (bottom - top)


def random_affine(batch: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """(B, 2, 3) maps [A^-1 | -A^-1 t] from output to source coordinates (both relative to the
    centre) for a random A = rotation @ shear @ zoom and a random shift t."""
    theta = np.deg2rad(rng.uniform(-config.rotation, config.rotation, batch))
    phi = np.deg2rad(rng.uniform(-config.shear, config.shear, batch))
    zoom = 1.0 + rng.uniform(-config.scale, config.scale, batch)
    shift = rng.uniform(-config.shift, config.shift, (batch, 2))
    return inverse_affine(theta, phi, zoom, shift)


def inverse_affine(theta: np.ndarray, phi: np.ndarray, zoom: np.ndarray, shift: np.ndarray
                   ) -> np.ndarray:
    """[A^-1 | -A^-1 t] for A = R(theta) @ [[1, tan(phi)], [0, 1]] * zoom (angles in radians,
    (x, y) = (column, row) coordinates, y pointing down) and shift t = (tx, ty), all per sample."""
    cos, sin, tan = np.cos(theta), np.sin(theta), np.tan(phi)
    forward = np.empty((len(theta), 2, 2))
    forward[:, 0, 0] = cos * zoom
    forward[:, 0, 1] = (cos * tan - sin) * zoom
    forward[:, 1, 0] = sin * zoom
    forward[:, 1, 1] = (sin * tan + cos) * zoom
    inverse = np.linalg.inv(forward)
    affine = np.empty((len(theta), 2, 3), dtype=np.float32)
    affine[:, :, :2] = inverse
    affine[:, :, 2] = -np.einsum("bij,bj->bi", inverse, shift)
    return affine


@lru_cache(maxsize=1)
def _homogeneous_grid() -> np.ndarray:
    """(3, 784): rows x - c, y - c and 1 for every output pixel, row by row."""
    coordinates = np.arange(SIDE, dtype=np.float32) - np.float32(_CENTRE)
    grid_y, grid_x = np.meshgrid(coordinates, coordinates, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel(), np.ones(SIDE * SIDE, dtype=np.float32)])


@lru_cache(maxsize=8)
def _gaussian_matrix(sigma: float) -> np.ndarray:
    """G with (G f)[i] = sum_j g(i - j) f[j], the border handled by reflection (like scipy's)."""
    if sigma < 0.05:  # narrower than a twentieth of a pixel: no smoothing at all
        return np.eye(SIDE, dtype=np.float32)
    radius = max(1, int(np.ceil(4 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((SIDE, SIDE))
    for i in range(SIDE):
        for offset, weight in zip(offsets, kernel, strict=True):
            j = i + offset
            # reflect about the edges (-1 -> 0, 28 -> 27), folding repeatedly for wide kernels
            while j < 0 or j >= SIDE:
                j = -j - 1 if j < 0 else 2 * SIDE - j - 1
            matrix[i, j] += weight
    return matrix.astype(np.float32)

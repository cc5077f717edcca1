"""Random distortions of training digits, one whole batch at a time (Simard, Steinkraus & Platt 2003).

Every output pixel p of a 28x28 digit is read from the source image at

    q = A^-1 (p - c - t) + c + d(p)

where c is the image centre, A = R(theta) Sh(phi) s is a random rotation, shear and zoom, t a
random shift and d an elastic displacement field: independent uniform [-1, 1] noise smoothed by a
Gaussian of width sigma and scaled by alpha (the paper's elastic distortion). The value at q comes
from bilinear interpolation, done with one gather per corner. Before warping, a random subset of
digits gets thicker or thinner strokes: a blend towards the grey-scale dilation (the maximum over a
pixel's cross-shaped neighbourhood) or erosion (the minimum).

Everything is vectorised, in float32, and drawn from the caller's Generator, so the same seed gives
the same distortions. For each batch every random number is drawn first, in this order: thickness
(the amounts, then which digits), affine (rotation, shear, zoom, shift), elastic noise. The pixels
are then distorted `CHUNK` digits at a time, in memory kept from one batch to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from engine.config import AugmentConfig

SIDE = 28
PIXELS = SIDE * SIDE
_CENTRE = (SIDE - 1) / 2.0
# Each digit sits in a zero frame: one pixel before each row and column, two after, so that every
# read outside the digit (positions are clipped to [-1, 28]) finds a 0.
_FRAME = SIDE + 3
# Digits distorted at a time: their scratch arrays (about 60 bytes a pixel) then stay in the
# core's cache between the dozen passes over them.
CHUNK = 128
# Singular values of the smoothing below this fraction of the largest one are dropped: the elastic
# field's variance changes by less than (1e-3)^2 of itself.
_ELASTIC_RANK_TOLERANCE = 1e-3


def augment_batch(
    images: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Distort a (B, 784) uint8 batch; returns (B, 784) float32 in [0, 1].

    With every field of `config` at zero this is exactly `images / 255`. To distort batch after
    batch, keep an `Augmenter`: it reuses its memory.
    """
    return Augmenter(config)(images, rng)


@dataclass(frozen=True)
class Distortions:
    """The random part of one batch's distortions, per digit (None: that kind is off)."""

    thickness: np.ndarray | None  # (B,) a: towards the dilation if a > 0, the erosion if a < 0
    affine: np.ndarray | None  # (B, 2, 3) maps from output to source coordinates
    elastic_noise: np.ndarray | None  # (2, B, r, r) alpha * uniform[-1, 1]: dx's, then dy's

    @classmethod
    def draw(cls, batch: int, config: AugmentConfig, rng: np.random.Generator) -> Distortions:
        thickness = affine = noise = None
        if config.thickness > 0:
            amount = rng.uniform(-1.0, 1.0, size=batch).astype(np.float32)
            chosen = rng.random(batch) < config.thickness
            thickness = np.where(chosen, amount, np.float32(0))
        if config.shift > 0 or config.rotation > 0 or config.scale > 0 or config.shear > 0:
            affine = random_affine(batch, config, rng)
        if config.elastic_alpha > 0 and config.elastic_sigma > 0:
            rank = _elastic_basis(float(config.elastic_sigma)).shape[0]
            noise = rng.random((2, batch, rank, rank), dtype=np.float32)
            noise *= np.float32(2 * config.elastic_alpha)
            noise -= np.float32(config.elastic_alpha)
        return cls(thickness, affine, noise)

    def __getitem__(self, digits: slice) -> Distortions:
        return Distortions(
            None if self.thickness is None else self.thickness[digits],
            None if self.affine is None else self.affine[digits],
            None if self.elastic_noise is None else self.elastic_noise[:, digits],
        )


class Augmenter:
    """`augment_batch` for a stream of batches, keeping its scratch memory from one to the next.

    Fresh arrays of a batch's size cost more than the arithmetic done in them (the allocator hands
    such blocks back to the OS and takes page faults to get them again). Not thread-safe: one per
    thread.
    """

    def __init__(self, config: AugmentConfig):
        self.config = config
        self.sigma = float(config.elastic_sigma)
        self._scratch: _Scratch | None = None

    def __call__(self, images: np.ndarray, rng: np.random.Generator,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Distort a (B, 784) uint8 batch into `out` (a new (B, 784) float32 array if None)."""
        images = np.asarray(images)
        if images.ndim != 2 or images.shape[1] != PIXELS:
            raise ValueError(
                f"augment_batch expects a (batch, 784) array of 28x28 digits, got shape {images.shape}"
            )
        batch = images.shape[0]
        if out is None:
            out = np.empty((batch, PIXELS), dtype=np.float32)
        distortions = Distortions.draw(batch, self.config, rng)
        for start in range(0, batch, CHUNK):
            chunk = slice(start, min(start + CHUNK, batch))
            self._distort(images[chunk], distortions[chunk], out[chunk])
        return out

    def _distort(self, images: np.ndarray, distortions: Distortions, out: np.ndarray) -> None:
        digits = len(images)
        if self._scratch is None or self._scratch.digits < digits:
            self._scratch = _Scratch(digits)
        scratch = self._scratch.first(digits)
        inside = scratch.frames[:, 1 : SIDE + 1, 1 : SIDE + 1]
        np.multiply(images.reshape(digits, SIDE, SIDE), np.float32(1 / 255), out=inside)
        if distortions.thickness is not None:
            _vary_thickness_framed(scratch.frames, distortions.thickness)
        if distortions.affine is None and distortions.elastic_noise is None:
            np.copyto(out.reshape(digits, SIDE, SIDE), inside)
            return
        _source_positions(distortions.affine, scratch.sources)
        if distortions.elastic_noise is not None:
            _elastic_field(distortions.elastic_noise, self.sigma, scratch.field)
            scratch.sources += scratch.field
        _bilinear_framed(scratch, out)


# --- the distortions one at a time (tests and figures) -------------------------------------------
def warp(
    pixels: np.ndarray,
    affine: np.ndarray | None = None,
    displacement: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Resample (B, 28, 28) images: output pixel p reads the source at affine (p - c, 1) + c + d(p).

    `affine` is (B, 2, 3), acting on output coordinates relative to the centre c (None: identity);
    `displacement` is the (dx, dy) elastic field, each (B, 28, 28) (None: no displacement).
    """
    scratch = _Scratch.holding(pixels)
    _source_positions(affine, scratch.sources)
    if displacement is not None:
        scratch.sources += np.reshape(displacement, scratch.sources.shape)
    return _bilinear_framed(scratch).reshape(pixels.shape)


def bilinear_sample(pixels: np.ndarray, source_x: np.ndarray, source_y: np.ndarray) -> np.ndarray:
    """Read each (B, 28, 28) image at fractional positions; outside the image reads 0."""
    scratch = _Scratch.holding(pixels)
    scratch.sources[0] = np.reshape(source_x, scratch.sources[0].shape) + np.float32(1)
    scratch.sources[1] = np.reshape(source_y, scratch.sources[1].shape) + np.float32(1)
    return _bilinear_framed(scratch).reshape(pixels.shape)


def vary_thickness(pixels: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Thicken or thin the strokes of each digit with the given probability.

    A chosen digit moves a random fraction a in [-1, 1] of the way towards its dilation (a > 0) or
    its erosion (a < 0) by a 3x3 cross, so stroke width varies continuously by up to ~2 pixels.
    """
    scratch = _Scratch.holding(pixels)
    amount = Distortions.draw(len(pixels), AugmentConfig(thickness=probability), rng).thickness
    if amount is not None:
        _vary_thickness_framed(scratch.frames, amount)
    return scratch.frames[:, 1 : SIDE + 1, 1 : SIDE + 1].copy()


def elastic_displacements(
    batch: int, alpha: float, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simard's elastic field alpha * (G_sigma * U), one per digit and axis: (dx, dy), each
    (B, 28, 28); zero when alpha or sigma is 0, as `augment_batch` then distorts nothing."""
    noise = Distortions.draw(batch, AugmentConfig(elastic_alpha=alpha, elastic_sigma=sigma),
                             rng).elastic_noise
    field = np.zeros((2, batch, PIXELS), dtype=np.float32)
    if noise is not None:
        _elastic_field(noise, float(sigma), field)
    return field[0].reshape(batch, SIDE, SIDE), field[1].reshape(batch, SIDE, SIDE)


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
    (x, y) = (column, row) coordinates, y pointing down) and shift t = (tx, ty), all per sample.

    A^-1 = zoom^-1 [[1, -tan(phi)], [0, 1]] R(-theta).
    """
    cos, sin, tan = np.cos(theta), np.sin(theta), np.tan(phi)
    inverse = np.empty((len(theta), 2, 2))
    inverse[:, 0, 0] = (cos + tan * sin) / zoom
    inverse[:, 0, 1] = (sin - tan * cos) / zoom
    inverse[:, 1, 0] = -sin / zoom
    inverse[:, 1, 1] = cos / zoom
    affine = np.empty((len(theta), 2, 3), dtype=np.float32)
    affine[:, :, :2] = inverse
    affine[:, :, 2] = -np.einsum("bij,bj->bi", inverse, shift)
    return affine


# --- the work, on digits in their zero frames ------------------------------------------------------
class _Scratch:
    """The arrays a chunk of digits is distorted in, each contiguous; `first(n)` fits fewer digits
    into the same memory."""

    def __init__(self, digits: int):
        if digits * _FRAME**2 >= 2**24:  # the float32 offsets below would no longer be exact
            raise ValueError(f"at most {2**24 // _FRAME**2 - 1} digits at a time, got {digits}")
        self._memory = {
            "frames": np.zeros(digits * _FRAME**2, dtype=np.float32),  # the borders stay 0
            "sources": np.empty(2 * digits * PIXELS, dtype=np.float32),  # x (column), y (row)
            "field": np.empty(2 * digits * PIXELS, dtype=np.float32),  # elastic dx, dy
            "whole": np.empty(2 * digits * PIXELS, dtype=np.float32),
            "index": np.empty(digits * PIXELS, dtype=np.intp),
            "neighbours": np.empty(4 * digits * PIXELS, dtype=np.float32),
            # where each digit's frame starts in the chunk's frames, as a float32 (exact: < 2^24)
            "offsets": np.arange(digits, dtype=np.float32) * np.float32(_FRAME**2),
        }
        self._shape(digits)

    def first(self, digits: int) -> _Scratch:
        if digits == self.digits:
            return self
        view = object.__new__(_Scratch)
        view._memory = self._memory
        view._shape(digits)
        return view

    def _shape(self, digits: int) -> None:
        self.digits = digits

        def part(name: str, *shape: int) -> np.ndarray:
            return self._memory[name][: int(np.prod(shape))].reshape(shape)

        self.frames = part("frames", digits, _FRAME, _FRAME)
        self.sources = part("sources", 2, digits, PIXELS)
        self.field = part("field", 2, digits, PIXELS)
        self.whole = part("whole", 2, digits, PIXELS)
        self.index = part("index", digits, PIXELS)
        self.neighbours = part("neighbours", 4, digits, PIXELS)
        self.offsets = part("offsets", digits, 1)

    @classmethod
    def holding(cls, pixels: np.ndarray) -> _Scratch:
        scratch = cls(len(pixels))
        scratch.frames[:, 1 : SIDE + 1, 1 : SIDE + 1] = np.reshape(pixels, (-1, SIDE, SIDE))
        return scratch


def _vary_thickness_framed(frames: np.ndarray, amount: np.ndarray) -> None:
    """Each framed digit moves |a| of the way to its dilation (a > 0) or erosion (a < 0), in place."""
    for selected, extreme in ((np.flatnonzero(amount > 0), np.maximum),   # dilation
                              (np.flatnonzero(amount < 0), np.minimum)):  # erosion
        if len(selected) == 0:
            continue
        chosen = frames[selected]
        digits = chosen[:, 1:-2, 1:-2]
        target = extreme(digits, chosen[:, :-3, 1:-2])  # the cross: up, down, left, right
        extreme(target, chosen[:, 2:-1, 1:-2], out=target)
        extreme(target, chosen[:, 1:-2, :-3], out=target)
        extreme(target, chosen[:, 1:-2, 2:-1], out=target)
        # digit + |a| (target - digit)
        target -= digits
        target *= np.abs(amount[selected])[:, None, None]
        target += digits
        frames[selected, 1 : SIDE + 1, 1 : SIDE + 1] = target


def _source_positions(affine: np.ndarray | None, out: np.ndarray) -> None:
    """Into `out` (2, B, 784): where every output pixel reads, as (x, y) in its digit's frame."""
    grid = _homogeneous_grid()
    if affine is None:
        out[...] = grid[:2, None, :] + np.float32(_CENTRE + 1)
        return
    # [A^-1 | -A^-1 t + c + 1] (x - c, y - c, 1) for every pixel: one product per coordinate
    # (+ 1: the frame's first row and column)
    in_frame = affine.astype(np.float32)
    in_frame[:, :, 2] += np.float32(_CENTRE + 1)
    np.matmul(in_frame.transpose(1, 0, 2), grid, out=out)


def _bilinear_framed(scratch: _Scratch, out: np.ndarray | None = None) -> np.ndarray:
    """(B, 784): the framed digits read at `scratch.sources` (used up doing so).

    Positions are clipped to [0, 29] in the frame: [-1, 28] in the digit, where all reads are 0.
    """
    sources, whole = scratch.sources, scratch.whole
    np.clip(sources, 0.0, float(SIDE + 1), out=sources)
    np.floor(sources, out=whole)  # x0, y0
    wx, wy = np.subtract(sources, whole, out=sources)  # the fractions
    # flat index of the top-left neighbour: frame start + y0 * 31 + x0 (exact in float32)
    start = np.multiply(whole[1], np.float32(_FRAME), out=whole[1])
    start += whole[0]
    start += scratch.offsets
    np.copyto(scratch.index, start, casting="unsafe")
    flat = scratch.frames.reshape(-1)
    # The other three neighbours: the same index into the frames shifted by 1, 31 and 32 pixels.
    # Every index is in range; mode="wrap" only spares the copy of `out` that "raise" makes.
    for shift, neighbour in zip((0, 1, _FRAME, _FRAME + 1), scratch.neighbours, strict=True):
        np.take(flat[shift:], scratch.index, out=neighbour, mode="wrap")
    top_left, top_right, bottom_left, bottom_right = scratch.neighbours
    top = _lerp(top_left, top_right, wx)
    bottom = _lerp(bottom_left, bottom_right, wx)
    if out is None:
        out = np.empty((scratch.digits, PIXELS), dtype=np.float32)
    np.subtract(bottom, top, out=out)  # top + wy (bottom - top)
    out *= wy
    out += top
    return out


def _lerp(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """a + weight (b - a), computed in b's memory."""
    b -= a
    b *= weight
    b += a
    return b


def _elastic_field(noise: np.ndarray, sigma: float, out: np.ndarray) -> None:
    """Into `out` (2, B, 784): the smoothed (2, B, r, r) noise, the dx field of every digit then
    the dy fields.

    The smoothing is a 28x28 matrix G (reflecting at the border): a field is G U G^T for a noise
    image U. A Gaussian of width sigma keeps few of G's singular values (9 of 28 for sigma = 4):
    with G = V S W^T and K = V_r S_r, the field K Z K^T for r x r uniform noise Z has the covariance
    of the full one, (1/3) G G^T (x) G G^T times the noise's scale squared, from r^2 random numbers
    instead of 784, and costs two thin matrix products.
    """
    basis = _elastic_basis(sigma)  # K^T, (r, 28)
    half = np.matmul(noise, basis)  # Z K^T
    np.matmul(basis.T, half, out=out.reshape(*noise.shape[:2], SIDE, SIDE))  # K (Z K^T)


@lru_cache(maxsize=8)
def _elastic_basis(sigma: float) -> np.ndarray:
    """K^T = (V_r S_r)^T, (r, 28): the singular vectors of the Gaussian smoothing that matter."""
    vectors, values, _ = np.linalg.svd(_gaussian_matrix(sigma).astype(np.float64))
    rank = int(np.count_nonzero(values >= _ELASTIC_RANK_TOLERANCE * values[0]))
    return np.ascontiguousarray((vectors[:, :rank] * values[:rank]).T, dtype=np.float32)


@lru_cache(maxsize=1)
def _homogeneous_grid() -> np.ndarray:
    """(3, 784): rows x - c, y - c and 1 for every output pixel, row by row."""
    coordinates = np.arange(SIDE, dtype=np.float32) - np.float32(_CENTRE)
    grid_y, grid_x = np.meshgrid(coordinates, coordinates, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel(), np.ones(PIXELS, dtype=np.float32)])


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

"""engine.augment: distortions keep digits digits, and do exactly the geometry they claim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import augment
from engine.augment import (
    Augmenter,
    augment_batch,
    elastic_displacements,
    inverse_affine,
    vary_thickness,
    warp,
)
from engine.config import AugmentConfig
from engine.metrics import normalise

SIMARD_ELASTIC = AugmentConfig(elastic_alpha=34, elastic_sigma=4)
EVERYTHING = AugmentConfig(shift=2, rotation=15, scale=0.15, shear=15, elastic_alpha=34,
                           elastic_sigma=4, thickness=0.5)


def blobs(batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 784) uint8 digits-like images: a few bright Gaussian blobs well inside the field."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:28, 0:28]
    images = np.zeros((batch, 28, 28))
    for image in images:
        for _ in range(3):
            cy, cx = rng.uniform(9, 19, 2)
            image += np.exp(-((rows - cy) ** 2 + (columns - cx) ** 2) / (2 * 1.5**2))
    return (255 * np.clip(images, 0, 1)).astype(np.uint8).reshape(batch, 784)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(B, 2) centre of mass (x, y) of (B, 784) images."""
    pictures = images.reshape(-1, 28, 28).astype(np.float64)
    mass = pictures.sum(axis=(1, 2))
    x = (pictures.sum(axis=1) * np.arange(28)).sum(axis=1) / mass
    y = (pictures.sum(axis=2) * np.arange(28)).sum(axis=1) / mass
    return np.stack([x, y], axis=1)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 40),
    shift=st.floats(0, 4),
    rotation=st.floats(0, 30),
    scale=st.floats(0, 0.3),
    shear=st.floats(0, 30),
    alpha=st.floats(0, 40),
    sigma=st.floats(0, 6),
    thickness=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_output_is_a_float32_batch_of_pixels_in_0_1(
    batch, shift, rotation, scale, shear, alpha, sigma, thickness, seed
):
    config = AugmentConfig(shift, rotation, scale, shear, alpha, sigma, thickness)
    images = blobs(batch, seed % 1000)
    out = augment_batch(images, config, np.random.default_rng(seed))
    assert out.shape == (batch, 784)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_all_zero_config_is_exactly_normalisation():
    images = blobs(16)
    out = augment_batch(images, AugmentConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, normalise(images))  # what the trainer does without it


def test_same_seed_same_distortions_and_another_seed_different():
    images = blobs(32)
    first = augment_batch(images, EVERYTHING, np.random.default_rng(7))
    again = augment_batch(images, EVERYTHING, np.random.default_rng(7))
    other = augment_batch(images, EVERYTHING, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.1


def test_every_distortion_changes_the_digits():
    images = blobs(8)
    plain = images / 255.0
    for field in ("shift", "rotation", "scale", "shear", "thickness"):
        config = AugmentConfig(**{field: {"thickness": 1.0}.get(field, 3.0 if field == "shift"
                                                                  else 0.2 if field == "scale"
                                                                  else 20.0)})
        out = augment_batch(images, config, np.random.default_rng(1))
        assert np.abs(out - plain).max() > 0.05, field
    out = augment_batch(images, SIMARD_ELASTIC, np.random.default_rng(1))
    assert np.abs(out - plain).max() > 0.05


@given(dx=st.floats(-4, 4), dy=st.floats(-4, 4))
@settings(max_examples=30, deadline=None)
def test_a_pure_shift_moves_the_centre_of_mass_by_the_shift(dx, dy):
    images = blobs(4)
    affine = inverse_affine(np.zeros(4), np.zeros(4), np.ones(4), np.tile([dx, dy], (4, 1)))
    moved = warp(images.reshape(4, 28, 28) / 255.0, affine)
    shift = centre_of_mass(moved.reshape(4, 784)) - centre_of_mass(images)
    np.testing.assert_allclose(shift, np.tile([dx, dy], (4, 1)), atol=0.02)


def test_random_shift_stays_within_its_bound_and_varies():
    images = np.repeat(blobs(1), 200, axis=0)
    out = augment_batch(images, AugmentConfig(shift=3), np.random.default_rng(3))
    shift = centre_of_mass(out) - centre_of_mass(images)
    assert np.abs(shift).max() <= 3.02
    assert shift.std(axis=0).min() > 1.0  # uniform on [-3, 3] has std 1.73


@pytest.mark.parametrize("degrees", [-30, 10, 45, 90])
def test_rotation_preserves_mass_and_rotates_the_centre_of_mass(degrees):
    images = blobs(6, seed=4)
    theta = np.full(6, np.deg2rad(degrees))
    turned = warp(images.reshape(6, 28, 28) / 255.0,
                  inverse_affine(theta, np.zeros(6), np.ones(6), np.zeros((6, 2))))
    mass_before = images.reshape(6, -1).sum(axis=1) / 255.0
    mass_after = turned.reshape(6, -1).sum(axis=1)
    np.testing.assert_allclose(mass_after, mass_before, rtol=0.03)
    c = 13.5
    before = centre_of_mass(images) - c
    rotation = np.array([[np.cos(theta[0]), -np.sin(theta[0])],
                         [np.sin(theta[0]), np.cos(theta[0])]])
    np.testing.assert_allclose(centre_of_mass(turned.reshape(6, 784)) - c, before @ rotation.T,
                               atol=0.15)


def test_zoom_scales_the_spread_of_the_ink():
    images = blobs(6, seed=5)
    bigger = warp(images.reshape(6, 28, 28) / 255.0,
                  inverse_affine(np.zeros(6), np.zeros(6), np.full(6, 1.2), np.zeros((6, 2))))

    def spread(pictures):
        p = pictures.reshape(-1, 28, 28).astype(np.float64)
        x = np.arange(28) - 13.5
        return np.sqrt((p.sum(axis=1) * x**2).sum(axis=1) / p.sum(axis=(1, 2)))

    np.testing.assert_allclose(spread(bigger) / spread(images), 1.2, rtol=0.05)


def test_elastic_field_is_smooth_and_has_the_expected_strength():
    dx, dy = elastic_displacements(500, alpha=34, sigma=4, rng=np.random.default_rng(0))
    assert dx.shape == dy.shape == (500, 28, 28)
    # uniform noise (variance 1/3) through a unit-sum Gaussian of width sigma has variance
    # ~ 1 / (3 * 4 * pi * sigma^2) in 2-D; reflection at the border adds a little
    expected_std = 34 / np.sqrt(3 * 4 * np.pi * 16)
    assert 0.8 * expected_std < dx.std() < 1.5 * expected_std
    # neighbouring displacements are nearly equal: a smooth, elastic deformation
    assert np.abs(np.diff(dx, axis=2)).mean() < 0.15 * dx.std()
    assert abs(float(np.corrcoef(dx.ravel(), dy.ravel())[0, 1])) < 0.05


def test_thickness_thickens_or_thins_only_the_chosen_digits():
    pictures = blobs(400).reshape(400, 28, 28).astype(np.float32) / 255
    out = vary_thickness(pictures, 0.5, np.random.default_rng(0))
    change = (out - pictures).reshape(400, -1).sum(axis=1)
    changed = np.abs(change) > 1e-6
    assert 0.4 < changed.mean() < 0.6
    assert (change > 1e-6).sum() > 60 and (change < -1e-6).sum() > 60  # both directions
    untouched = vary_thickness(pictures, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(untouched, pictures)


def test_rejects_a_batch_that_is_not_28x28_digits():
    with pytest.raises(ValueError, match="784"):
        augment_batch(np.zeros((4, 100), np.uint8), EVERYTHING, np.random.default_rng(0))


def test_train_command_options_override_the_presets_augmentation():
    from engine.cli import build_parser, train_config_from_args
    from engine.config import preset_config

    parser = build_parser()

    def augmentation(*argv):
        return train_config_from_args(parser.parse_args(["train", *argv])).augmentation

    best = preset_config("best").augmentation
    assert augmentation("--preset", "best") == best
    changed = augmentation("--preset", "best", "--thickness", "0.2", "--elastic-alpha", "20")
    assert (changed.thickness, changed.elastic_alpha) == (0.2, 20.0)
    assert (changed.rotation, changed.elastic_sigma) == (best.rotation, best.elastic_sigma)
    assert not augmentation("--preset", "best", "--no-augment").enabled


# --- the same distortions as the straightforward computation --------------------------------------
def reference_affine_and_thickness(images: np.ndarray, config: AugmentConfig,
                                   rng: np.random.Generator) -> np.ndarray:
    """What augment_batch computes without elastic fields, written plainly: the same random draws
    in the documented order, np.linalg.inv for A^-1, a padded copy and one gather per corner."""
    batch = len(images)
    pixels = images.reshape(batch, 28, 28).astype(np.float64) / 255
    if config.thickness > 0:
        amount = rng.uniform(-1.0, 1.0, batch).astype(np.float32)
        chosen = rng.random(batch) < config.thickness
        padded = np.pad(pixels, ((0, 0), (1, 1), (1, 1)))
        cross = np.stack([pixels, padded[:, :-2, 1:-1], padded[:, 2:, 1:-1],
                          padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
        a = np.where(chosen, amount, 0)[:, None, None]
        target = np.where(a > 0, cross.max(axis=0), cross.min(axis=0))
        pixels = pixels + np.abs(a) * (target - pixels)
    theta = np.deg2rad(rng.uniform(-config.rotation, config.rotation, batch))
    phi = np.deg2rad(rng.uniform(-config.shear, config.shear, batch))
    zoom = 1.0 + rng.uniform(-config.scale, config.scale, batch)
    shift = rng.uniform(-config.shift, config.shift, (batch, 2))
    forward = np.array([[[c * z, (c * np.tan(p) - s) * z], [s * z, (s * np.tan(p) + c) * z]]
                        for c, s, p, z in zip(np.cos(theta), np.sin(theta), phi, zoom, strict=True)])
    inverse = np.linalg.inv(forward)
    grid_y, grid_x = np.mgrid[0:28, 0:28] - 13.5
    x = (inverse[:, 0, 0, None, None] * grid_x + inverse[:, 0, 1, None, None] * grid_y
         - np.einsum("bj,bj->b", inverse[:, 0], shift)[:, None, None] + 13.5)
    y = (inverse[:, 1, 0, None, None] * grid_x + inverse[:, 1, 1, None, None] * grid_y
         - np.einsum("bj,bj->b", inverse[:, 1], shift)[:, None, None] + 13.5)
    x, y = np.clip(x, -1, 28), np.clip(y, -1, 28)
    x0, y0 = np.floor(x), np.floor(y)
    wx, wy = x - x0, y - y0
    padded = np.pad(pixels, ((0, 0), (1, 2), (1, 2)))  # reads at -1, 28 and 29 find 0
    b = np.arange(batch)[:, None, None]
    row, column = y0.astype(int) + 1, x0.astype(int) + 1

    def at(dy, dx):
        return padded[b, row + dy, column + dx]

    top = at(0, 0) + wx * (at(0, 1) - at(0, 0))
    bottom = at(1, 0) + wx * (at(1, 1) - at(1, 0))
    return (top + wy * (bottom - top)).reshape(batch, 784)


@pytest.mark.parametrize("config", [
    AugmentConfig(shift=2, rotation=10, scale=0.1, thickness=0.3),  # the default preset's
    AugmentConfig(shift=4, rotation=40, scale=0.3, shear=25, thickness=1.0),
    AugmentConfig(rotation=90, scale=0.9),  # reads far outside the digit
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_affine_and_thickness_match_the_plain_computation_on_fixed_seeds(config, seed):
    images = blobs(300, seed)  # more than a chunk: the last one is partial
    out = augment_batch(images, config, np.random.default_rng(seed))
    expected = reference_affine_and_thickness(images, config, np.random.default_rng(seed))
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_an_augmenter_gives_what_augment_batch_gives_whatever_the_batch_sizes(monkeypatch):
    images = blobs(300, seed=3)
    augmenter = Augmenter(EVERYTHING)
    rng = np.random.default_rng(5)
    out = np.full((300, 784), np.nan, dtype=np.float32)
    streamed = [augmenter(images[:200], rng), augmenter(images[200:210], rng, out=out[200:210]),
                augmenter(images[210:], rng)]
    assert streamed[1] is out[200:210] or np.shares_memory(streamed[1], out)
    rng = np.random.default_rng(5)
    expected = [augment_batch(images[:200], EVERYTHING, rng),
                augment_batch(images[200:210], EVERYTHING, rng),
                augment_batch(images[210:], EVERYTHING, rng)]
    for got, want in zip(streamed, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # Every random number of a batch is drawn before its chunks are distorted: the chunk size
    # changes how the work is cut, not the digits.
    monkeypatch.setattr(augment, "CHUNK", 7)
    np.testing.assert_array_equal(augment_batch(images[:200], EVERYTHING, np.random.default_rng(5)),
                                  expected[0])


def test_the_closed_form_inverse_inverts_the_forward_map():
    rng = np.random.default_rng(0)
    theta, phi = rng.uniform(-1.5, 1.5, 50), rng.uniform(-1, 1, 50)
    zoom, shift = rng.uniform(0.2, 1.9, 50), rng.uniform(-5, 5, (50, 2))
    affine = inverse_affine(theta, phi, zoom, shift).astype(np.float64)
    cos, sin, tan = np.cos(theta), np.sin(theta), np.tan(phi)
    forward = np.stack([np.stack([cos, cos * tan - sin], -1), np.stack([sin, sin * tan + cos], -1)],
                       1) * zoom[:, None, None]
    np.testing.assert_allclose(affine[:, :, :2] @ forward, np.broadcast_to(np.eye(2), (50, 2, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", affine[:, :, :2], shift), -affine[:, :, 2],
                               atol=1e-4)


# --- the elastic field: the same distribution as smoothing full-resolution noise ------------------
def full_resolution_field(batch: int, alpha: float, sigma: float, rng) -> np.ndarray:
    """Simard's recipe as written: uniform [-1, 1] noise on every pixel, smoothed along rows and
    columns by the Gaussian (reflecting at the border), times alpha. (2, B, 28, 28)."""
    smooth = augment._gaussian_matrix(sigma)
    noise = rng.uniform(-1, 1, (2, batch, 28, 28)).astype(np.float32)
    return alpha * (smooth @ noise @ smooth.T)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 6.0])
def test_the_low_rank_smoothing_has_the_covariance_of_the_full_one(sigma):
    # Field = K Z K^T with Z uniform: its covariance is (1/3) K K^T (x) K K^T, the full one's with
    # G G^T in place of K K^T. So K K^T must be G G^T up to the dropped singular values.
    basis = augment._elastic_basis(sigma).astype(np.float64)  # K^T
    smooth = augment._gaussian_matrix(sigma).astype(np.float64)
    np.testing.assert_allclose(basis.T @ basis, smooth @ smooth.T, atol=1e-5 * (smooth @ smooth.T).max())
    assert basis.shape[0] < 28 if sigma >= 2 else basis.shape[0] <= 28  # fewer random numbers


def test_elastic_displacements_are_distributed_like_the_full_resolution_recipe():
    batch, alpha, sigma = 4000, 34.0, 4.0
    dx, dy = elastic_displacements(batch, alpha, sigma, np.random.default_rng(1))
    new = np.stack([dx, dy])
    old = full_resolution_field(batch, alpha, sigma, np.random.default_rng(2))
    # the per-pixel spread (larger in the middle, where reflection adds less) ...
    np.testing.assert_allclose(new.std(axis=(0, 1)), old.std(axis=(0, 1)), rtol=0.06)
    # ... the distribution of displacement lengths ...
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    new_length = np.hypot(new[0], new[1]).ravel()
    old_length = np.hypot(old[0], old[1]).ravel()
    np.testing.assert_allclose(np.quantile(new_length, quantiles), np.quantile(old_length, quantiles),
                               rtol=0.04)
    # ... and how smooth the field is: the correlation of displacements 1 to 8 pixels apart
    def correlation(a, b):  # both fields have mean 0
        return float(np.mean(a * b) / np.sqrt(np.mean(a * a) * np.mean(b * b)))

    for lag in (1, 2, 4, 8):
        assert correlation(new[..., :-lag], new[..., lag:]) == pytest.approx(
            correlation(old[..., :-lag], old[..., lag:]), abs=0.02), lag
    assert abs(correlation(new[0], new[1])) < 0.02  # dx and dy independent


def test_elastic_distortions_move_ink_as_much_as_the_full_resolution_recipe():
    images = np.repeat(blobs(1, seed=7), 1000, axis=0)
    pictures = images.reshape(-1, 28, 28) / 255.0
    new = warp(pictures, displacement=elastic_displacements(1000, 34, 4, np.random.default_rng(3)))
    old_field = full_resolution_field(1000, 34, 4, np.random.default_rng(4)).astype(np.float32)
    old = warp(pictures, displacement=(old_field[0], old_field[1]))
    moved_new = np.abs(new - pictures).reshape(1000, -1).sum(axis=1)
    moved_old = np.abs(old - pictures).reshape(1000, -1).sum(axis=1)
    np.testing.assert_allclose(np.quantile(moved_new, [0.1, 0.5, 0.9]),
                               np.quantile(moved_old, [0.1, 0.5, 0.9]), rtol=0.06)

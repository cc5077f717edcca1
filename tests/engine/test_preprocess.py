"""engine.preprocess.to_mnist: drawings in, MNIST digits out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drawn import LOOKS, mnist_stroke, place, render
from engine.preprocess import EmptyImageError, to_mnist


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    picture = digit.reshape(28, 28).astype(np.float64)
    mass = picture.sum()
    row = (picture.sum(axis=1) * np.arange(28)).sum() / mass
    column = (picture.sum(axis=0) * np.arange(28)).sum() / mass
    return row, column


def aligned_correlation(digit: np.ndarray, original: np.ndarray) -> float:
    """Correlation after the best shift of at most one pixel each way: MNIST itself rounds the
    centre of mass to whole pixels, so a digit remade from a drawing may sit one pixel over."""
    picture = digit.reshape(28, 28)
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = np.roll(picture, (dy, dx), axis=(0, 1))
            best = max(best, float(np.corrcoef(moved.ravel(), original.ravel())[0, 1]))
    return best


def ring(size: int = 280, centre=(90, 170), radii=(50, 32), width: float = 14) -> np.ndarray:
    """Ink coverage 0..1 of an elliptical ring (a drawn zero) with soft edges."""
    rows, columns = np.mgrid[0:size, 0:size]
    r = np.hypot((rows - centre[0]) / radii[0], (columns - centre[1]) / radii[1])
    distance = np.abs(r - 1) * min(radii)
    return np.clip((width / 2 - distance) / 2 + 0.5, 0, 1)


def test_output_is_784_floats_in_0_1_white_on_black():
    digit = to_mnist(render(ring(), "black_on_white"))
    assert digit.shape == (784,) and digit.dtype == np.float32
    assert digit.min() == 0.0 and digit.max() == pytest.approx(1.0)
    picture = digit.reshape(28, 28)
    assert picture[:2].max() == 0 and picture[-2:].max() == 0  # black margin, like MNIST
    assert picture[:, :2].max() == 0 and picture[:, -2:].max() == 0


def test_longer_side_is_20_pixels_and_aspect_ratio_is_kept():
    digit = to_mnist(render(ring(radii=(100, 40)), "white_on_black")).reshape(28, 28)
    rows = np.flatnonzero((digit > 0.05).any(axis=1))
    columns = np.flatnonzero((digit > 0.05).any(axis=0))
    assert rows[-1] - rows[0] + 1 in (20, 21)
    assert 7 <= columns[-1] - columns[0] + 1 <= 10  # 20 * 40 / 100 = 8, plus edge grey


@pytest.mark.parametrize("look", LOOKS)
def test_all_browser_looks_give_the_same_digit(look):
    reference = to_mnist(render(ring(), "white_on_black"))
    digit = to_mnist(render(ring(), look))
    assert np.abs(digit - reference).max() < 0.02


def test_grey_rgb_and_rgba_inputs_agree():
    ink = ring()
    grey = np.round(255 * (1 - ink)).astype(np.uint8)
    rgb = np.dstack([grey] * 3)
    opaque = np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    for image in (rgb, opaque, grey[:, :, None]):
        np.testing.assert_allclose(to_mnist(image), to_mnist(grey), atol=1e-6)


def test_light_ink_on_a_transparent_canvas():
    ink = ring()
    white_ink = np.dstack([np.full(ink.shape, 255)] * 3 + [np.round(255 * ink)]).astype(np.uint8)
    np.testing.assert_allclose(to_mnist(white_ink), to_mnist(render(ink, "white_on_black")),
                               atol=0.02)


def test_coloured_ink_on_a_coloured_background():
    ink = ring()[:, :, None]
    paper, pen = np.array([250, 240, 200]), np.array([30, 40, 160])  # blue pen on cream paper
    image = np.round(paper * (1 - ink) + pen * ink).astype(np.uint8)
    reference = to_mnist(render(ink[:, :, 0], "white_on_black"))
    assert np.corrcoef(to_mnist(image), reference)[0, 1] > 0.99


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(40, 400),
    width=st.integers(40, 400),
    top=st.floats(0, 1),
    left=st.floats(0, 1),
    radius_y=st.floats(6, 60),
    radius_x=st.floats(6, 60),
    look=st.sampled_from(LOOKS),
)
def test_centre_of_mass_lands_on_14_14(height, width, top, left, radius_y, radius_x, look):
    radius_y = min(radius_y, height / 2 - 3)
    radius_x = min(radius_x, width / 2 - 3)
    centre = (radius_y + 1 + top * (height - 2 * radius_y - 2),
              radius_x + 1 + left * (width - 2 * radius_x - 2))
    rows, columns = np.mgrid[0:height, 0:width]
    blob = np.hypot((rows - centre[0]) / radius_y, (columns - centre[1]) / radius_x) <= 1
    row, column = centre_of_mass(to_mnist(render(blob.astype(float), look)))
    assert abs(row - 14) <= 1 and abs(column - 14) <= 1


@pytest.mark.parametrize(
    "image",
    [
        np.full((280, 280), 255, np.uint8),
        np.zeros((280, 280), np.uint8),
        np.full((50, 80, 3), 128, np.uint8),
        np.zeros((280, 280, 4), np.uint8),  # an untouched transparent canvas
        np.dstack([np.zeros((280, 280, 3)), np.full((280, 280), 255)]).astype(np.uint8),
    ],
    ids=["white", "black", "grey-rgb", "transparent", "opaque-black-rgba"],
)
def test_an_empty_picture_raises_a_clear_error(image):
    with pytest.raises(EmptyImageError, match="draw a digit|nothing was drawn"):
        to_mnist(image)


def test_faint_speckle_is_not_a_digit():
    rng = np.random.default_rng(0)
    noise = (250 + rng.integers(0, 6, (280, 280))).astype(np.uint8)  # off-white paper texture
    with pytest.raises(EmptyImageError):
        to_mnist(noise)


@pytest.mark.parametrize("shape", [(280,), (28, 28, 2), (10, 10, 5), (0, 10)])
def test_malformed_arrays_are_rejected(shape):
    with pytest.raises(ValueError, match="expected|empty"):
        to_mnist(np.zeros(shape, np.uint8))


@pytest.mark.mnist
def test_an_mnist_digit_passes_through_almost_unchanged(mnist_data):
    """MNIST digits are already what to_mnist makes: 20-pixel box, centred on their mass."""
    correlations = [aligned_correlation(to_mnist(image.reshape(28, 28)), image)
                    for image in mnist_data.test_images[:100]]
    assert np.median(correlations) > 0.99
    assert np.min(correlations) > 0.95


@pytest.mark.mnist
@pytest.mark.parametrize("look", LOOKS)
def test_real_digits_drawn_large_and_off_centre_come_back(mnist_data, look):
    """MNIST test digits blown up (40-90% of a 280x280 canvas), moved off-centre, then
    preprocessed: the result correlates strongly with the original 28x28 digit."""
    rng = np.random.default_rng(1)
    correlations = []
    for index in rng.choice(len(mnist_data.test_labels), 60, replace=False):
        original = mnist_data.test_images[index].reshape(28, 28)
        drawn = render(place(mnist_stroke(original), rng), look)
        back = to_mnist(drawn)
        correlations.append(aligned_correlation(back, original))
    assert np.median(correlations) > 0.95
    assert np.min(correlations) > 0.8

"""engine.drawn: the drawn-digit evaluation set is deterministic, honest, and recognisable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.drawn import (
    CANVAS,
    LOOKS,
    drawn_digits,
    evaluate_drawn,
    font_files,
    font_glyph,
    render,
)
from tests.conftest import missing_requirement


def test_each_look_is_what_a_browser_canvas_gives():
    ink = np.zeros((CANVAS, CANVAS))
    ink[100:180, 130:150] = 1.0
    ink[100:180, 150] = 0.6  # an anti-aliased edge
    transparent = render(ink, "transparent")
    assert transparent.shape == (CANVAS, CANVAS, 4) and transparent.dtype == np.uint8
    np.testing.assert_array_equal(transparent[:, :, 3], np.round(255 * ink))
    assert transparent[0, 0].tolist() == [0, 0, 0, 0]  # untouched canvas: transparent black
    assert transparent[120, 140, :3].max() < 60  # dark ink
    black_on_white = render(ink, "black_on_white")
    white_on_black = render(ink, "white_on_black")
    assert black_on_white[0, 0].tolist() == [255, 255, 255]
    assert black_on_white[120, 140].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(255 - black_on_white.astype(int), white_on_black)
    with pytest.raises(ValueError, match="unknown look"):
        render(ink, "sepia")


def test_fonts_on_this_machine_render_every_digit():
    fonts = font_files()
    if not fonts:
        missing_requirement("no TrueType/OpenType fonts installed (apt-get install fonts-dejavu-core)")
    for path in fonts[:3]:
        glyphs = [font_glyph(path, digit) for digit in range(10)]
        assert all(glyph is not None and glyph.max() > 0.9 for glyph in glyphs)
        assert len({glyph.shape for glyph in glyphs}) > 3  # ten different shapes
    upright = font_glyph(fonts[0], 1)
    tilted = font_glyph(fonts[0], 1, rotation=15)
    assert tilted.shape[1] > upright.shape[1] + 10  # a rotated "1" is wider


@pytest.mark.mnist
def test_the_set_is_seeded_and_uses_only_test_digits(mnist_data):
    first = list(drawn_digits(mnist_data, n_mnist=9, seed=3, fonts=False))
    again = list(drawn_digits(mnist_data, n_mnist=9, seed=3, fonts=False))
    other = list(drawn_digits(mnist_data, n_mnist=9, seed=4, fonts=False))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.label == b.label and a.source == b.source
    assert [d.source for d in first] != [d.source for d in other]
    assert [d.look for d in first] == list(LOOKS) * 3
    for digit in first:
        index = int(digit.source.removeprefix("mnist-test[").removesuffix("]"))
        assert digit.label == mnist_data.test_labels[index]
        assert digit.group == "mnist"
        assert digit.image.shape[:2] == (CANVAS, CANVAS) and digit.image.dtype == np.uint8


@pytest.mark.mnist
def test_digits_are_large_and_off_centre(mnist_data):
    heights, centres = [], []
    for digit in drawn_digits(mnist_data, n_mnist=30, seed=0, fonts=False):
        if digit.look == "transparent":
            ink = digit.image[:, :, 3] > 128
        elif digit.look == "black_on_white":
            ink = digit.image[:, :, 0] < 128
        else:
            ink = digit.image[:, :, 0] > 128
        rows = np.flatnonzero(ink.any(axis=1))
        heights.append(rows[-1] - rows[0] + 1)
        centres.append(np.argwhere(ink).mean(axis=0))
    assert min(heights) > 0.3 * CANVAS and max(heights) > 0.7 * CANVAS
    offsets = np.abs(np.array(centres) - CANVAS / 2)
    assert offsets.max() > 40  # some sit well away from the middle


@pytest.mark.mnist
def test_accuracy_report_counts_per_group_and_look(mnist_data):
    """Always answering 0 scores exactly the share of zeros in each group."""
    def always_zero(x):
        probabilities = np.zeros((len(x), 10))
        probabilities[:, 0] = 1
        return probabilities

    report = evaluate_drawn(always_zero, mnist_data, n_mnist=30, seed=0)
    labels = {look: [] for look in LOOKS}
    for digit in drawn_digits(mnist_data, n_mnist=30, seed=0, fonts=False):
        labels[digit.look].append(digit.label)
    for look in LOOKS:
        entry = report[f"mnist/{look}"]
        assert entry["count"] == 10
        assert entry["accuracy"] == pytest.approx(np.mean(np.array(labels[look]) == 0))
    assert report["mnist"]["count"] == 30
    if font_files():
        assert report["fonts"]["count"] == 10 * len(font_files())
        assert report["fonts"]["accuracy"] == pytest.approx(0.1)
    assert report["all"]["count"] == sum(report[g]["count"] for g in ("mnist", "fonts")
                                         if g in report)


@pytest.mark.mnist
@pytest.mark.slow
def test_a_briefly_trained_model_recognises_drawn_digits(mnist_data):
    """One epoch of the default network (no augmentation) on real MNIST, then drawings through
    to_mnist. Floors well below what it reaches, to catch a broken pipeline: an inverted look, a
    lost centring or a wrong scale falls far below them."""
    from engine.config import TrainConfig
    from engine.trainer import train

    config = TrainConfig.from_dict({"preset": "default", "epochs": 1, "augmentation": {}})
    model, end = train(config, mnist_data)
    assert end.status == "completed"
    report = evaluate_drawn(model.predict_proba, mnist_data, n_mnist=300, seed=1)
    # it reaches about 94% (91-97% per look of 100 digits) and 80% on fonts
    assert report["mnist"]["accuracy"] > 0.88, report
    for look in LOOKS:
        assert report[f"mnist/{look}"]["accuracy"] > 0.8, report
    if font_files():
        assert report["fonts"]["accuracy"] > 0.65, report


@pytest.mark.mnist
def test_evaluate_drawn_command(mnist_dir, tmp_path, capsys):
    """`mnist-lab evaluate MODEL --drawn` on a saved (untrained) model: counts per group and look."""
    from engine.cli import main
    from engine.config import TrainConfig
    from engine.model import build_model, save_model

    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist").symlink_to(mnist_dir.resolve(), target_is_directory=True)
    model_path = save_model(build_model(TrainConfig.from_dict({"hidden_layers": [16]})),
                            tmp_path / "tiny.npz")
    argv = ["evaluate", str(model_path), "--drawn", "--drawn-count", "12", "--data-dir", str(home)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["drawn"]
    assert report["mnist"]["count"] == 12
    assert all(report[f"mnist/{look}"]["count"] == 4 for look in LOOKS)
    assert 0.0 <= report["all"]["accuracy"] <= 1.0
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MNIST test digits drawn large" in out and "black on white" in out
    with pytest.raises(SystemExit) as exit_:
        main([*argv[:4], "-1", *argv[5:]])
    assert exit_.value.code == 2
    assert "--drawn-count must be between 0 and 10000" in capsys.readouterr().err

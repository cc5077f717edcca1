"""The console script without bench/: what a product-only install (the Docker image) holds."""

from __future__ import annotations

import subprocess
import sys

# `mnist-lab` with the bench package made unimportable, as in a wheel that does not ship it.
WITHOUT_BENCH = ("import sys; sys.modules['bench'] = None; from app.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")


def mnist_lab_without_bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_BENCH, *argv], capture_output=True,
                          text=True, timeout=120)


def test_the_other_commands_work():
    presets = mnist_lab_without_bench("presets")
    assert presets.returncode == 0, presets.stderr
    assert "notebook" in presets.stdout
    assert mnist_lab_without_bench("serve", "--help").returncode == 0


def test_bench_says_it_needs_a_source_checkout():
    for argv in (["bench"], ["bench", "--epochs", "1", "--help"]):
        bench = mnist_lab_without_bench(*argv)
        assert bench.returncode == 2, bench.stderr
        assert "source checkout" in bench.stderr and "Traceback" not in bench.stderr, bench.stderr

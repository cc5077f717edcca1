"""static/js/chart.js in Chromium: tick choice, and decimation that keeps every extreme visible."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.mnist]


def test_ticks_are_round_numbers_that_cover_the_range(server, new_page):
    page = new_page(server.url)
    ticks = page.evaluate("""async () => {
        const chart = await import('/static/js/chart.js');
        return {
            loss: chart.linearTicks(0.04, 2.31, 5).ticks,
            steps: chart.linearTicks(0, 4689, 6, true).ticks,
            epochs: chart.linearTicks(0.6, 3.4, 8, true).ticks,
            log: chart.logTicks(0.03, 2.5, 5),
            narrowLog: chart.logTicks(0.2, 0.6, 4),
            label: chart.formatTick(12000, 2000),
        };
    }""")
    assert ticks["loss"] == [0.5, 1, 1.5, 2]
    assert ticks["steps"] == [0, 1000, 2000, 3000, 4000]
    assert ticks["epochs"] == [1, 2, 3]
    assert ticks["log"] == [0.03, 0.1, 0.3, 1]
    assert ticks["narrowLog"] == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert ticks["label"] == "12k"


def test_a_single_spike_among_100000_points_is_drawn(server, new_page):
    """Min/max decimation per pixel column: one outlier among 100,000 flat points still reaches
    the top of the plot (an every-nth-point decimation would drop it)."""
    page = new_page(server.url)
    result = page.evaluate("""async () => {
        const { LineChart } = await import('/static/js/chart.js');
        const frame = document.createElement('div');
        frame.style.cssText = 'position:fixed;left:0;top:0;width:400px;height:200px;background:#fff';
        const canvas = document.createElement('canvas');
        canvas.style.cssText = 'width:100%;height:100%';
        frame.append(canvas);
        document.body.append(frame);
        const chart = new LineChart(canvas, {});
        chart.resize();
        const xs = [], ys = [];
        for (let i = 0; i < 100000; i += 1) { xs.push(i); ys.push(i === 61234 ? 10 : 1); }
        chart.setSeries([{ label: 'loss', xs, ys, color: '#ff0000', width: 1 }]);
        chart.draw();
        const { left, top, plotWidth, plotHeight, toPx, toPy } = chart.layout;
        const ctx = canvas.getContext('2d');
        const ratio = canvas.width / 400;
        const red = (x, y) => {
            const [r, g, b] = ctx.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data;
            return r > 150 && g < 120 && b < 120;
        };
        const spikeX = toPx(61234);
        let spikeDrawn = false;
        for (let dx = -1; dx <= 1; dx += 1) spikeDrawn ||= red(spikeX + dx, toPy(9.5));
        return { spikeDrawn, elsewhere: red(toPx(20000), toPy(9.5)), flat: red(toPx(20000), toPy(1)) };
    }""")
    assert result == {"spikeDrawn": True, "elsewhere": False, "flat": True}

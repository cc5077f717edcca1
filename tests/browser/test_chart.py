"""The page's chart and curve modules in Chromium (static/js/chart.js, curves.js, eta.js,
configs.js): ticks, bands, smoothing, markers, zoom, and the pure functions behind the ETA and the
"unsure" answer. Each draws into a canvas of its own and reads back pixels or the chart's layout.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.mnist]

# A canvas of 600x240 CSS pixels on a white page, a LineChart on it, and a pixel reader.
SETUP = """
    const { LineChart } = await import('/static/js/chart.js');
    const frame = document.createElement('div');
    frame.style.cssText =
        'position:fixed;left:0;top:0;width:600px;height:240px;background:#fff;z-index:99';
    const canvas = document.createElement('canvas');
    canvas.style.cssText = 'width:100%;height:100%';
    frame.append(canvas);
    document.body.append(frame);
    const ratio = () => canvas.width / 600;
    const pixel = (x, y) => [...canvas.getContext('2d')
        .getImageData(Math.round(x * ratio()), Math.round(y * ratio()), 1, 1).data];
"""


def test_ticks_are_round_numbers_that_cover_the_range(server, new_page):
    page = new_page(server.url)
    ticks = page.evaluate("""async () => {
        const chart = await import('/static/js/chart.js');
        return {
            loss: chart.linearTicks(0.04, 2.31, 5).ticks,
            steps: chart.linearTicks(0, 4689, 6, true).ticks,
            epochs: chart.linearTicks(0.6, 3.4, 8, true).ticks,
            label: chart.formatTick(12000, 2000),
        };
    }""")
    assert ticks["loss"] == [0.5, 1, 1.5, 2]
    assert ticks["steps"] == [0, 1000, 2000, 3000, 4000]
    assert ticks["epochs"] == [1, 2, 3]
    assert ticks["label"] == "12k"


def test_log_ticks_label_every_decade(server, new_page):
    """A loss from 2.5 down to 0.004 is labelled at 0.01, 0.1 and 1, also below 0.2; across two
    decades 2 and 5 are labelled too; the other multiples are minor grid lines."""
    page = new_page(server.url)
    result = page.evaluate("""async () => {
        const { logTicks } = await import('/static/js/chart.js');
        return {
            wide: logTicks(0.004, 2.5, 5), two: logTicks(0.03, 2.5, 6),
            narrow: logTicks(0.2, 0.6, 4), many: logTicks(1e-6, 1e3, 4),
        };
    }""")
    assert result["wide"]["ticks"] == [0.01, 0.1, 1]
    assert 0.005 in result["wide"]["minor"] and 0.3 in result["wide"]["minor"]
    assert result["two"]["ticks"] == [0.05, 0.1, 0.2, 0.5, 1, 2]
    assert 0.03 in result["two"]["minor"] and 0.07 in result["two"]["minor"]
    assert result["narrow"]["ticks"] == [0.2, 0.3, 0.4, 0.5, 0.6]
    # Ten decades on a small chart: every third decade labelled, the rest still drawn as lines.
    many = result["many"]
    assert many["ticks"] == [1e-6, 1e-3, 1, 1000]
    assert {1e-5, 1e-4, 0.01, 0.1, 10, 100} <= set(many["minor"])


def test_a_log_axis_draws_a_label_at_each_decade_of_a_real_curve(server, new_page):
    page = new_page(server.url)
    labels = page.evaluate("""async () => {""" + SETUP + """
        const chart = new LineChart(canvas, {});
        chart.resize();
        const xs = [], ys = [];
        for (let i = 0; i < 3000; i += 1) { xs.push(i); ys.push(2.3 * Math.exp(-i / 400) + 0.003); }
        chart.setSeries([{ label: 'loss', xs, ys }]);
        chart.setLogScale(true);
        chart.draw();
        return chart.layout.labels;
    }""")
    assert labels[:3] == ["0.01", "0.1", "1"], labels


def test_a_single_spike_among_100000_points_is_drawn(server, new_page):
    """Min/max decimation per pixel column: one outlier among 100,000 flat points still reaches
    the top of the plot (an every-nth-point decimation would drop it)."""
    page = new_page(server.url)
    result = page.evaluate("""async () => {""" + SETUP + """
        const chart = new LineChart(canvas, {});
        chart.resize();
        const xs = [], ys = [];
        for (let i = 0; i < 100000; i += 1) { xs.push(i); ys.push(i === 61234 ? 10 : 1); }
        chart.setSeries([{ label: 'loss', xs, ys, color: '#ff0000', width: 1 }]);
        chart.draw();
        const { toPx, toPy } = chart.layout;
        const red = (x, y) => { const [r, g, b] = pixel(x, y); return r > 150 && g < 120 && b < 120; };
        let spikeDrawn = false;
        for (let dx = -1; dx <= 1; dx += 1) spikeDrawn ||= red(toPx(61234) + dx, toPy(9.5));
        return { spikeDrawn, elsewhere: red(toPx(20000), toPy(9.5)), flat: red(toPx(20000), toPy(1)) };
    }""")
    assert result == {"spikeDrawn": True, "elsewhere": False, "flat": True}


def test_raw_values_are_a_light_band_behind_the_smoothed_line(server, new_page):
    """4,690 noisy points: the band fills between the lowest and highest raw value of each
    column in a light tint, the smoothed line is drawn over it in full colour, and the y range
    follows the smoothed line (the band's outliers do not squash it)."""
    page = new_page(server.url)
    result = page.evaluate("""async () => {""" + SETUP + """
        const chart = new LineChart(canvas, {});
        chart.resize();
        const xs = [], raw = [], smooth = [];
        let seed = 7;
        const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5);
        for (let i = 0; i < 4690; i += 1) {
            xs.push(i);
            const level = 0.3 + 2 * Math.exp(-i / 300);
            smooth.push(level);
            raw.push(level + 0.4 * noise() + (i === 3000 ? 50 : 0));
        }
        chart.setSeries([
            { label: 'raw', xs, ys: raw, color: '#0000ff', band: true, alpha: 0.2, scale: false },
            { label: 'smoothed', xs, ys: smooth, color: '#0000ff', width: 2 },
        ]);
        chart.draw();
        const { toPx, toPy, y1 } = chart.layout;
        const x = 3500;
        return {
            line: pixel(toPx(x), toPy(smooth[x])),
            band: pixel(toPx(x), toPy(smooth[x] + 0.12)),
            outside: pixel(toPx(x), toPy(smooth[x] + 0.6)),
            y1,
        };
    }""")
    # RGBA of the chart's own (transparent) canvas.
    line, band, outside = result["line"], result["band"], result["outside"]
    assert line[2] > 200 and line[0] < 60 and line[3] > 200, line  # the smoothed line: full blue
    assert band[2] > 200 and 20 < band[3] < 120, band  # the band: a light tint of it
    assert outside[3] == 0, outside  # beyond the raw values: nothing
    assert result["y1"] < 3, result["y1"]  # the spike of 50 in the raw values is left out


def test_smoothing_is_chosen_from_the_number_of_points(server, new_page):
    page = new_page(server.url)
    weights = page.evaluate("""async () => {
        const { autoSmoothing } = await import('/static/js/curves.js');
        return [40, 150, 500, 4690, 47000].map(autoSmoothing);
    }""")
    assert weights[0] == 0  # a short curve is shown as it is
    assert weights == sorted(weights) and len(set(weights)) == len(weights)
    assert weights[3] == 0.99  # a full default run: averaged over ~70 points (4,690 / 70)
    assert weights[4] == 0.999


def test_epoch_axis_ticks_are_whole_epochs(server, new_page):
    page = new_page(server.url)
    ticks = page.evaluate("""async () => {""" + SETUP + """
        const chart = new LineChart(canvas, { xInteger: true, xPadding: 0.4 });
        chart.resize();
        const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        chart.setSeries([{ label: 'val', xs, ys: xs.map((x) => 1 / x), markers: true }]);
        chart.draw();
        return chart.layout.xTicks;
    }""")
    assert ticks == list(range(1, 11))


def test_a_lone_point_and_a_diverging_step_are_drawn(server, new_page):
    """A run that failed at its second step has one stored loss: it is a dot, not an empty
    chart; the diverging step the server reports is marked with its label."""
    page = new_page(server.url)
    result = page.evaluate("""async () => {""" + SETUP + """
        const chart = new LineChart(canvas, {});
        chart.resize();
        chart.setSeries([{ label: 'loss', xs: [0], ys: [2.31], color: '#00aa00' }],
                        { annotations: [{ x: 1, label: 'diverged at step 1', color: '#ff0000' }] });
        chart.draw();
        const { toPx, toPy, y0, y1, x0, x1 } = chart.layout;
        const [r, g, b] = pixel(toPx(0), toPy(2.31));
        let marked = 0;
        for (let y = 20; y < 200; y += 2) {
            const [rr, gg] = pixel(toPx(1), y);
            if (rr > 200 && gg < 80) marked += 1;
        }
        return { dot: g > 120 && r < 80, y0, y1, x0, x1, marked };
    }""")
    assert result["dot"], result
    assert result["y0"] < 2.31 < result["y1"]
    assert result["x0"] <= 0 and result["x1"] >= 1  # the diverging step is in view
    assert result["marked"] > 10, result


def test_dragging_across_a_chart_zooms_and_a_double_click_resets(server, new_page):
    page = new_page(server.url)
    page.evaluate("""async () => {""" + SETUP + """
        const onZoom = (range) => { window.zooms.push(range); chart.setXRange(range); };
        const chart = new LineChart(canvas, { onZoom });
        window.zooms = [];
        window.testChart = chart;
        chart.resize();
        const xs = [], ys = [];
        for (let i = 0; i < 1000; i += 1) { xs.push(i); ys.push(i < 500 ? 1 + i / 500 : 10); }
        chart.setSeries([{ label: 'loss', xs, ys }]);
        chart.draw();
    }""")
    layout = page.evaluate("() => ({left: testChart.layout.left, width: testChart.layout.plotWidth})")
    start = layout["left"] + 0.1 * layout["width"]
    end = layout["left"] + 0.4 * layout["width"]
    page.mouse.move(start, 120)
    page.mouse.down()
    page.mouse.move(end, 120, steps=5)
    page.mouse.up()
    page.wait_for_function("() => window.zooms.length === 1")
    zoom = page.evaluate("() => window.zooms[0]")
    assert 80 < zoom["x0"] < 120 and 380 < zoom["x1"] < 420, zoom
    view = page.evaluate("""() => { testChart.draw(); const l = testChart.layout;
        return { x0: l.x0, x1: l.x1, y1: l.y1 }; }""")
    assert view["x0"] == zoom["x0"] and view["x1"] == zoom["x1"]
    assert view["y1"] < 10  # the y range follows what is in view, not the whole curve
    page.mouse.dblclick(end, 120)
    page.wait_for_function("() => window.zooms.length === 2")
    assert page.evaluate("() => window.zooms[1]") is None
    # The keyboard zooms too: + around the point read out, 0 back to everything.
    page.evaluate("() => testChart.canvas.setAttribute('tabindex', '0')")
    page.evaluate("() => testChart.canvas.focus()")
    page.keyboard.press("End")
    page.keyboard.press("+")
    page.wait_for_function("() => window.zooms.length === 3")
    keyboard = page.evaluate("() => window.zooms[2]")
    assert keyboard["x1"] - keyboard["x0"] < 600
    page.keyboard.press("0")
    page.wait_for_function("() => window.zooms.length === 4 && window.zooms[3] === null")


def test_the_eta_waits_for_a_measured_pace(server, new_page):
    page = new_page(server.url)
    result = page.evaluate("""async () => {
        const { estimateRemaining } = await import('/static/js/eta.js');
        const base = { stepsDone: 100, stepsTotal: 1000, stepsPerEpoch: 100 };
        return {
            nothing: estimateRemaining({ ...base, epochDurations: [], pace: [] }),
            tooShort: estimateRemaining({ ...base, epochDurations: [], pace: [[0, 10], [1500, 40]] }),
            pace: estimateRemaining({ ...base, epochDurations: [], pace: [[0, 0], [5000, 100]] }),
            epochs: estimateRemaining({ ...base, stepsDone: 250, epochDurations: [12, 10, 11],
                                        pace: [[0, 0], [5000, 500]] }),
            done: estimateRemaining({ ...base, stepsDone: 1000, epochDurations: [5], pace: [] }),
        };
    }""")
    assert result["nothing"] is None and result["tooShort"] is None  # "estimating…"
    assert result["pace"] == {"seconds": 45, "basis": "pace"}  # 900 steps at 20 steps/s
    # After an epoch: the measured epochs (validation included) set the pace, not the steps.
    assert result["epochs"] == {"seconds": pytest.approx(7.5 * 11), "basis": "epochs"}
    assert result["done"]["seconds"] == 0


def test_unsure_predictions_name_both_guesses(server, new_page):
    page = new_page(server.url)
    result = page.evaluate("""async () => {
        const { describePrediction } = await import('/static/js/canvas.js');
        const sure = [0, 0, 0, 0, 0, 0, 0, 0.97, 0.02, 0.01];
        const unsure = [0.46, 0, 0, 0, 0, 0, 0.38, 0.1, 0.06, 0];
        return [describePrediction(sure, 7), describePrediction(unsure, 0)];
    }""")
    assert result[0] == {"state": "ready", "text": "97% sure"}
    assert result[1] == {"state": "unsure", "text": "Unsure: 0 (46%) or 6 (38%)?"}

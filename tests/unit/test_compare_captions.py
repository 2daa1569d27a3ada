"""The comparison figure's captions (`Comparison.png`, the Runs panel's plot): each fits its own column, so long
prompts or model paths never run over the neighbouring captions, and what differs stays in sight."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labkit.tracking.compare import CAPTION_LINES, RunSummary, caption_font, compare, fit_caption

LONG = "a very long prompt describing a small red circle on the left and a big blue square on the right " * 2


def _run(i: int, tmp_path=None, **params: str) -> RunSummary:
    files = ()
    if tmp_path is not None:  # an output image, so the cell shows a picture rather than "no image"
        path = tmp_path / f"run{i}.png"
        Image.fromarray(np.full((64, 64, 3), 30 * i, dtype=np.uint8)).save(path)
        files = (path,)
    return RunSummary(run_id=f"{i + 1:032x}", name=f"run {i}", status="FINISHED", start=None, duration_s=1.0,
                      params={"plan.steps": "20", **params}, metrics={"time.total_s": 1.0 + i}, files=files)


def _caption_boxes(cmp):
    """The rendered caption box of each image cell, left to right, in pixels; and each cell's span."""
    fig = cmp.figure()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tops = [ax for ax in fig.axes if ax.get_title()]
    assert len(tops) == len(cmp.runs)
    width = fig.get_figwidth() * fig.dpi
    cells = [(ax.get_subplotspec().get_position(fig).x0 * width, ax.get_subplotspec().get_position(fig).x1 * width)
             for ax in tops]
    return [ax.title.get_window_extent(renderer) for ax in tops], cells, [ax.get_title() for ax in tops]


CASES = {
    "long prompts, 4 runs": lambda tmp: [_run(i, tmp, **{"plan.prompt": LONG + str(i), "plan.seed": str(i)})
                                         for i in range(4)],
    "long prompts, 2 runs": lambda tmp: [_run(i, tmp, **{"plan.prompt": LONG + str(i)}) for i in range(2)],
    "a path with no spaces": lambda tmp: [_run(i, None, **{"plan.model": "/home/me/models/" + "x" * 120 + str(i)})
                                          for i in range(3)],
    "eight runs, many params": lambda tmp: [_run(i, tmp, **{"plan.prompt": LONG + str(i), "plan.seed": str(i),
                                                            "plan.guidance": str(i / 2), "plan.model": f"m{i}"})
                                            for i in range(8)],
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_neighbouring_captions_do_not_overlap_and_stay_in_their_column(make, tmp_path):
    boxes, cells, titles = _caption_boxes(compare(make(tmp_path)))
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert left.x1 < right.x0, (left, right)               # disjoint, with a gap
    for box, (x0, x1), title in zip(boxes, cells, titles, strict=True):
        assert x0 - 1 <= box.x0 and box.x1 <= x1 + 1, (box, (x0, x1), title)
        assert len(title.splitlines()) <= CAPTION_LINES


def test_a_long_caption_keeps_every_differing_param_in_sight(tmp_path):
    cmp = compare([_run(i, tmp_path, **{"plan.prompt": LONG + str(i), "plan.seed": str(i)}) for i in range(4)])
    _, _, titles = _caption_boxes(cmp)
    for i, title in enumerate(titles):
        assert title.startswith("prompt=a very long") and "…" in title   # cut short, and says so
        assert title.splitlines()[-1] == f"seed={i}"                      # the seed is not pushed out


def test_a_short_caption_is_shown_as_it_is(tmp_path):
    cmp = compare([_run(i, tmp_path, **{"plan.seed": str(i)}) for i in range(3)])
    _, _, titles = _caption_boxes(cmp)
    assert titles == ["seed=0", "seed=1", "seed=2"]


def test_a_caption_with_dollars_is_plain_text_not_mathtext(tmp_path):
    prompt = r"a coin, $\frac{1 and $2"   # as mathtext, "\frac{1 and " is a syntax error
    cmp = compare([_run(i, tmp_path, **{"plan.prompt": f"{prompt} {i}"}) for i in range(2)])
    assert cmp.png()[:8] == b"\x89PNG\r\n\x1a\n"
    _, _, titles = _caption_boxes(cmp)
    assert titles[0] == f"prompt={prompt} 0"


def test_fit_caption_measures_with_the_font():
    font = caption_font(12)
    text = "prompt=" + LONG
    fitted = fit_caption(text, 150, font, max_lines=50)
    lines = fitted.splitlines()
    assert len(lines) > 3 and all(font.getlength(line) <= 150 for line in lines)
    assert " ".join(lines) == " ".join(text.split())              # wrapped at spaces, nothing lost
    short = fit_caption(text, 150, font, max_lines=2)
    assert len(short.splitlines()) == 2 and short.endswith("…")
    assert all(font.getlength(line) <= 150 for line in short.splitlines())
    word = fit_caption("x" * 200, 60, font)                       # no space to wrap at: broken where it must be
    assert all(font.getlength(line) <= 60 for line in word.splitlines()) and word.endswith("…")
    assert fit_caption("seed=3", 150, font) == "seed=3"


def test_a_metric_no_run_has_is_refused_with_the_ones_they_have():
    from labkit.errors import InvalidParameter

    cmp = compare([_run(i, **{"plan.seed": str(i)}) for i in range(2)])
    with pytest.raises(InvalidParameter, match="None of the 2 runs has the metric 'nope'") as e:
        cmp.figure("nope")  # drew a bar chart of zeros
    assert "time.total_s" in e.value.fix
    assert cmp.png("time.total_s")[:4] == b"\x89PNG"


def test_runs_without_a_render_time_plot_what_they_recorded():
    runs = [RunSummary(run_id=f"{i + 1:032x}", name=f"train {i}", status="FINISHED", start=None, duration_s=1.0,
                       params={"steps": str(10 * i)}, metrics={"train/loss": 0.5 - i / 10}) for i in range(2)]
    fig = compare(runs).figure()  # the Runs panel's default: no time.total_s on a training run
    assert any(ax.get_ylabel() == "train/loss" for ax in fig.axes)

"""The panels' Worker: a click that arrives as soon as the buttons show enabled again starts its job.

The Render button is re-enabled from the worker's thread when a job ends; the browser may send the next
click before that thread has marked the job done. Such a click used to be dropped ("one is running
already"), and the panel then sat on the last status with nothing happening (seen in the JupyterLab test:
an error render after a finished one never showed its error).
"""

from __future__ import annotations

import threading

import pytest

widgets = pytest.importorskip("ipywidgets")

from labkit.panels.common import Worker  # noqa: E402


def test_a_click_as_soon_as_the_button_is_enabled_starts_the_next_job():
    button, error, log = widgets.Button(), widgets.HTML(), widgets.Output()
    worker = Worker([button], error, log, background=True)
    ran, clicks = [], {}

    def click_when_enabled(change):
        if change["new"] is False and "thread" not in clicks:
            # The click comes from another thread (the kernel's, in a notebook) while the job's thread is
            # still finishing; it has time to be turned away before the job counts as done.
            clicks["thread"] = threading.Thread(
                target=lambda: clicks.setdefault("started", worker.start(lambda: ran.append("second"))))
            clicks["thread"].start()
            clicks["thread"].join(0.3)

    button.observe(click_when_enabled, names="disabled")
    assert worker.start(lambda: ran.append("first"))
    assert worker.wait(10)
    clicks["thread"].join(10)
    assert clicks["started"] is True, "the click that came as the button was enabled was dropped"
    assert worker.wait(10)
    assert ran == ["first", "second"] and button.disabled is False


def test_a_click_while_a_job_runs_is_refused_and_the_job_finishes():
    button, error, log = widgets.Button(), widgets.HTML(), widgets.Output()
    worker = Worker([button], error, log, background=True)
    release = threading.Event()
    assert worker.start(lambda: release.wait(10))
    assert button.disabled is True and worker.running
    assert worker.start(lambda: None) is False
    release.set()
    assert worker.wait(10) and not worker.running and button.disabled is False

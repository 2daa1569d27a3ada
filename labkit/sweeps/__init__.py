"""Sweeps: a study as one YAML file (`experiments/*.yaml`), run as one parent MLflow run with a child per
point and seed, and summarised with statistics over seeds.

    spec = load_spec("experiments/toy-steps-guidance.yaml")
    result = run_sweep(lab, spec, jobs=2, resume=True)     # or `labkit sweep FILE`; Ctrl-C: SweepStopped
    result = run_sweep(lab, spec, backend="ray")            # each point on a Ray cluster (labkit.sweeps.ray_backend)
    rep = report(lab, result.parent_run_id)                 # or `labkit compare sweep RUN_ID`

Names are imported on first use: `import labkit.sweeps` loads no mlflow, papermill, matplotlib or ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit._lazy import lazy_exports

_LAZY = {
    "Point": "labkit.sweeps.spec",
    "SweepSpec": "labkit.sweeps.spec",
    "load_spec": "labkit.sweeps.spec",
    "spec_from_dict": "labkit.sweeps.spec",
    "PointOutcome": "labkit.sweeps.runner",
    "SweepResult": "labkit.sweeps.runner",
    "run_sweep": "labkit.sweeps.runner",
    "SweepStopped": "labkit.sweeps.stopping",
    "Paired": "labkit.sweeps.stats",
    "SweepReport": "labkit.sweeps.stats",
    "mean_ci": "labkit.sweeps.stats",
    "report": "labkit.sweeps.stats",
    "sweep_frame": "labkit.sweeps.stats",
}

__all__ = ["Paired", "Point", "PointOutcome", "SweepReport", "SweepResult", "SweepSpec", "SweepStopped", "load_spec",
           "mean_ci", "report", "run_sweep", "spec_from_dict", "sweep_frame"]

if TYPE_CHECKING:  # pragma: no cover
    from labkit.sweeps.runner import PointOutcome, SweepResult, run_sweep
    from labkit.sweeps.spec import Point, SweepSpec, load_spec, spec_from_dict
    from labkit.sweeps.stats import Paired, SweepReport, mean_ci, report, sweep_frame
    from labkit.sweeps.stopping import SweepStopped

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

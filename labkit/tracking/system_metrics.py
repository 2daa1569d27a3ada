"""A run's system metrics (CPU, memory, disk, network, GPU: MLflow's `SystemMetricsMonitor`), paid for by long runs.

MLflow's sampling thread starts once a run has lasted one interval (`[tracking] system_metrics_interval`). A shorter
run — a toy render — gets one sample when it closes, taken by a `Sampler` its tracker keeps, and written with the
run's end: it pays for neither the thread (which reads the run back from the store when it stops) nor a monitor of
its own (whose GPU probe alone costs a millisecond).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Sampler:
    """One `SystemMetricsMonitor`, never started, that takes short runs' samples; its CPU figure covers the time
    since the previous sample. Safe to share between threads."""

    def __init__(self, uri: str):
        self._uri = uri
        self._monitor: Any = None
        self._lock = threading.Lock()

    def sample(self) -> dict[str, float]:
        """One sample as MLflow names its metrics (`system/…`, logged at step 0); {} where it cannot be taken."""
        try:
            with self._lock:
                if self._monitor is None:
                    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                    self._monitor = SystemMetricsMonitor("0" * 32, tracking_uri=self._uri)  # never publishes
                self._monitor.collect_metrics()
                sample = self._monitor.aggregate_metrics()
                for m in self._monitor.monitors:
                    m.clear_metrics()
            return {f"system/{k}": v for k, v in sample.items()}
        except Exception:  # system metrics are a convenience; a run never fails for them
            return {}


class RunMonitor:
    """A run's system metrics: MLflow's monitor started by a timer once the run has lasted `interval` seconds, or
    else one sample from `sampler` when the run closes (`stop`)."""

    def __init__(self, run_id: Callable[[], str], interval: float, uri: str, sampler: Sampler):
        self._run_id, self._interval, self._uri, self._sampler = run_id, interval, uri, sampler
        self.monitor: Any = None
        self._timer = threading.Timer(interval, self._start)
        self._timer.daemon = True
        self._timer.start()

    def _start(self) -> None:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(self._run_id(), sampling_interval=self._interval, tracking_uri=self._uri)
            monitor.start()
            self.monitor = monitor
        except Exception:  # system metrics are a convenience; a run never fails for them
            pass

    def stop(self) -> dict[str, float]:
        """Stop sampling (MLflow's thread publishes what it has); for a run shorter than one interval, return its
        one sample as metrics for the run to write with its end."""
        self._timer.cancel()
        self._timer.join()  # if it fired, the monitor has started and is stopped below
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception:
                pass
            return {}
        return self._sampler.sample()

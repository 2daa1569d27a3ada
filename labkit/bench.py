"""`labkit bench …`: benchmarks users run on their own hardware.

Every figure is a ratio against a baseline measured in the same run, interleaved, so a noisy
machine slows both sides alike. Absolute times are printed for context, never compared.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BenchResult:
    """One benchmark: the subject's and the baseline's median times and their ratio."""

    name: str
    subject: str
    baseline: str
    subject_s: float
    baseline_s: float
    ratio: float
    repeats: int
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.name}: {self.subject} takes {self.ratio:.2f}× {self.baseline} "
                f"(median of {self.repeats}: {self.subject_s * 1000:.0f} ms vs {self.baseline_s * 1000:.0f} ms)")


def _time_subprocess(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_import(repeats: int = 10) -> BenchResult:
    """Time `import labkit` in a fresh interpreter against `python -c pass`, interleaved.

    Also reports which heavy modules the import pulled in (there should be none).
    """
    code = "import labkit"
    probe = ("import sys, labkit; print(','.join(m for m in ('torch','diffusers','mlflow','transformers') "
             "if m in sys.modules))")
    _time_subprocess("pass")  # warm the OS file cache before measuring either side
    subject, baseline = [], []
    for _ in range(repeats):
        baseline.append(_time_subprocess("pass"))
        subject.append(_time_subprocess(code))
    heavy = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    s, b = statistics.median(subject), statistics.median(baseline)
    return BenchResult("import", "import labkit", "python -c pass", s, b, s / b, repeats,
                       {"heavy_modules_loaded": heavy.split(",") if heavy else []})


BENCHMARKS = {"import": bench_import}

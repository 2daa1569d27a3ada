"""Many processes, one project: renders started together, notes and metrics written at once, shared caches."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from tests.reliability.conftest import PROMPT, assert_outputs_whole, spawn, statuses


def _wave(seeds: range, env: dict[str, str]) -> list[tuple[int, str, str]]:
    procs = [spawn("generate", PROMPT, "--seed", str(s), "--steps", "2", env=env) for s in seeds]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        results.append((p.returncode, out, err))
    return results


def test_eight_renders_on_a_fresh_project_then_eight_on_a_warm_one_all_finish(project: Path, proc_env):
    assert not (project / "mlruns" / "mlflow.db").exists()  # the first wave makes the store
    results = _wave(range(8), proc_env) + _wave(range(8, 16), proc_env)
    failures = [(code, err) for code, _, err in results if code != 0]
    tracebacks = sum("Traceback" in out + err for _, out, err in results)
    runs = Counter(statuses(project).values())
    print(f"\n16 processes: {runs.get('FINISHED', 0)} runs FINISHED, {len(failures)} failed, {tracebacks} tracebacks")
    assert not failures, failures[0][1][-2000:]
    assert tracebacks == 0
    assert runs == {"FINISHED": 16}

    from labkit.lab import Lab

    lab = Lab(project)  # the store opens afterwards, whole
    seeds = sorted(int(r.data.params["plan.seed"]) for r in lab.tracker.search_runs())
    assert seeds == list(range(16))
    assert assert_outputs_whole(project) >= 16


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from labkit.lab import Lab
    from labkit.tracking import Run

    root, start, me, *run_ids = sys.argv[1:]
    lab = Lab(root)
    client = lab.tracker.client
    while not Path(start).exists():   # start together, so the writes overlap
        time.sleep(0.01)
    for rid in run_ids:
        info = client.get_run(rid).info
        run = Run(client, rid, info.experiment_id, info.artifact_uri)
        for step in range(5):
            run.log_metrics({"score": int(me) * 10 + step}, step=int(me) * 10 + step)
        lab.note(f"note from writer {me}", run_id=rid)
    lab.hash_cache[f"writer-{me}"] = {"sha256": me}
    lab.save_hash_cache()
""")


def test_notes_metrics_and_the_hash_cache_written_by_six_processes_at_once_all_land(migrated_store: Path, lab):
    with lab.run("a") as a, lab.run("b") as b:
        pass
    start = migrated_store / "start"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(migrated_store), str(start), str(i),
                               a.run_id, b.run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    start.touch()
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    client = lab.tracker.client
    for rid in (a.run_id, b.run_id):
        note = lab.tracker.get_note(rid)
        assert sorted(line for line in note.splitlines() if line) == [f"note from writer {i}" for i in range(6)]
        history = client.get_metric_history(rid, "score")
        assert sorted(m.step for m in history) == sorted(i * 10 + s for i in range(6) for s in range(5))
    import json

    cache = json.loads((migrated_store / "mlruns" / "weight-hashes.json").read_text())
    assert {f"writer-{i}" for i in range(6)} <= set(cache)

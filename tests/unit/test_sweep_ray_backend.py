"""The Ray sweep backend's checks, without a cluster: the missing extra, labkit.toml's [sweep], addresses, the
resources a point asks for, and the store a cluster of other machines cannot write."""

from __future__ import annotations

import sys

import pytest

from labkit.errors import ConfigError, InvalidParameter, LabkitError, MissingDependency


@pytest.fixture
def no_ray(monkeypatch):
    """Ray as if it were not installed (`import ray` raises ImportError)."""
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.fixture
def spec_file(project):
    path = project / "s.yaml"
    path.write_text("name: s\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\n")
    return path


def test_without_ray_the_ray_backend_names_the_extra_to_install(no_ray, project, spec_file, capsys):
    from labkit.cli import main
    from labkit.lab import Lab
    from labkit.sweeps import load_spec, run_sweep

    with pytest.raises(MissingDependency) as e:
        run_sweep(Lab(project), load_spec(spec_file), backend="ray", progress=False)
    assert e.value.fix == 'pip install "labkit[ray]"' and "ray" in e.value.message
    assert isinstance(e.value, LabkitError)

    assert main(["sweep", str(spec_file), "--backend", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "labkit[ray]"' in err and "Traceback" not in err
    assert not (project / "mlruns" / "mlflow.db").exists()  # refused before the store was opened


def test_without_ray_the_local_backend_still_runs_a_dry_run(no_ray, project, spec_file):
    from labkit.lab import Lab
    from labkit.sweeps import load_spec, run_sweep

    result = run_sweep(Lab(project), load_spec(spec_file), dry_run=True, progress=False)
    assert len(result.points) == 2 and result.dry_run


def test_labkit_toml_chooses_the_backend_and_address(project, spec_file, no_ray):
    from labkit.config import LabConfig
    from labkit.lab import Lab
    from labkit.sweeps import load_spec, run_sweep

    assert (LabConfig.resolve(project).sweep_backend, LabConfig.resolve(project).sweep_address) == ("local", None)
    (project / "labkit.toml").write_text('[sweep]\nbackend = "ray"\naddress = "ray://head:10001"\n')
    config = LabConfig.resolve(project)
    assert (config.sweep_backend, config.sweep_address) == ("ray", "ray://head:10001")
    with pytest.raises(MissingDependency):  # the file's backend is the default for run_sweep
        run_sweep(Lab(project), load_spec(spec_file), progress=False, dry_run=True)
    assert run_sweep(Lab(project), load_spec(spec_file), backend="local", dry_run=True, progress=False).dry_run

    (project / "labkit.toml").write_text('[sweep]\nbackend = "dask"\n')
    with pytest.raises(ConfigError) as e:
        LabConfig.resolve(project)
    assert "'dask'" in e.value.message and "local, ray" in e.value.message and "backend" in e.value.fix
    (project / "labkit.toml").write_text('[sweep]\nworkers = 4\n')
    with pytest.raises(ConfigError, match="unknown key 'workers'"):
        LabConfig.resolve(project)


def test_an_unknown_backend_argument_is_refused(project, spec_file):
    from labkit.lab import Lab
    from labkit.sweeps import load_spec, run_sweep

    with pytest.raises(InvalidParameter) as e:
        run_sweep(Lab(project), load_spec(spec_file), backend="slurm", dry_run=True, progress=False)
    assert "'slurm'" in e.value.message and "local, ray" in e.value.fix
    with pytest.raises(InvalidParameter) as e:  # an address means Ray: never ignored on the local backend
        run_sweep(Lab(project), load_spec(spec_file), address="ray://head:10001", dry_run=True, progress=False)
    assert "ray://head:10001" in e.value.message and "--backend ray" in e.value.fix


@pytest.mark.parametrize("address", ["ray://", "head", "ray://head:port", "head:0", "head:70000", "a b:1", 6379, ""])
def test_a_bad_ray_address_is_refused(address):
    from labkit.sweeps.ray_backend import check_address

    with pytest.raises(InvalidParameter) as e:
        check_address(address)
    assert "ray://" in e.value.fix


@pytest.mark.parametrize("address", [None, "local", "auto", "ray://head-node:10001", "10.0.0.5:6379"])
def test_good_ray_addresses_pass(address):
    from labkit.sweeps.ray_backend import check_address

    assert check_address(address) == address


def test_a_point_asks_for_a_gpu_only_on_a_cluster_with_gpus_and_for_its_familys_ram():
    from labkit.hardware import HardwareProfile, strategy_table
    from labkit.sweeps.ray_backend import MIN_TASK_GB, point_resources

    cpu = HardwareProfile.simulated(None)
    gib = 2**30
    toy = point_resources("toy", cpu, cluster_gpus=0)
    assert toy == {"num_cpus": 1.0, "num_gpus": 0.0, "memory": float(int(MIN_TASK_GB * gib))}
    assert point_resources("toy", cpu, cluster_gpus=2)["num_gpus"] == 1.0
    # the family's largest peak estimate on its ladder (sd15: its gpu-fast rung, 6.5 GB in strategies.toml)
    largest = max(r.get("est_peak_vram_gb") or 0.0 for r in strategy_table().family("sd15")["ladder"])
    assert largest >= 5.7
    sd15_gpu = point_resources("sd15", HardwareProfile.simulated(80), cluster_gpus=8)
    assert sd15_gpu["num_gpus"] == 1.0 and sd15_gpu["memory"] == pytest.approx(largest * gib, rel=1e-6)
    sd15_cpu = point_resources("sd15", cpu, cluster_gpus=0)
    assert sd15_cpu["num_gpus"] == 0.0 and sd15_cpu["memory"] == pytest.approx(2 * largest * gib, rel=1e-6)
    unknown = point_resources(None, cpu, cluster_gpus=1)
    assert unknown["num_gpus"] == 1.0 and unknown["memory"] == MIN_TASK_GB * gib


def test_a_sqlite_store_is_refused_on_a_cluster_of_other_machines(project):
    from labkit.config import LabConfig
    from labkit.sweeps.ray_backend import Cluster, check_store

    remote = Cluster(address="ray://head:10001", local=False, gpus=8, cpus=64)
    with pytest.raises(ConfigError) as e:
        check_store(LabConfig.resolve(project), remote)
    assert "sqlite:///" in e.value.message and "labkit tracking serve" in e.value.fix
    assert '[tracking] uri = "http://' in e.value.fix
    check_store(LabConfig.resolve(project, tracking_uri="http://tracking:5000"), remote)  # a server: fine
    check_store(LabConfig.resolve(project), Cluster(address="local", local=True, gpus=0, cpus=2))


def test_a_point_never_asks_for_more_memory_than_one_node_offers():
    from labkit.sweeps.ray_backend import Cluster

    gib = 2**30
    cluster = Cluster(address=None, local=True, gpus=1, cpus=16, node_memory=64 * gib, gpu_node_memory=8 * gib)
    assert cluster.fit({"num_cpus": 1, "num_gpus": 0, "memory": 22 * gib})["memory"] == 22 * gib
    assert cluster.fit({"num_cpus": 1, "num_gpus": 1, "memory": 22 * gib})["memory"] == 8 * gib
    assert cluster.fit({"num_cpus": 1, "num_gpus": 0, "memory": 100 * gib})["memory"] == 64 * gib


class _FakeRay:
    """The few calls `run_points` makes, answering from a script: each point's result or the error Ray raises."""

    class ActorDiedError(Exception):
        pass

    def __init__(self, answers):
        self.answers, self.calls, self.actors, self.killed = answers, [], [], []

    def remote(self, cls):
        fake = self

        class Method:
            def __init__(self, actor):
                self.actor = actor

            def remote(self, config, spec, parent, experiment, point, attempt):
                fake.calls.append((self.actor, point.index, attempt))
                return point.index

        class Handle:
            def __init__(self, opts):
                self.opts, self.run = opts, Method(self)

        class ActorClass:
            def options(self, **opts):
                self.opts = opts
                return self

            def remote(self):
                fake.actors.append(Handle(self.opts))
                return fake.actors[-1]

        return ActorClass()

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        answer = self.answers[ref]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def kill(self, actor):
        self.killed.append(actor)


class _FakeRunner:
    def __init__(self, lab, spec):
        self.lab, self.spec, self.parent, self.experiment = lab, spec, "parent-id", "labkit"
        self.failures, self.interrupted = [], []

    def failed(self, p, attempt, exc):
        from labkit.sweeps.runner import PointOutcome

        self.failures.append((p.index, attempt, exc))
        return PointOutcome(p, "failed-run", "FAILED", f"{type(exc).__name__}: {exc}")


def _three_points(project):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.sweeps import spec_from_dict

    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a small red circle", "model": "toyworld"},
                           "grid": {"steps": [2, 3, 4]}})
    return Lab(project, hardware=HardwareProfile.simulated(None)), spec, spec.points()


def test_a_worker_that_dies_is_recorded_failed_and_a_fresh_one_takes_the_next_point(project, monkeypatch):
    from labkit.sweeps.ray_backend import Cluster, run_points
    from labkit.sweeps.runner import PointOutcome

    lab, spec, points = _three_points(project)
    died = _FakeRay.ActorDiedError("the actor died unexpectedly")
    fake = _FakeRay({0: PointOutcome(points[0], "r0", "FINISHED"), 1: died,
                     2: PointOutcome(points[2], "r2", "FINISHED")})
    monkeypatch.setitem(sys.modules, "ray", fake)
    runner, seen = _FakeRunner(lab, spec), []
    one_cpu = Cluster(address=None, local=True, gpus=0, cpus=1, node_memory=2**33)
    run_points(one_cpu, runner, points, seen.append)
    assert [o.status for o in seen] == ["FINISHED", "FAILED", "FINISHED"]
    assert "the actor died" in seen[1].error
    [(index, attempt, exc)] = runner.failures
    assert index == 1 and exc is died and attempt == fake.calls[1][2]  # the attempt the worker was given
    first, second = fake.actors  # one CPU: one worker; it ran points 0 and 1, died, and a fresh one ran 2
    assert [(a, i) for a, i, _ in fake.calls] == [(first, 0), (first, 1), (second, 2)]
    assert fake.killed == [first, second]  # the dead one, then the last one when no point was left
    assert len({a for _, _, a in fake.calls}) == 3
    for actor in fake.actors:  # no restarts or retries (a retry would open a second child run); the toy's resources
        assert actor.opts["max_restarts"] == 0 and actor.opts["max_task_retries"] == 0
        assert actor.opts["num_gpus"] == 0 and actor.opts["num_cpus"] == 1
        assert actor.opts["runtime_env"] == {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}  # a CPU worker sees no GPU


def test_points_share_a_pool_of_as_many_workers_as_the_cluster_holds(project, monkeypatch):
    from labkit.sweeps.ray_backend import Cluster, pool_size, run_points
    from labkit.sweeps.runner import PointOutcome

    lab, spec, points = _three_points(project)
    fake = _FakeRay({i: PointOutcome(p, f"r{i}", "FINISHED") for i, p in enumerate(points)})
    monkeypatch.setitem(sys.modules, "ray", fake)
    seen = []
    run_points(Cluster(address=None, local=True, gpus=0, cpus=2), _FakeRunner(lab, spec), points, seen.append)
    assert len(fake.actors) == 2 and sorted(o.point.index for o in seen) == [0, 1, 2]
    assert [i for _, i, _ in fake.calls] == [0, 1, 2]  # in order, the third on whichever worker was free
    assert set(fake.killed) == set(fake.actors)
    gpu = {"num_cpus": 1.0, "num_gpus": 1.0}
    assert pool_size(gpu, Cluster(address=None, local=True, gpus=8, cpus=64), 100) == 8
    assert pool_size(gpu, Cluster(address=None, local=True, gpus=8, cpus=64), 3) == 3
    assert pool_size({"num_cpus": 1.0, "num_gpus": 0.0}, Cluster(address=None, local=True, gpus=0, cpus=2), 9) == 2


def _driver(project, monkeypatch):
    """Three points on a fake Ray, and the list `mark_killed` appends (attempt, reason, status) to."""
    from labkit.sweeps.runner import PointOutcome

    lab, spec, points = _three_points(project)
    fake = _FakeRay({i: PointOutcome(p, f"r{i}", "FINISHED") for i, p in enumerate(points)})
    monkeypatch.setitem(sys.modules, "ray", fake)
    marked = []
    monkeypatch.setattr("labkit.sweeps.ray_backend.mark_killed",
                        lambda lab, exp, attempt, reason, status: marked.append((attempt, reason, status)))
    return lab, spec, points, fake, marked


def test_ctrl_c_in_the_driver_stops_every_worker(project, monkeypatch):
    from labkit.sweeps.ray_backend import Cluster, run_points

    lab, spec, points, fake, marked = _driver(project, monkeypatch)

    class Terminated(KeyboardInterrupt):  # what `labkit sweep` raises on SIGTERM
        reason = "stopped by SIGTERM"

    def interrupt(outcome):
        raise Terminated

    runner = _FakeRunner(lab, spec)
    with pytest.raises(KeyboardInterrupt):
        run_points(Cluster(address=None, local=True, gpus=0, cpus=2), runner, points, interrupt)
    assert set(fake.killed) == set(fake.actors) and len(fake.actors) == 2
    # the point still running on the other worker, KILLED with the stop's reason (not Ctrl-C's)
    assert marked == [(fake.calls[1][2], "stopped by SIGTERM", "KILLED")]
    assert [(o.point.index, o.status, o.error) for o in runner.interrupted] == [(1, "KILLED", "stopped by SIGTERM")]


def test_a_driver_error_ends_the_running_points_failed_not_killed(project, monkeypatch):
    from labkit.sweeps.ray_backend import Cluster, run_points

    lab, spec, points, fake, marked = _driver(project, monkeypatch)

    def broken(outcome):
        raise OSError("the disk is full")

    runner = _FakeRunner(lab, spec)
    with pytest.raises(OSError):
        run_points(Cluster(address=None, local=True, gpus=0, cpus=2), runner, points, broken)
    assert marked == [(fake.calls[1][2], "OSError: the disk is full", "FAILED")] and runner.interrupted == []

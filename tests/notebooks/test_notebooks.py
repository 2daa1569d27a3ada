"""The numbered notebooks, executed top to bottom by papermill on a real ipykernel with parameters
injected, on tiny local models in a temporary project; and the committed notebooks are clean."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = ["00_quickstart", "01_image_lab", "02_video_lab", "03_controller", "04_compare_runs",
            "05_compliance_report", "07_controlnet", "08_rest_api", "10_lab_panels"]
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_committed_notebooks_are_thin_and_have_no_outputs():
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert set(EXPECTED) <= set(found)
    for name in found:
        book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(book)
        first = book.cells[0]
        assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), name
        assert book.metadata["kernelspec"]["name"] == "python3", name
        assert "widgets" not in book.metadata, f"{name} carries saved widget state"
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs: {cell.source[:60]!r}"


def test_papermill_sees_every_parameter_a_notebook_declares():
    """A parameters-cell line papermill cannot parse (a comment with a colon, say) is silently dropped:
    sweeps and cloud pushes would then refuse or ignore that parameter."""
    import ast

    from labkit.notebooks import notebook_parameters

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        book = nbformat.read(path, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        declared = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
        assert declared, path.name
        assert list(notebook_parameters(path)) == declared, path.name


def test_a_notebook_without_kernel_metadata_still_declares_its_parameters(tmp_path):
    """A notebook written by a script or jupytext has no kernelspec: papermill's own inspection refuses it
    ("No kernel name found"), so `labkit sweep` failed before any point ran."""
    from labkit.notebooks import notebook_parameters

    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("steps = 4\nprompt = 'a red circle'", metadata={"tags": ["parameters"]})]
    nbformat.write(book, tmp_path / "bare.ipynb")
    assert notebook_parameters(tmp_path / "bare.ipynb") == {"steps": "4", "prompt": "'a red circle'"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from labkit.testing import build_tiny_sd15, build_tiny_svd

    root = tmp_path_factory.mktemp("tiny-notebooks")
    return {"sd15": build_tiny_sd15(root / "sd15"), "svd": build_tiny_svd(root / "svd")}


@pytest.fixture
def run_notebook(migrated_store: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread):
    """Execute a notebook with papermill against `project`; return (output notebook, seconds)."""
    import papermill

    # The kernel inherits this environment: no hub. One OpenMP thread: toy-sized models gain nothing
    # from more, and on a shared 2-core machine two spinning threads made each step 10-100x slower.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def run(name: str, **parameters):
        out = tmp_path / f"{name}.out.ipynb"
        start = time.perf_counter()
        papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out),
                                   parameters={"root": str(project), **parameters}, kernel_name="python3",
                                   cwd=str(project), progress_bar=False, log_output=False)
        return nbformat.read(out, as_version=4), time.perf_counter() - start

    return run


def _text(book) -> str:
    """Everything the notebook printed or displayed as text or HTML."""
    parts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            data = out.get("data", {})
            for mime in ("text/plain", "text/html"):
                if mime in data:
                    parts.append(data[mime] if isinstance(data[mime], str) else "".join(data[mime]))
    return "\n".join(parts)


def _mimes(book) -> set[str]:
    return {m for cell in book.cells for out in cell.get("outputs", []) for m in out.get("data", {})}


def _render_runs(search_runs, project: Path):
    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    return [r for r in runs if r.data.tags.get("labkit.job") == "render"]


def _render(project: Path, tiny, seeds):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    return [lab.generate("a small red circle on the left", model=str(tiny["sd15"]), size=(32, 32), steps=2, seed=s)
            for s in seeds]


@pytest.mark.notebook
def test_quickstart_renders_records_and_shows_the_panel(run_notebook, project, search_runs):
    # As a user runs it: the shipped toy world, offline. Its wall time is printed, not asserted
    # (timings do not belong in tests); the "under a minute" is checked by hand.
    book, seconds = run_notebook("00_quickstart", seed=3)
    print(f"00_quickstart ran in {seconds:.1f} s")
    [run] = _render_runs(search_runs, project)
    text = _text(book)
    assert f"run {run.info.run_id}" in text and "terms:" in text
    assert run.data.params["plan.seed"] == "3"
    assert run.data.params["plan.model"] == "toyworld"
    # the MLflow description: the render's one-line summary, then the notebook's note
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith("txt2img · toyworld · 64×64 · 20 steps · seed 3 · ")
    assert "\n\nQuickstart: 'a small red circle on the left'" in description
    assert {"image/png", WIDGET} <= _mimes(book)


@pytest.mark.notebook
def test_image_lab_plans_then_renders_each_seed(run_notebook, tiny, project, search_runs):
    book, _ = run_notebook("01_image_lab", model=str(tiny["sd15"]), steps=2, size=[32, 32], seeds=[0, 1])
    runs = _render_runs(search_runs, project)
    assert sorted(r.data.params["plan.seed"] for r in runs) == ["0", "1"]
    assert all(r.data.params["plan.prompt"] == "a large blue square in the centre" for r in runs)
    text = _text(book)
    assert '"controller"' in text and "plan.seed" in text   # the plan as JSON, then what differs
    assert {"image/png", WIDGET} <= _mimes(book)


@pytest.mark.notebook
def test_video_lab_animates_an_image(run_notebook, tiny, project, search_runs, tmp_path):
    from PIL import Image

    first = tmp_path / "first.png"
    Image.new("RGB", (32, 32), "blue").save(first)
    book, _ = run_notebook("02_video_lab", image=str(first), model=str(tiny["svd"]), frames=3, fps=6, steps=2,
                           size=[32, 32])
    [run] = _render_runs(search_runs, project)
    assert run.data.tags["labkit.task"] == "img2vid" and run.data.params["plan.frames"] == "3"
    assert "3 frames at 6 fps" in _text(book)
    assert {"image/gif", WIDGET} <= _mimes(book)


@pytest.mark.notebook
def test_controller_notebook_compares_controllers_and_shows_fallbacks(run_notebook, tiny, project, search_runs):
    requests = ["a small red circle on the left", "a watercolor lighthouse at dusk, portrait"]
    book, _ = run_notebook("03_controller", requests=requests,
                           controllers=["rules", "remote:http://127.0.0.1:9/v1#none"], render=True,
                           model=str(tiny["sd15"]), steps=2, size=[32, 32])
    text = _text(book)
    assert "sd-turbo" in text and "toyworld" in text        # what rules chose for each request
    assert "remote:http://127.0.0.1:9/v1#none failed" in text  # an unreachable LLM falls back, and says so
    assert len(_render_runs(search_runs, project)) == 4


@pytest.mark.notebook
def test_compare_runs_notebook(run_notebook, tiny, project):
    a, b = _render(project, tiny, seeds=[1, 2])
    book, _ = run_notebook("04_compare_runs", n=2)
    text = _text(book)
    assert "differ: plan.seed" in text
    assert a.run_id in text and b.run_id in text
    assert {"image/png", WIDGET} <= _mimes(book)


@pytest.mark.notebook
def test_lab_panels_notebook_opens_every_panel_in_tabs(run_notebook, project):
    book, _ = run_notebook("10_lab_panels", steps=2)
    text = _text(book)
    assert "store: sqlite:///" in text
    [tabs] = [out for cell in book.cells for out in cell.get("outputs", []) if WIDGET in out.get("data", {})]
    assert "Tab(" in "".join(tabs["data"].get("text/plain", ""))   # the tabs widget, shown by the last cell


@pytest.mark.notebook
def test_compliance_report_notebook(run_notebook, tiny, project, tmp_path):
    from PIL import Image

    _render(project, tiny, seeds=[0])
    data = tmp_path / "shapes"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(data / f"{i}.png")
    (data / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f"{i}.png", "text": "a shape",
                                                                 **({"licence": "cc0-1.0"} if i else {})})
                                                     for i in range(3)) + "\n")
    book, _ = run_notebook("05_compliance_report", mode="open", dataset=str(data))
    text = _text(book)
    assert "mode open:" in text
    assert "sai-nc-community" in text and "block" in text       # sd-turbo's licence under "open"
    assert "without a licence: 0.png" in text
    assert "mode open: block" in text                           # the unlicensed item blocks the dataset
    assert "licence unknown" in text                            # the tiny local model's output terms
    assert {"image/png", WIDGET} <= _mimes(book)


def test_rest_api_notebook_renders_through_a_server_it_starts(run_notebook, project, search_runs):
    book, _ = run_notebook("08_rest_api", steps=2, seed=4)
    text = _text(book)
    assert "ok, labkit" in text and "finished" in text and "202 /jobs/" in text
    # the plan as the controller wrote it, what it chose and why, with the size and steps it would render with
    # (the server's `resolved`: the model's defaults, which the notebook once could only call "the model's default")
    [planned] = [line for line in text.splitlines() if line.startswith("'a small blue square at the top' -> ")]
    assert planned == ("'a small blue square at the top' -> image with toyworld: 'a small blue square at the top', "
                       "64x64, 20 steps, 1 picture(s)")
    assert "the model's defaults: width 64, height 64, steps 20, guidance 4.0" in text
    assert "why: rules " in text and "model toyworld (the request is a toy-world caption)" in text
    assert "plan: toyworld, 64x64, 2 steps, seed 4" in text  # and as it rendered, the model's defaults filled in
    assert "InvalidParameter" in text and "steps" in text  # the bad request, refused with its fix
    assert "image/png" in _mimes(book)
    assert "server stopped: 0" in text
    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    (run,) = [r for r in runs if r.data.tags.get("labkit.serve.job")]
    assert run.info.status == "FINISHED" and run.data.params["plan.seed"] == "4"


@pytest.mark.notebook
def test_rest_api_notebook_stops_with_the_servers_refusal_of_a_job(run_notebook, project):
    """A refused job used to end in KeyError: 'location' (the 422 has no Location header), hiding the server's
    message and fix."""
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("08_rest_api", steps=9999)
    assert err.value.ename == "LabkitError", err.value.ename
    assert err.value.evalue.startswith("POST /jobs answered 422 InvalidParameter: ") and "steps" in err.value.evalue
    assert "Fix: " in err.value.evalue and 'api.post("/jobs"' in err.value.source


@pytest.mark.notebook
def test_controlnet_notebook_puts_the_shape_in_the_box_and_scores_the_controlnet(run_notebook, project, search_runs):
    book, _ = run_notebook("07_controlnet", seed=1, n_eval=7, steps=12, scale=0.8)
    text = _text(book)
    assert "asked for box [6, 30, 30, 54], drew [" in text and "IoU" in text
    assert "control: layout toyworld-controlnet licence cc0-1.0" in text
    assert "toycontrol: toyworld + toyworld-controlnet on 7 held-out layouts (seed 1, 12 steps" in text
    assert "image/png" in _mimes(book)
    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    jobs = sorted(r.data.tags.get("labkit.job") for r in runs)
    assert jobs.count("render") == 2 and "eval-toycontrol" in jobs
    # the benchmark scores the ControlNet as the notebook's parameters say, as the render above used it
    [render] = [r for r in runs if r.data.tags.get("labkit.job") == "render"
                and r.data.params.get("plan.controls", "[]") not in ("", "[]")]
    [evaluation] = [r for r in runs if r.data.tags.get("labkit.job") == "eval-toycontrol"]
    assert render.data.params["plan.steps"] == evaluation.data.params["steps"] == "12"
    assert evaluation.data.params["scale"] == "0.8"


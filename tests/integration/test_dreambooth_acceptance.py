"""Issue 23's acceptance on the toy subject (slow): DreamBooth-LoRA with prior preservation draws the yellow ring
in contexts its six images never showed (subject fidelity >= 85 %) while the class word keeps its meaning
(language drift <= 3 points); the same recipe without prior preservation is trained and scored beside it, so its
drift is reported too. Each run is the README's command, through the CLI.

    make test PYTEST_ARGS='-m slow -s -k dreambooth_acceptance' PYTEST_WORKERS=0
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("peft")

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]


@pytest.mark.slow
def test_the_toy_subject_is_learned_without_language_drift(lab, tmp_path, capsys):
    from labkit.cli import main
    from labkit.evals.dreambooth import evaluate_dreambooth
    from labkit.toyworld.subject import write_class_prompts, write_subject_dataset

    write_subject_dataset(tmp_path / "ring")
    write_class_prompts(tmp_path / "class_prompts.txt")
    recipe = ["train", "dreambooth", str(tmp_path / "ring"), "--token", "sks", "--class-prompts",
              str(tmp_path / "class_prompts.txt"), "--num-class-images", "70", "--target-modules", *TARGETS,
              "--rank", "16", "--steps", "1600", "--lr", "1e-3", "--lr-schedule", "cosine", "--train-text-encoder",
              "--threads", "2", "--json"]
    minutes, reports = {}, {}
    for name, extra in (("prior", []), ("no-prior", ["--no-prior-preservation"])):
        capsys.readouterr()
        start = time.perf_counter()
        assert main([*recipe, "--output", str(tmp_path / name), *extra]) == 0
        minutes[name] = (time.perf_counter() - start) / 60
        adapter = json.loads(capsys.readouterr().out)["adapter"]
        reports[name] = evaluate_dreambooth(lab, adapter)
    with capsys.disabled():
        for name, r in reports.items():
            print(f"\n{name}: trained in {minutes[name]:.1f} min; subject fidelity {r.subject_fidelity:.1%}, "
                  f"class prompts base {r.class_base:.1%} / adapted {r.class_adapted:.1%}, "
                  f"drift {r.drift_points:+.1f} points")
    with_prior, without = reports["prior"], reports["no-prior"]
    assert with_prior.subject_fidelity >= 0.85 and with_prior.drift_points <= 3.0
    assert without.drift_points > with_prior.drift_points  # what prior preservation is for
    # the 10-minute budget is read off the printed times, not asserted

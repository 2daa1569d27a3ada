"""`labkit …`: one sub-command per job. Each parses its arguments, calls the `Lab` API, prints.

`main` is the one error boundary, and nothing it catches reaches the terminal as a traceback:

- a bad argument (argparse, text that is not UTF-8, an `--out` that is a file where a folder is
  expected, …) or a `LabkitError`: one line `labkit COMMAND: message Fix: …`, exit status 2;
- any other exception: one line naming it and the log file that holds the full traceback
  (`<project>/mlruns/logs/labkit-<UTC time>-<pid>.log`, else `<tmp>/labkit-logs/`), exit status 1;
  a run that was open has already ended FAILED with the traceback as its `error.txt`;
- Ctrl-C: "interrupted", exit 130. SIGTERM takes the same path (an open run ends KILLED), exit 143.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.config import is_utf8, printable
from labkit.errors import InvalidParameter, LabkitError


def _lab(args: argparse.Namespace):
    from labkit.compliance import resolve_mode
    from labkit.config import LabConfig
    from labkit.lab import Lab

    config = LabConfig.resolve(args.root, tracking_uri=args.tracking_uri, experiment=args.experiment,
                               compliance_mode=getattr(args, "mode", None))
    # Checked here with where the mode came from (--mode, $LABKIT_COMPLIANCE_MODE, labkit.toml, default),
    # so a bad one is reported against its real source.
    resolve_mode(config.compliance_mode, source=config.compliance_mode_source)
    return Lab(config=config)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_doctor(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    lab = _lab(args)
    if args.repair_store:
        from labkit.tracking.health import repair_store

        done = repair_store(lab.config.tracking_uri)
        print(f"repaired {done['store']}: dropped {', '.join(done['dropped_tables']) or 'no leftover tables'}, "
              f"migrations finished; the database before the repair is kept as {done['backup']}", file=sys.stderr)
    report = lab.doctor()
    if args.json:
        _print_json(report)
    else:
        print(hardware_report(report), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    lab = _lab(args)
    print(f"labkit demo on {lab.hardware.summary()}\n")
    out = lab.demo(out=args.out)
    print(hardware_report(out["report"]))
    if out["renders"]:
        print(f"Rendered with {out['model']}:")
        for r in out["renders"]:
            print(f"  {r.plan.prompt!r}: {r.files[0]} ({r.timings['total_s']:.2f} s, run {r.run_id})")
    else:
        print(f"The default model {out['model']!r} is not installed here, so nothing was rendered "
              "(train it with `labkit train toy-base`).")
    print(f"Logged run {out['run_id']} to experiment {out['experiment']!r}")
    print(f"  store:     {out['tracking_uri']}")
    print(f"  artifacts: {out['artifact_dir']}")
    print("Open the MLflow UI with `make ui` (or `labkit ui`) and look for the run named 'demo'.")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import signal

    lab = _lab(args)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", lab.config.tracking_uri,
           "--default-artifact-root", lab.config.artifact_root.as_uri(), "--host", args.host, "--port",
           str(args.port)]
    # The UI needs no background job workers, which MLflow would otherwise start as a dozen processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on http://{args.host}:{args.port} for {lab.config.tracking_uri} (Ctrl-C stops it)",
          flush=True)
    lab.config.artifact_root.mkdir(parents=True, exist_ok=True)
    # The server runs in its own process group, so stopping labkit (Ctrl-C or SIGTERM) stops all of it.
    server = subprocess.Popen(cmd, cwd=lab.config.root, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(server)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process group, then SIGKILL whatever is still there after a few seconds."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; give its children the same signal, then stop
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 512x512)") from None
    return w, h


def _print_result(result, as_json: bool) -> None:
    if as_json:
        _print_json(result.to_dict())
        return
    for f in result.files:
        print(f)
    note = f" (fell back: {result.fallback_reason})" if result.fallback_reason else ""
    print(f"run {result.run_id}: {result.model['id']} with strategy {result.strategy.name}, "
          f"{result.timings['total_s']:.2f} s{note}")


def cmd_generate(args: argparse.Namespace) -> int:
    result = _lab(args).generate(
        args.prompt, model=args.model, negative_prompt=args.negative, steps=args.steps, guidance=args.guidance,
        seed=args.seed, size=args.size, n=args.n, image=args.image, strength=args.strength, out=args.out,
        allow_pickle=args.allow_pickle, config=args.config, adapters=args.adapter or ())
    _print_result(result, args.json)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    result = _lab(args).video(
        args.prompt, image=args.image, model=args.model, frames=args.frames, fps=args.fps, seed=args.seed,
        steps=args.steps, guidance=args.guidance, size=args.size, negative_prompt=args.negative, out=args.out,
        allow_pickle=args.allow_pickle, config=args.config)
    _print_result(result, args.json)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _lab(args).plan(args.request, controller=args.controller, use_cache=not args.no_cache)
    if args.json:
        print(plan.to_json())
    else:
        for key, value in plan.to_dict().items():
            if value not in (None, "", [], ()):
                print(f"{key:>16}: {value}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    result = _lab(args).ask(args.request, controller=args.controller, out=args.out)
    _print_result(result, args.json)
    return 0


def cmd_compliance_dataset(args: argparse.Namespace) -> int:
    from labkit.compliance import dataset_breakdown

    lab = _lab(args)
    b = dataset_breakdown(args.path)
    chart = b.chart(args.chart or Path(args.path) / "licences.png")
    verdict = b.check(lab.compliance)
    if args.json:
        _print_json({**b.to_dict(), "chart": str(chart), "verdict": verdict.to_dict()})
    else:
        print(f"{b.total} items in {args.path}")
        for row in b.table():
            print(f"  {row['licence']:<28} {row['count']:>6}  {row['share']:5.1f}%")
        if b.missing:
            print(f"without a licence ({len(b.missing)}): {', '.join(b.missing[:20])}"
                  + (" …" if len(b.missing) > 20 else ""))
        print(f"training on it implies: {b.terms.text}")
        print(f"mode {verdict.mode}: {verdict.action}")
        for line in verdict.messages():
            print(f"  {line}")
        print(f"chart: {chart}")
    return 0 if verdict.ok else 1


def _config(args: argparse.Namespace):
    from labkit.config import LabConfig

    return LabConfig.resolve(args.root, tracking_uri=args.tracking_uri, experiment=args.experiment)


def cmd_compliance_keygen(args: argparse.Namespace) -> int:
    from labkit.compliance.credentials import keygen

    folder = args.out or _config(args).root / "c2pa"
    keys = keygen(folder, common_name=args.name, days=args.days, overwrite=args.force)
    if args.json:
        _print_json(keys.to_dict())
        return 0
    print(f"A local test CA and a signer it issued (valid until {keys.not_after[:10]}), in {keys.folder}:")
    print(f"  {keys.cert}  the signer's certificate chain\n  {keys.key}  its private key (yours only)")
    print(f"  {keys.ca}  the CA certificate: trust anchor for `labkit compliance verify --trust`")
    print("To sign every PNG and MP4 output, add to labkit.toml:\n")
    print(keys.toml())
    print(f"or set LABKIT_C2PA_CERT={keys.cert} and LABKIT_C2PA_KEY={keys.key}.")
    print("Nobody else trusts this CA: it is for trying content credentials, not for publishing.")
    return 0


def cmd_compliance_sign(args: argparse.Namespace) -> int:
    from labkit.compliance.credentials import identity_from_config, load_identity, sign_file
    from labkit.errors import ConfigError

    config = _config(args)
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise ConfigError("--cert and --key go together.", value=args.cert or args.key,
                              fix="pass both, or neither to use [c2pa] cert / key from labkit.toml.")
        identity = load_identity(args.cert, args.key, tsa_url=config.c2pa_tsa_url)
    else:
        identity = identity_from_config(config)
    if identity is None:
        raise ConfigError("No signing certificate is configured.", value=None,
                          fix="make a test one with `labkit compliance keygen` and add its [c2pa] section to "
                              "labkit.toml (or set LABKIT_C2PA_CERT / LABKIT_C2PA_KEY, or pass --cert and --key).")
    if args.out and len(args.files) > 1:
        raise ConfigError("--out names one file, and several were given.", value=args.files,
                          fix="sign one file with --out, or several in place without it.")
    signed = [sign_file(f, identity, out=args.out, replace=args.force) for f in args.files]
    if args.json:
        _print_json({"signed": [str(p) for p in signed], "signer": identity.to_dict()})
    else:
        for p in signed:
            print(f"signed {p} as {identity.subject}")
    return 0


def cmd_compliance_verify(args: argparse.Namespace) -> int:
    from labkit.compliance.credentials import verify

    trust = args.trust or _config(args).c2pa_trust
    results = [verify(f, trust=trust) for f in args.files]
    if args.json:
        data = [r.to_dict() for r in results]
        _print_json(data[0] if len(data) == 1 else data)
    else:
        for r in results:
            print("\n".join(r.lines()))
    return 0 if all(r.valid for r in results) else 1


def cmd_compliance_report(args: argparse.Namespace) -> int:
    from labkit.compliance import compliance_report
    from labkit.tracking import Tracker

    report = compliance_report(Tracker(_config(args)), args.experiment, max_runs=args.max_runs)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.text(), end="")
    return 0


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, object]:
    """The options the user set; the rest keep the recipe config's defaults."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _train_recipe(args: argparse.Namespace, recipe: str, train, cfg, what: str) -> int:
    """Run a toy training recipe; on Ctrl-C or SIGTERM (the engine kept a checkpoint and marked the runs
    KILLED) say how to continue."""
    try:
        path = train(_lab(args), cfg)
    except KeyboardInterrupt:
        print(f"stopped; continue with: labkit train {recipe} --resume --output {args.output}", file=sys.stderr)
        return 130
    print(f"{what} written to {path}")
    return 0


def cmd_train_toy_base(args: argparse.Namespace) -> int:
    from labkit.toyworld.train import ToyBaseConfig, train_toy_base

    cfg = ToyBaseConfig(output_dir=args.output, seed=args.seed, threads=args.threads,
                        resume="latest" if args.resume else None, eval_prompts=0 if args.no_eval else 60,
                        **_given(args, ("steps", "vae_steps", "text_steps", "batch_size")))
    return _train_recipe(args, "toy-base", train_toy_base, cfg, "toy model")


def cmd_train_toy_motion(args: argparse.Namespace) -> int:
    from labkit.toyworld.motion_train import ToyMotionConfig, train_toy_motion

    adapter_only = _given(args, ("first_frame_prob", "timestep_shift", "terminal_share", "spatial_lr_scale",
                                 "text_encoder_lr_scale", "shared_noise"))
    if args.arch == "warp":
        from labkit.toyworld.warp import ToyWarpConfig, train_toy_warp

        if adapter_only:
            flags = " ".join("--" + k.replace("_", "-") for k in adapter_only)
            raise InvalidParameter(f"{flags} set the AnimateDiff recipe; the default --arch warp has no such "
                                   "setting.", value=sorted(adapter_only),
                                   fix="add --arch animatediff to train the motion adapter, or drop the option.")
        given = _given(args, ("steps", "batch_size", "frames", "threads", "lr"))
        cfg = ToyWarpConfig(output_dir=args.output, base=args.base, seed=args.seed,
                            resume="latest" if args.resume else None, **given)
        return _train_recipe(args, "toy-motion", train_toy_warp, cfg, "toy motion model")
    cfg = ToyMotionConfig(output_dir=args.output, base=args.base, seed=args.seed,
                          resume="latest" if args.resume else None,
                          **_given(args, ("steps", "batch_size", "frames", "threads", "lr", "first_frame_prob",
                                          "timestep_shift", "terminal_share", "spatial_lr_scale",
                                          "text_encoder_lr_scale", "shared_noise")))
    return _train_recipe(args, "toy-motion", train_toy_motion, cfg, "toy motion model")


def cmd_train_lora(args: argparse.Namespace) -> int:
    from labkit.training.lora import LoraTrainConfig, train_lora

    given = _given(args, ("rank", "alpha", "resolution", "steps", "batch_size", "learning_rate", "checkpoint_every",
                          "validate_every", "threads", "eval_prompts", "concept", "guidance_scale", "sampling_steps",
                          "licence"))
    if args.target_modules:
        given["target_modules"] = tuple(args.target_modules)
    if args.validation_prompt:
        given["validation_prompts"] = tuple(args.validation_prompt)
        given.setdefault("validate_every", max(1, (args.steps or 500) // 4))
    cfg = LoraTrainConfig(data=args.data, output_dir=args.output, base=args.base, seed=args.seed,
                          train_text_encoder=args.train_text_encoder, kohya=args.kohya,
                          gradient_accumulation_steps=args.accumulation, lr_schedule=args.lr_schedule,
                          gradient_checkpointing=args.gradient_checkpointing,
                          resume="latest" if args.resume else None, **given)
    result = train_lora(_lab(args), cfg)
    if result.status != "finished":
        print(f"stopped at step {result.step}; continue with: labkit train lora {args.data} --output {args.output} "
              "--resume (same settings)", file=sys.stderr)
        return 130
    if args.json:
        _print_json({"run_id": result.run_id, "adapter": str(result.export_dir), "steps": result.step,
                     "wall_s": result.wall_s, "metrics": result.metrics})
    else:
        print(f"adapter written to {result.export_dir} (run {result.run_id}, {result.wall_s / 60:.1f} min)")
        for k, v in sorted(result.metrics.items()):
            print(f"  {k}: {v:.4g}")
    return 0


def cmd_compare_adapters(args: argparse.Namespace) -> int:
    from labkit.training.compare import compare_adapters

    out = compare_adapters(_lab(args), args.adapters, prompts=args.prompts, seeds=args.seeds, weights=args.weights,
                           model=args.model, steps=args.steps)
    if args.json:
        _print_json({"run_id": out.run_id, "rows": out.rows,
                     "means": [{"checkpoint": c, "weight": w, "all_correct": v} for (c, w), v in out.means().items()]})
    else:
        print(f"run {out.run_id}: {len(out.checkpoints)} checkpoint(s) × {len(out.weights)} weight(s) × "
              f"{len(out.seeds)} seed(s) × {len(out.prompts)} prompt(s)")
        for (c, w), v in out.means().items():
            print(f"  {c} @ {w:g}: all correct {v:.0%}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    result, check = _lab(args).replay(args.run_id, check=args.check)
    if args.json:
        _print_json({**result.to_dict(), "check": check.to_dict() if check else None})
    else:
        _print_result(result, False)
        if check:
            verdict = "identical" if check.identical else f"DIFFERENT (max pixel difference {check.max_diff})"
            print(f"check against {check.original_run}: {verdict} over {len(check.files)} file(s)")
    return 0 if check is None or check.identical else 1


def cmd_eval(args: argparse.Namespace) -> int:
    if args.which == "controller":
        from labkit.controller.base import get_controller
        from labkit.controller.evaluate import evaluate as evaluate_controller

        result = evaluate_controller(get_controller(args.controller))
        if args.json:
            _print_json(result)
        else:
            print(result.to_table())
        return 0
    if args.which == "toymotion":
        from labkit.toyworld.motion_eval import evaluate_motion

        report = evaluate_motion(_lab(args), model=args.model or "toyworld-motion",
                                 n=args.n if args.n is not None else 60, seed=args.seed, steps=args.steps,
                                 image_to_video=args.image_to_video)
    else:
        from labkit.toyworld.evaluate import evaluate

        report = evaluate(_lab(args), model=args.model or "toyworld", n=args.n if args.n is not None else 200,
                          seed=args.seed, steps=args.steps if args.steps is not None else 20)
    if args.json:
        _print_json(report.to_dict())
    else:
        print("\n".join(report.lines()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from labkit.sweeps import load_spec, run_sweep

    lab = _lab(args)
    spec = load_spec(args.file, root=lab.config.root)
    try:
        result = run_sweep(lab, spec, jobs=args.jobs, resume=args.resume, yes=args.yes, dry_run=args.dry_run,
                           progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"stopped; finish the missing points with: labkit sweep {args.file} --resume", file=sys.stderr)
        return 130
    if args.json:
        _print_json({"parent_run_id": result.parent_run_id, "dry_run": result.dry_run, "runs": len(result.points),
                     "skipped": [p.index for p in result.skipped],
                     "outcomes": [{"index": o.point.index, "run_id": o.run_id, "status": o.status, "error": o.error,
                                   "values": o.point.values} for o in result.outcomes]})
    else:
        print("\n".join(result.lines()))
        if result.report is not None:
            print("\n".join(result.report.lines()[1:]))
            print(f"summary, figures and grid: artifacts summary/ of run {result.parent_run_id} "
                  f"(labkit compare sweep {result.parent_run_id})")
    return 1 if result.failed else 0


def _setting(text: str) -> dict[str, Any]:
    """'steps=4,guidance=2.0' → {'steps': 4, 'guidance': 2.0} (values read as YAML)."""
    import yaml

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"{part!r} is not NAME=VALUE (e.g. steps=4)")
        k, v = part.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def cmd_compare_sweep(args: argparse.Namespace) -> int:
    from labkit.sweeps import report

    lab = _lab(args)
    compare = [(args.a, args.b, args.metric)] if args.a and args.b else None
    if bool(args.a) != bool(args.b):
        raise InvalidParameter("--a and --b go together.", value=args.a or args.b,
                               fix="pass both settings, e.g. --a steps=4 --b steps=12.")
    rep = report(lab, args.run_id, metrics=args.metrics or None, compare=compare, log=not args.no_log)
    if args.json:
        _print_json({"parent_run_id": rep.parent_run_id, "axes": list(rep.axes), "metrics": list(rep.metrics),
                     "summary": json.loads(rep.summary.to_json(orient="records")),
                     "paired": [p.to_dict() for p in rep.comparisons]})
    else:
        print("\n".join(rep.lines()))
        if not args.no_log:
            print(f"written to the artifacts summary/ of run {rep.parent_run_id} (summary.html, grid.png, plots)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from labkit.tracking.bundle import export_bundle
    from labkit.tracking.store import Tracker

    summary = export_bundle(Tracker(_config(args)), args.what, args.out)
    print(summary.line("export"))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from labkit.tracking.bundle import DEFAULT_MAX_BYTES, import_bundle
    from labkit.tracking.store import Tracker

    limit = DEFAULT_MAX_BYTES if args.max_bytes is None else args.max_bytes
    summary = import_bundle(Tracker(_config(args)), args.file, experiment=args.into, max_bytes=limit)
    if args.json:
        _print_json({"imported": summary.imported, "skipped": summary.skipped, "id_map": summary.id_map})
    else:
        print(summary.line("import"))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.bench import BENCHMARKS

    result = BENCHMARKS[args.which](repeats=args.repeat, model=args.model, steps=args.steps, size=args.size,
                                    root=args.root)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.line())
        for k, v in result.extra.items():
            print(f"  {k}: {v}")
    return 0


def _cloud_pulled(result, as_json: bool) -> None:
    if as_json:
        _print_json({"bundle": str(result.bundle), "imported": result.summary.imported,
                     "skipped": result.summary.skipped, "tags": result.tags,
                     "job": result.job.to_dict() if result.job else None})
    else:
        print("\n".join(result.lines()))


def cmd_cloud_kaggle_push(args: argparse.Namespace) -> int:
    from labkit.cloud.kaggle import push
    from labkit.cloud.prepare import parse_parameters

    pushed = push(_config(args).root, args.notebook, parse_parameters(args.param), owner=args.owner,
                  dry_run=args.dry_run, slug=args.slug, title=args.title, gpu=args.gpu, internet=args.internet,
                  datasets=args.dataset or [], install=args.install)
    k = pushed.kernel
    if args.json:
        _print_json({"folder": str(k.folder), "ref": k.ref, "job": k.job.to_dict(), "version": pushed.version,
                     "url": pushed.url, "warnings": pushed.warnings, "pushed": not args.dry_run})
        return 0
    print(f"built {k.folder} ({k.metadata_file.name}, {k.notebook.name}; job {k.job.id})")
    if args.dry_run:
        print(f"dry run: not pushed. Push it with: labkit cloud kaggle push {args.notebook} … (or kaggle kernels "
              f"push -p {k.folder})")
    else:
        print(f"pushed {k.ref} version {pushed.version}: {pushed.url}")
        for w in pushed.warnings:
            print(f"warning: Kaggle says {w}")
        print(f"watch it: labkit cloud kaggle status {k.ref}; then: labkit cloud kaggle pull {k.ref}")
    return 0


def cmd_cloud_kaggle_status(args: argparse.Namespace) -> int:
    from labkit.cloud.kaggle import status

    st = status(_config(args).root, args.ref)
    if args.json:
        _print_json({"ref": st.ref, "state": st.state, "message": st.message})
    else:
        print(st.line())
    return 1 if st.state == "error" else 0


def cmd_cloud_kaggle_pull(args: argparse.Namespace) -> int:
    from labkit.cloud.kaggle import pull

    config = _config(args)
    _cloud_pulled(pull(config.root, args.ref, source=args.source, config=config), args.json)
    return 0


def cmd_cloud_colab_build(args: argparse.Namespace) -> int:
    from labkit.cloud.colab import build_colab
    from labkit.cloud.prepare import parse_parameters

    built = build_colab(_config(args).root, args.notebook, parse_parameters(args.param), name=args.name,
                        gpu=args.gpu, install=args.install)
    if args.json:
        _print_json({"path": str(built.path), "link": built.link, "job": built.job.to_dict()})
    else:
        print("\n".join(built.lines()))
    return 0


def cmd_cloud_colab_pull(args: argparse.Namespace) -> int:
    from labkit.cloud.colab import pull_colab

    config = _config(args)
    _cloud_pulled(pull_colab(config.root, args.path, config=config), args.json)
    return 0


def cmd_cloud_jobs(args: argparse.Namespace) -> int:
    from labkit.cloud.jobs import JobList

    jobs = JobList.for_root(_config(args).root)
    items = jobs.all()
    if args.json:
        _print_json([j.to_dict() for j in items])
    elif not items:
        print(f"no cloud jobs yet ({jobs.path})")
    else:
        print("\n".join(j.line() for j in items))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from labkit import __version__

    parser = _Parser(prog="labkit", description="A research lab for generative image and video "
                     "models: plan, render, record every run in MLflow.")
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="project folder (default: found from the working directory)")
    common.add_argument("--tracking-uri", help="MLflow store URI (default: sqlite:///<root>/mlruns/mlflow.db)")
    common.add_argument("--experiment", help="MLflow experiment name (default: labkit)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", parents=[common], help="hardware, memory strategies, tracking store, versions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--repair-store", action="store_true",
                   help="first repair a SQLite store an interrupted migration left half-done (keeps a backup)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", parents=[common], help="run the lab's main job on the embedded default")
    p.add_argument("--out", type=_out_folder, help="also copy the rendered images into this folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", parents=[common], help="open the MLflow UI on the local store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("LABKIT_UI_PORT", "5000")))
    p.set_defaults(func=cmd_ui)

    render = argparse.ArgumentParser(add_help=False)
    render.add_argument("--model", help="catalogue id, diffusers repo id, local folder or .safetensors file")
    render.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    render.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    render.add_argument("--seed", type=int, help="seed of the first output (default: random, recorded)")
    render.add_argument("--size", type=_size, help="WIDTHxHEIGHT, multiples of 8 (default: the model's)")
    render.add_argument("--negative", default="", help="negative prompt")
    render.add_argument("--out", type=_out_folder, help="also copy the outputs into this folder")
    render.add_argument("--allow-pickle", action="store_true", help="allow pickle weights (they can run code)")
    render.add_argument("--config", help="for a .safetensors checkpoint: the diffusers folder/repo of its base model")
    render.add_argument("--mode", help="compliance mode: open, research (default), strict, or one of yours")
    render.add_argument("--json", action="store_true", help="print the result record as JSON")

    p = sub.add_parser("generate", parents=[common, render], help="text-to-image or image-to-image")
    p.add_argument("prompt")
    p.add_argument("--n", type=int, default=1, help="number of images")
    p.add_argument("--image", help="input image for image-to-image")
    p.add_argument("--strength", type=float, help="image-to-image strength 0–1 (default 0.6)")
    p.add_argument("--adapter", action="append", metavar="PATH_OR_ID[:WEIGHT]",
                   help="a LoRA adapter (.safetensors file or folder, run:RUN_ID, catalogue id, hub repo) with an "
                        "optional weight; repeat to stack several")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("video", parents=[common, render], help="image-to-video or text-to-video")
    p.add_argument("prompt", nargs="?", default="")
    p.add_argument("--image", help="first image for image-to-video")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    p.add_argument("--fps", type=int, help="frames per second (default: the model's)")
    p.set_defaults(func=cmd_video)

    controller = argparse.ArgumentParser(add_help=False)
    controller.add_argument("--controller", default="rules",
                            help="rules (default), local:<model> or remote:<url>#<model>")
    controller.add_argument("--mode", help="compliance mode: open, research (default), strict, or one of yours")

    p = sub.add_parser("plan", parents=[common, controller], help="show the plan for a request, render nothing")
    p.add_argument("request")
    p.add_argument("--no-cache", action="store_true", help="ask the controller even if the plan is cached")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("ask", parents=[common, controller], help="plan a request, then render it")
    p.add_argument("request")
    p.add_argument("--out", type=_out_folder, help="also copy the outputs into this folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("compliance", help="licences: dataset breakdowns, reports over runs, C2PA content credentials")
    csub = p.add_subparsers(dest="compliance_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("dataset", parents=[common], help="licence counts, missing licences, implied terms, chart")
    c.add_argument("path", help="an image folder with metadata.jsonl")
    c.add_argument("--chart", type=_out_file, help="where to write the chart (default: PATH/licences.png)")
    c.add_argument("--mode", help="compliance mode to check against (exit 1 when it blocks)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compliance_dataset)
    c = csub.add_parser("report", parents=[common],
                        help="assets used across runs, their licences and the output terms (all experiments "
                             "unless --experiment)")
    c.add_argument("--max-runs", type=int, default=5000, help="newest runs to read (default 5000)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compliance_report)
    c = csub.add_parser("keygen", parents=[common], help="make a local test CA and signing certificate for C2PA")
    c.add_argument("--out", type=_out_folder,
                   help="folder for ca.pem, signer.pem, signer.key (default: <project>/c2pa)")
    c.add_argument("--name", default="labkit local test signer", help="the signer's common name")
    c.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    c.add_argument("--force", action="store_true", help="replace keys already in the folder")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compliance_keygen)
    c = csub.add_parser("sign", parents=[common], help="sign labkit outputs (PNG, MP4, GIF) with C2PA content "
                                                       "credentials")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--cert", help="certificate chain, PEM (default: [c2pa] cert or LABKIT_C2PA_CERT)")
    c.add_argument("--key", help="private key, PEM (default: [c2pa] key or LABKIT_C2PA_KEY)")
    c.add_argument("--out", type=_out_file, help="write the signed copy here instead of replacing FILE")
    c.add_argument("--force", action="store_true", help="replace content credentials the file already has")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compliance_sign)
    c = csub.add_parser("verify", parents=[common], help="read back a file's C2PA manifest and its validation "
                                                         "state (exit 1 unless valid)")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--trust", help="trust anchors, PEM (default: [c2pa] trust or LABKIT_C2PA_TRUST)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compliance_verify)

    p = sub.add_parser("train", help="training recipes (toy-base: the toy world's text-to-image model)")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="RECIPE")
    t = tsub.add_parser("toy-base", parents=[common], help="train the toy text-to-image model from scratch")
    t.add_argument("--output", default="toy-base", type=_out_folder,
                   help="folder for checkpoints, validation grids and the model")
    t.add_argument("--steps", type=int, help="diffusion steps (default: ToyBaseConfig's)")
    t.add_argument("--vae-steps", type=int, help="VAE steps")
    t.add_argument("--text-steps", type=int, help="text-encoder pre-training steps (0: skip)")
    t.add_argument("--batch-size", type=int, help="diffusion batch size")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    t.add_argument("--no-eval", action="store_true", help="skip the final adherence check")
    t.set_defaults(func=cmd_train_toy_base)

    t = tsub.add_parser("toy-motion", parents=[common], help="train the toy motion model on the toy model: a "
                        "trajectory diffusion model with a warp renderer (default), or an AnimateDiff motion adapter")
    t.add_argument("--arch", choices=["warp", "animatediff"], default="warp",
                   help="warp: trajectory diffusion + warp renderer (labkit.toyworld.warp; what ships); animatediff: "
                   "a motion adapter (labkit.toyworld.motion_train)")
    t.add_argument("--output", default="toy-motion", type=_out_folder,
                   help="folder for checkpoints, validation strips and the model")
    t.add_argument("--base", default="toyworld", help="the toy text-to-image model to animate (default toyworld)")
    t.add_argument("--steps", type=int, help="training steps (default: the recipe's, ToyWarpConfig or ToyMotionConfig)")
    t.add_argument("--batch-size", type=int, help="clips per step")
    t.add_argument("--frames", type=int, help="frames per training clip (default 16)")
    t.add_argument("--lr", type=float, help="the learning rate (the adapter's, for --arch animatediff)")
    t.add_argument("--first-frame-prob", type=float, help="share of clips trained with their first frame given "
                   "(image-to-video)")
    t.add_argument("--timestep-shift", type=float, help="move training timesteps toward noise (1: uniform)")
    t.add_argument("--terminal-share", type=float, help="share of training steps at the last, zero-signal timestep")
    t.add_argument("--spatial-lr-scale", type=float, help="the base's 2D weights train at this fraction of --lr "
                   "(0: frozen)")
    t.add_argument("--text-encoder-lr-scale", type=float, help="the base's text encoder trains at this fraction of "
                   "--lr (0: frozen)")
    t.add_argument("--shared-noise", type=float, help="share of every frame's noise common to the clip")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    t.set_defaults(func=cmd_train_toy_motion)

    t = tsub.add_parser("lora", parents=[common], help="train a LoRA adapter on an image folder with metadata.jsonl")
    t.add_argument("data", help="image folder with metadata.jsonl (file_name, text, licence per line)")
    t.add_argument("--output", default="lora", type=_out_folder,
                   help="folder for checkpoints, validation grids and the adapter")
    t.add_argument("--base", default="toyworld", help="base model: catalogue id, repo id or folder (default toyworld)")
    t.add_argument("--rank", type=int)
    t.add_argument("--alpha", type=float)
    t.add_argument("--target-modules", nargs="+", help="UNet layers to adapt (default to_q to_k to_v to_out.0)")
    t.add_argument("--train-text-encoder", action="store_true", help="also train LoRA layers on the text encoder")
    t.add_argument("--resolution", type=int)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
    t.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    t.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--validation-prompt", action="append", help="a validation prompt (repeatable)")
    t.add_argument("--validate-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--guidance-scale", type=float, help="validation guidance (default: the base model's)")
    t.add_argument("--sampling-steps", type=int, help="validation steps (default: the base model's)")
    t.add_argument("--licence", help="the adapter's licence (default: the data's, when all items share one)")
    t.add_argument("--kohya", action="store_true", help="also write a kohya-format copy")
    t.add_argument("--eval-prompts", type=int, help="toy world: held-out prompts scored at the end")
    t.add_argument("--concept", help="toy world: the new shape the adapter teaches (for --eval-prompts)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train_lora)

    p = sub.add_parser("compare", help="side-by-side comparisons: adapters (checkpoint × weight × seed), "
                                                 "sweeps")
    csub = p.add_subparsers(dest="compare_command", required=True, metavar="WHAT")
    c = csub.add_parser("adapters", parents=[common], help="an XYZ grid of checkpoints × weights × seeds, "
                                                           "scored where a metric exists, logged as one run")
    c.add_argument("adapters", nargs="+", metavar="RUN_OR_FILE",
                   help="adapter files, training output folders (every checkpoint) or run:RUN_ID")
    c.add_argument("--prompts", nargs="+", required=True)
    c.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    c.add_argument("--weights", nargs="+", type=float, default=[0.0, 1.0])
    c.add_argument("--model", help="the base model (default: the lab's default image model)")
    c.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare_adapters)
    c = csub.add_parser("sweep", parents=[common], help="a sweep's table, mean and 95%% CI over seeds, plots, "
                                                        "image grid, paired comparison; logged into its parent run")
    c.add_argument("run_id", help="the sweep's parent run id")
    c.add_argument("--metric", dest="metrics", action="append", help="a metric to summarise (repeatable; default: "
                                                                     "the spec's metrics)")
    c.add_argument("--a", type=_setting, help="paired comparison: the baseline setting, e.g. steps=4")
    c.add_argument("--b", type=_setting, help="paired comparison: the other setting, e.g. steps=12")
    c.add_argument("--paired-metric", dest="metric", help="the metric of the paired comparison (default: the first)")
    c.add_argument("--no-log", action="store_true", help="print only; write nothing into the parent run")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare_sweep)

    p = sub.add_parser("replay", parents=[common], help="re-render a run from its stored plan")
    p.add_argument("run_id")
    p.add_argument("--check", action="store_true", help="compare the pixels with the original (exit 1 if not equal)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("sweep", parents=[common], help="run a study from a sweep spec (experiments/*.yaml): "
                                                       "one parent run, one child run per point and seed")
    p.add_argument("file", help="the sweep spec (YAML)")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list the points; run nothing")
    p.add_argument("--jobs", type=int, default=1, help="notebook points run on up to N kernels at once (bounded "
                                                       "by cores and RAM; default 1)")
    p.add_argument("--resume", action="store_true", help="continue the latest sweep of this name: run only the "
                                                         "points without a finished run")
    p.add_argument("--yes", action="store_true", help="start it even when it has more runs than the spec's max_runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export", parents=[common], help="write runs to a portable bundle (zip: JSON manifest + "
                                                        "artifact files)")
    p.add_argument("what", nargs="+", metavar="EXPERIMENT|RUN_ID", help="an experiment name, or run ids (each "
                                                                         "with the runs nested under it)")
    p.add_argument("--out", required=True, type=_out_file, help="the bundle to write (FILE.zip)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", parents=[common], help="add the runs of a bundle to this store (again: no-op)")
    p.add_argument("file", help="a bundle written by labkit export")
    p.add_argument("--into", help="put every run into this experiment (default: each run's own, by name)")
    p.add_argument("--max-bytes", type=int, help="refuse a bundle whose artifacts add up to more (default 20 GiB)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("eval", parents=[common], help="quality benchmarks: toyworld adherence, controller accuracy")
    p.add_argument("which", choices=["toyworld", "toymotion", "controller"])
    p.add_argument("--controller", default="rules", help="controller: the one to evaluate (default rules)")
    p.add_argument("--model", help="the model to evaluate (default: toyworld)")
    p.add_argument("--n", type=int, help="held-out prompts (of each kind; default 200, toymotion 60)")
    p.add_argument("--image-to-video", action="store_true", help="toymotion: start each clip from its first frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="sampling steps (default: toyworld 20, toymotion the model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("cloud", help="Colab and Kaggle: push a parameterised notebook, pull its runs back")
    cloud = p.add_subparsers(dest="cloud_command", required=True, metavar="WHERE")
    prepared = argparse.ArgumentParser(add_help=False)
    prepared.add_argument("notebook", help="a notebook file, or the name of one in notebooks/ (06_lora_training)")
    prepared.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                          help="a parameter of the notebook's `parameters` cell (repeat; lists as JSON)")
    prepared.add_argument("--gpu", action="store_true", help="ask for a GPU (the notebook stops if it gets none)")
    prepared.add_argument("--install", help="pip requirement the cloud installs labkit from (default: labkit's "
                                            "GitHub repository at the checked-out commit)")
    prepared.add_argument("--json", action="store_true")
    k = cloud.add_parser("kaggle", help="Kaggle kernels: push, status, pull")
    ksub = k.add_subparsers(dest="kaggle_command", required=True, metavar="ACTION")
    c = ksub.add_parser("push", parents=[common, prepared], help="build kaggle/<slug>/ and push it as a new version")
    c.add_argument("--internet", action="store_true", help="let the kernel reach the internet (needed to install "
                                                           "labkit from GitHub or PyPI)")
    c.add_argument("--dataset", action="append", metavar="OWNER/SLUG", help="attach a Kaggle dataset (repeat)")
    c.add_argument("--owner", help="the Kaggle username (default: the one the credentials belong to)")
    c.add_argument("--slug", help="the kernel's slug (default: labkit-<notebook name>)")
    c.add_argument("--title", help="the kernel's title (must resolve to the slug)")
    c.add_argument("--dry-run", action="store_true", help="build the folder, push nothing")
    c.set_defaults(func=cmd_cloud_kaggle_push)
    c = ksub.add_parser("status", parents=[common], help="what Kaggle says about a kernel's run")
    c.add_argument("ref", help="OWNER/SLUG[/VERSION]")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cloud_kaggle_status)
    c = ksub.add_parser("pull", parents=[common], help="download a kernel's bundle and import its runs, tagged with "
                                                       "the kernel and version")
    c.add_argument("ref", help="OWNER/SLUG[/VERSION]")
    c.add_argument("--from", dest="source", metavar="PATH", help="a folder (or zip) already downloaded from Kaggle")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cloud_kaggle_pull)
    co = cloud.add_parser("colab", help="Colab notebooks: build one to open there, pull its bundle")
    csub = co.add_subparsers(dest="colab_command", required=True, metavar="ACTION")
    c = csub.add_parser("build", parents=[common, prepared], help="write colab/<name>.ipynb and print how to open it")
    c.add_argument("--name", help="the notebook's name in colab/ (default: the source notebook's)")
    c.set_defaults(func=cmd_cloud_colab_build)
    c = csub.add_parser("pull", parents=[common], help="import the labkit-runs.zip a Colab session left on Drive")
    c.add_argument("path", help="the zip (or the folder holding it)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cloud_colab_pull)
    c = cloud.add_parser("jobs", parents=[common], help="what was pushed or built, where, with which parameters, "
                                                       "its last known state")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cloud_jobs)

    from labkit.bench import BENCHMARKS

    p = sub.add_parser("bench", help="benchmarks as ratios to a baseline measured in the same run")
    p.add_argument("which", choices=sorted(BENCHMARKS))
    p.add_argument("--repeat", type=int, default=10, help="measurements of each side (default 10)")
    p.add_argument("--root", help="project folder (default: found from the working directory)")
    p.add_argument("--model", help="generate: the model to measure (default: the lab's default image model); "
                   "toy-motion: default toyworld-motion")
    p.add_argument("--steps", type=int, help="denoising steps (default: generate 20, toy-motion the model's)")
    p.add_argument("--size", type=_size, help="generate: WIDTHxHEIGHT (default: the model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `labkit` command; return its exit status (see the module docstring for the error boundary)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed as one line
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except Exception as e:  # a check while parsing that failed in a way nobody foresaw
        return _unexpected("", argparse.Namespace(), argv, e)
    command = _command_name(args)
    with _SigtermAsInterrupt() as sigterm:
        try:
            _check_text(args, _option_names(parser))
            return args.func(args)
        except LabkitError as e:
            _say(command, str(e))
            return 2
        except KeyboardInterrupt:
            if sigterm.received:
                _say(command, "stopped by SIGTERM (an open run ends KILLED).")
                return 143
            _say(command, "interrupted.")
            return 130
        except BrokenPipeError:  # `labkit … | head`: the reader left; say nothing more
            _silence_stdout()
            return 141
        except Exception as e:
            return _unexpected(command, args, argv, e)


# -- the error boundary ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the CLI."""

    def error(self, message: str):  # type: ignore[override]
        fix = "" if "Fix:" in message else f" Fix: see `{self.prog} --help`."
        self.exit(2, f"{printable(self.prog)}: {_one_line(printable(message))}{fix}\n")


def _unexpected(command: str, args: argparse.Namespace, argv: Sequence[str] | None, e: Exception) -> int:
    log, why = _write_error_log(args, argv, e)
    where = f"full traceback in {log}" if log else f"the traceback could not be written: {why}"
    _say(command, f"unexpected error: {type(e).__name__}: {_short(str(e))} ({where})")
    return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush into a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in a test): nothing to flush
        pass


def _command_name(args: argparse.Namespace) -> str:
    """'generate', 'compliance dataset', 'cloud kaggle push', …"""
    words = [args.command]
    for key in ("compliance_command", "train_command", "compare_command", "cloud_command", "kaggle_command",
                "colab_command"):
        if getattr(args, key, None):
            words.append(getattr(args, key))
    return " ".join(words)


def _say(command: str, message: str) -> None:
    prefix = f"labkit {command}".strip()
    print(f"{prefix}: {_one_line(printable(message))}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _short(text: str, limit: int = 400) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest → how the user wrote it ('--out', 'prompt'), over every sub-command."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for dest, name in _option_names(sub).items():
                    names.setdefault(dest, name)
        elif action.dest not in (argparse.SUPPRESS, "help"):
            longs = [o for o in action.option_strings if o.startswith("--")]
            names.setdefault(action.dest, (longs or action.option_strings or [action.metavar or action.dest])[0])
    return names


def _check_text(args: argparse.Namespace, names: dict[str, str]) -> None:
    """Every text argument is UTF-8: prompts, paths and names end up in JSON records, MLflow and PNG
    metadata, none of which can hold the lone surrogates that undecodable argv bytes become."""
    for dest, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, str) and not is_utf8(item):
                name = names.get(dest, dest)
                raise InvalidParameter(f'The argument {name} = "{printable(item)}" is not valid UTF-8 text.',
                                       value=printable(item),
                                       fix=f"pass {name} as UTF-8 text (check the terminal's or the script's "
                                           "encoding; LANG=C.UTF-8).")


def _out_folder(text: str) -> str:
    """argparse type of an option naming a folder to write into (created if missing)."""
    path = _path_arg(text)
    try:
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a file, and a folder is expected. Fix: name a folder "
                                             "(it is created when missing), or move the file away.")
        _check_writable_parent(path, text, "folder")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {e.strerror or e}. "
                                         "Fix: name another folder.") from None
    return text


def _out_file(text: str) -> str:
    """argparse type of an option naming a file to write (its folder created if missing)."""
    path = _path_arg(text)
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder, and a file name is expected. Fix: name a file "
                                             f"inside it, e.g. {str(path / 'out')!r} with the right extension.")
        _check_writable_parent(path.parent, text, "file")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {e.strerror or e}. "
                                         "Fix: name another file.") from None
    return text


def _path_arg(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path. Fix: name a path, or leave the option out.")
    if "\x00" in text or not is_utf8(text):
        raise argparse.ArgumentTypeError(f"{printable(text)!r} is not a usable path (not UTF-8 text, or a NUL "
                                         "character). Fix: name the path in UTF-8 text.")
    return Path(text).expanduser()


def _check_writable_parent(path: Path, text: str, what: str) -> None:
    """The nearest folder that exists at or above `path` must be a folder labkit can write in."""
    folder = path if path.is_absolute() else Path.cwd() / path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {str(folder)!r} is a file, so the {what} cannot be created "
                                         "under it. Fix: choose a path under a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: the folder {str(folder)!r} is not writable. Fix: choose a "
                                         "folder you can write to, or change its permissions.")


class _SigtermAsInterrupt:
    """While a command runs, SIGTERM (`kill`, a scheduler, a closing service) raises KeyboardInterrupt in the
    main thread: an open run ends KILLED and outputs are cleaned up the way Ctrl-C does it.

    Handlers nest: the training engine and `labkit ui` install their own for their loops and restore this
    one after. A SIGTERM arriving while an interrupt is already being handled (a checkpoint being saved,
    a run being closed) ends the process at once, as it would without labkit."""

    def __init__(self) -> None:
        self.received = False
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> _SigtermAsInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGTERM, self._handle)
                self.installed = True
            except (ValueError, OSError):  # no signals here (an embedded interpreter): nothing to do
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.received or isinstance(sys.exc_info()[1], KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.received = True
        raise KeyboardInterrupt("SIGTERM")

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


def _write_error_log(args: argparse.Namespace, argv: Sequence[str] | None, exc: BaseException
                     ) -> tuple[Path | None, str]:
    """Write the traceback of an unexpected error to a log file; (its path, "") or (None, why not).

    The file goes to `<project>/mlruns/logs/` when the project has an `mlruns/` folder (no folder is made
    in a directory that is not a project), else to `<tmp>/labkit-logs/`."""
    import datetime
    import tempfile
    import traceback

    from labkit import __version__

    now = datetime.datetime.now(datetime.UTC)
    command = [printable(a) for a in (sys.argv[1:] if argv is None else argv)]
    text = (f"labkit {__version__}, Python {sys.version.split()[0]}, pid {os.getpid()}\n"
            f"time: {now.isoformat()}\ncwd: {printable(os.getcwd())}\ncommand: labkit {' '.join(command)}\n\n"
            + printable("".join(traceback.format_exception(exc))))
    folders = []
    try:
        from labkit.config import find_project_root

        root = Path(args.root).expanduser() if getattr(args, "root", None) else find_project_root()
        if (root / "mlruns").is_dir():
            folders.append(root / "mlruns" / "logs")
    except Exception:  # a bad root or $LABKIT_ROOT: the temporary folder will do
        pass
    folders.append(Path(tempfile.gettempdir()) / "labkit-logs")
    why = "no folder to write to"
    stem = f"labkit-{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):
                path = folder / (stem + (f"-{n}" if n else "") + ".log")
                try:
                    with open(path, "x", encoding="utf-8") as f:
                        f.write(text)
                    return path, ""
                except FileExistsError:
                    continue
        except OSError as e:
            why = f"{folder}: {e.strerror or e}"
    return None, why


if __name__ == "__main__":
    sys.exit(main())

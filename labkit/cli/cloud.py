"""`labkit cloud kaggle push | status | pull`, `cloud colab build | pull`, `cloud jobs`: run a parameterised
notebook on Kaggle or Colab and bring its runs back into this store.

Example: `labkit cloud kaggle push 06_lora_training -p steps=200 --gpu --internet`.
"""

from __future__ import annotations

import argparse

from labkit.cli._common import _config, _print_json


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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add cloud and its sub-commands."""
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

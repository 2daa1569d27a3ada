"""`labkit compliance dataset | report | keygen | sign | verify`: licences of training data and of runs, and
C2PA content credentials on outputs.

Example: `labkit compliance dataset data/shapes --mode strict` prints the licence breakdown, exit 1 if it blocks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.cli._common import _config, _lab, _out_file, _out_folder, _print_json


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


def cmd_compliance_keygen(args: argparse.Namespace) -> int:
    from labkit.compliance.signing import keygen

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
    from labkit.compliance.signing import check_signable, identity_from_config, load_identity, sign_file
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
    # Every file is checked before the first is signed, so a bad one among several leaves all as they were.
    check_signable(args.files, replace=args.force)
    signed = [sign_file(f, identity, out=args.out, replace=args.force) for f in args.files]
    if args.json:
        _print_json({"signed": [str(p) for p in signed], "signer": identity.to_dict()})
    else:
        for p in signed:
            print(f"signed {p} as {identity.subject}")
    return 0


def cmd_compliance_verify(args: argparse.Namespace) -> int:
    from labkit.compliance.signing import verify

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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add compliance and its sub-commands."""
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

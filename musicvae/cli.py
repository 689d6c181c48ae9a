"""The `musicvae` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from musicvae.core.errors import MusicVAEError


def _stack(args):
    from musicvae.local.stack import Stack

    return Stack(args.stack_dir)


def cmd_sample(args) -> None:
    from musicvae.local.sample.layout import build_sample

    s = build_sample(
        Path(args.out), tracks=args.tracks, seed=args.seed, defects=args.defects, layout=args.layout
    )
    print(f"{s.tracks} tracks in {s.root} ({s.written} files written, {s.unchanged} unchanged)")


def cmd_stack(args) -> None:
    stack = _stack(args)
    if args.action == "up":
        stack.up(airflow=not args.no_airflow, landing=args.landing)
    elif args.action == "down":
        stack.down()
    for name, state in stack.status().items():
        print(f"{name:<22} {state}")
    if args.action == "up":
        print(f"\nsettings: source {stack.root / 'env'}")


def cmd_demo(args) -> None:
    from musicvae.local.demo import run_demo

    print(
        run_demo(
            _stack(args),
            tracks=args.tracks,
            epochs=args.epochs,
            seed=args.seed,
            landing=args.landing,
        )
    )


def _settings():
    from musicvae.core.config import Settings

    return Settings.from_env()


def cmd_db(args) -> None:
    from musicvae.core import db

    applied = db.migrate(db.engine(_settings().database_url))
    print("applied: " + (", ".join(applied) or "nothing (schema is current)"))


def cmd_storage(args) -> None:
    from musicvae.core.storage import ObjectStore

    settings = _settings()
    ObjectStore(settings).ensure_bucket()
    print(f"bucket {settings.bucket} ready")


def cmd_stage(args) -> None:
    """Run one pipeline stage in this process (debugging without Airflow)."""
    settings = _settings()
    if args.stage == "ingest":
        from musicvae.ingest.run import run_ingest

        result = run_ingest(settings, args.run_id, args.landing).as_dict()
    elif args.stage == "validate":
        from musicvae.quality.validate import run_validation

        result = run_validation(settings, args.run_id).as_dict()
    else:
        from musicvae.catalogue.recluster import run_recluster

        result = run_recluster(settings, args.run_id).as_dict()
    print(json.dumps(result, indent=2, default=str))


def cmd_retrain(args) -> None:
    """snapshot -> features -> train -> register -> evaluate -> promote, in this process."""
    from musicvae.retrain.form import AIRFLOW_ONLY, RETRAIN_FORM
    from musicvae.retrain.pipeline import run_retrain

    values = {
        name: getattr(args, name)
        for name in RETRAIN_FORM
        if name not in AIRFLOW_ONLY and getattr(args, name) is not None
    }
    result = run_retrain(_settings(), values, args.run_id)
    print(json.dumps(asdict(result), indent=2, default=str))
    if result.decision and result.decision["promoted"]:
        print(f"model version {result.version} is the champion: `musicvae recluster` next")


def cmd_evaluate(args) -> None:
    """Recompute the evaluation report of a model version (default: the champion)."""
    from musicvae.core import db
    from musicvae.registry import versions
    from musicvae.retrain.model_report import report

    settings = _settings()
    version = args.version
    if version is None:
        eng = db.engine(settings.database_url)
        db.migrate(eng)
        with eng.connect() as conn:
            version = versions.champion(conn).version
    print(json.dumps(report(settings, version), indent=2))


def cmd_release(args) -> None:
    from musicvae.quality.quarantine import release

    result = release(_settings(), args.track_id, args.reason)
    print(f"released {result['track_id']} (was: {result['previous_reason']})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="musicvae", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write a MERGE-layout sample catalogue")
    s.add_argument("--tracks", type=int, default=200)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--defects", action="store_true", help="add deliberately broken inputs")
    s.add_argument(
        "--layout",
        choices=["bimodal_balanced", "audio_complete"],
        default="bimodal_balanced",
        help="the MERGE subset it imitates (audio_complete: audio only, as MERGE_Audio_Complete)",
    )
    s.set_defaults(func=cmd_sample)

    for name, func, helptext in (
        ("stack", cmd_stack, "start, stop or inspect the local stack"),
        ("demo", cmd_demo, "run the whole pipeline on a sample"),
    ):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--stack-dir", default=str(Path.cwd() / ".stack"))
        q.add_argument(
            "--landing",
            default=os.environ.get("MUSICVAE_LANDING") or None,
            help="the landing zone the DAGs read: a folder holding MERGE_* folders, one of "
            "them, or s3://bucket/prefix (default: $MUSICVAE_LANDING, else the one last given, "
            "else <stack-dir>/landing)",
        )
        q.set_defaults(func=func)
        if name == "stack":
            q.add_argument("action", choices=["up", "down", "status"])
            q.add_argument("--no-airflow", action="store_true")
        else:
            q.add_argument("--tracks", type=int, default=200)
            q.add_argument("--epochs", type=int, default=None, help="default: the front end's")
            q.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("db", help="database schema")
    d.add_argument("action", choices=["migrate"])
    d.set_defaults(func=cmd_db)
    st = sub.add_parser("storage", help="object storage")
    st.add_argument("action", choices=["init"])
    st.set_defaults(func=cmd_storage)

    _add_retrain_parser(sub)

    e = sub.add_parser("evaluate", help="the research table and plots for a model version")
    e.add_argument("--version", type=int, default=None, help="default: the champion")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("release", help="release a quarantined track, with a recorded reason")
    r.add_argument("track_id", help="e.g. bimodal_balanced/A001")
    r.add_argument("--reason", required=True, help="why validation is overruled")
    r.set_defaults(func=cmd_release)

    for stage in ("ingest", "validate", "recluster"):
        q = sub.add_parser(stage, help=f"run the {stage} stage here, without Airflow")
        q.add_argument("--run-id", default=f"cli-{stage}")
        if stage == "ingest":
            q.add_argument("--landing", default=None)
        q.set_defaults(func=cmd_stage, stage=stage)
    return p


def _add_retrain_parser(sub) -> None:
    """`musicvae retrain`: one option per field of the DAG's trigger form, checked the same way."""
    from musicvae.retrain.form import AIRFLOW_ONLY, RETRAIN_FORM

    q = sub.add_parser("retrain", help="train, register, evaluate and promote, without Airflow")
    q.add_argument("--run-id", default="cli-retrain")
    types = {"integer": int, "number": float, "string": str}
    for name, spec in RETRAIN_FORM.items():
        if name in AIRFLOW_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        if spec["type"] == "boolean":
            q.add_argument(flag, action="store_true", default=None, help=spec["description"])
            continue
        kind = (
            [t for t in spec["type"] if t != "null"][0]
            if isinstance(spec["type"], list)
            else spec["type"]
        )
        q.add_argument(
            flag,
            type=types[kind],
            default=None,
            choices=spec.get("enum"),
            help=f"{spec['description']} (default: {spec['default']})",
        )
    q.set_defaults(func=cmd_retrain)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("urllib3", "great_expectations", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.func(args)
    except MusicVAEError as e:
        print(f"musicvae: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

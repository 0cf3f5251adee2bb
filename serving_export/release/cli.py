"""``recpipe release list | show ID | verify ID | publish ID | rollback [ID] | prune |
history | parent | hourly``: manage releases; publishing and rollback move the MLflow
``champion`` aliases with ``CURRENT``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from conf import Settings, load_settings
from conf.errors import ReleaseError, UsageError
from serving_export.release import hourly
from serving_export.release.promotion import publish_release, rollback_release
from serving_export.release.publish import (
    current_release,
    list_releases,
    prune,
    read_history,
    rollback_target,
)
from serving_export.release.reader import verify_release


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recpipe release", description=__doc__)
    parser.add_argument("--releases-root", help="releases folder (default: settings)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every release, oldest first; * marks CURRENT")
    show = sub.add_parser("show", help="print a release's manifest (without the file list)")
    show.add_argument("release_id")
    show.add_argument("--files", action="store_true", help="include the file list")
    verify = sub.add_parser("verify", help="check a release's files and checksums")
    verify.add_argument("release_id")
    pub = sub.add_parser("publish", help="point CURRENT at a verified, gate-passed release")
    pub.add_argument("release_id", nargs="?")
    pub.add_argument("--ds", help="publish the newest complete release built for this date "
                                  "(what the nightly DAG's publish task uses)")
    pub.add_argument("--force", action="store_true",
                     help="publish even if the pre-swap checks fail (needs --reason)")
    pub.add_argument("--reason", help="why a failed release is published anyway (recorded "
                                      "in the history)")
    back = sub.add_parser("rollback", help="point CURRENT back (default: previous release)")
    back.add_argument("release_id", nargs="?")
    pr = sub.add_parser("prune", help="delete old releases (never CURRENT or rollback target)")
    pr.add_argument("--keep", type=int, help="releases to keep (default: keep_releases)")
    pr.add_argument("--dry-run", action="store_true")
    sub.add_parser("history", help="print the publish history")
    parent = sub.add_parser("parent", help="print the parent release of an hourly run")
    hourly.add_arguments(parent, parent=False)
    build = sub.add_parser("hourly", help="build and publish an hour's incremental release")
    hourly.add_arguments(build, parent=True)
    return parser


def release_for_date(root: Path, ds: str | None) -> str:
    """The newest complete full (nightly, not incremental) release built for ``ds``."""
    if not ds:
        raise ReleaseError("publish needs a release id or --ds")
    found = [r for r in list_releases(root) if r.complete and r.ds == ds and not r.parent]
    if not found:
        raise ReleaseError(f"no complete release for ds={ds} under {root}")
    return max(found, key=lambda r: (r.created_at or "", r.release_id)).release_id


def run(settings: Settings, root: Path, args: argparse.Namespace) -> int:
    """Carry out one release command under ``root``; print to stdout; return 0."""
    if args.command == "list":
        releases = list_releases(root)
        if not releases:
            print(f"no releases in {root}")
        for r in releases:
            mark = "*" if r.current else " "
            gate = {True: "passed", False: "FAILED", None: "?"}[r.gate_passed]
            state = "complete" if r.complete else "INCOMPLETE"
            parent = f" parent={r.parent}" if r.parent else ""
            print(f"{mark} {r.release_id}  ds={r.ds}  created={r.created_at}  gate={gate}  "
                  f"{state}{parent}")
    elif args.command in ("show", "verify"):
        manifest = verify_release(root / args.release_id)
        if args.command == "verify":
            print(f"{args.release_id}: OK ({len(manifest['files'])} files verified)")
        else:
            if not args.files:
                manifest = {k: v for k, v in manifest.items() if k != "files"}
            print(json.dumps(manifest, indent=2, sort_keys=True))
    elif args.command == "publish":
        target = args.release_id or release_for_date(root, args.ds)
        if args.force and not (args.reason or "").strip():
            raise UsageError("--force needs --reason TEXT: the history records why")
        if args.reason and not args.force:
            raise UsageError("--reason is only for --force")
        previous, champions = publish_release(settings, root, target,
                                              args.reason.strip() if args.force else None)
        print(f"CURRENT: {previous} -> {target}; champion: {champions or '-'}")
    elif args.command == "rollback":
        previous = current_release(root)
        target, champions = rollback_release(settings, root, args.release_id)
        print(f"CURRENT: {previous} -> {target} (rollback); champion: {champions or '-'}")
    elif args.command == "prune":
        keep = settings.serving.keep_releases if args.keep is None else args.keep
        deleted = prune(root, keep, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(deleted)}: {' '.join(deleted) or '-'}; "
              f"kept CURRENT={current_release(root)} rollback={rollback_target(root)}")
    elif args.command == "history":
        for entry in read_history(root):
            forced = f"  FORCED: {entry['forced']}" if entry.get("forced") else ""
            print(f"{entry.get('at')}  {entry.get('action'):<8}  {entry['release_id']}  "
                  f"(was {entry.get('previous')}){forced}")
    elif args.command == "parent":
        return hourly.main_parent(settings, args)
    elif args.command == "hourly":
        return hourly.main_hourly(settings, args)
    return 0


def main(argv: list[str]) -> int:
    """Parse ``argv``, run the command; exit 2 with a message on any release error."""
    parser = _parser()
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.releases_root:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(
            update={"releases_root": settings.resolve(args.releases_root)})})
    root = Path(settings.serving.releases_root)
    if args.command == "prune" and args.keep is not None and args.keep < 1:
        raise UsageError(f"--keep must be >= 1, got {args.keep}")
    return run(settings, root, args)

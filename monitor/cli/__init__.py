"""The `monitor` command: run | once | check | match | backtest | status | deliveries.

A thin layer: each command loads the config, builds what it needs from the stages (through
`monitor.daemon.Runtime` for anything that polls or delivers), prints, and returns an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence

from monitor import __version__
from monitor.cli import match as match_cmd
from monitor.cli import ops
from monitor.errors import ConfigError


def _config_arg(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # A nested command (`deliveries list --config X`) takes --config too; its default is
    # suppressed so that it never overwrites a --config given before the subcommand.
    p.add_argument(
        "--config",
        "-c",
        default=argparse.SUPPRESS if nested else os.environ.get("MONITOR_CONFIG", "monitor.yaml"),
        help="config file (default: $MONITOR_CONFIG or monitor.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor", description="News monitor: polls feeds, matches rules, sends alerts."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon (Ctrl-C / SIGTERM stops, SIGHUP reloads)")
    _config_arg(p)
    p = sub.add_parser("once", help="one cycle: poll every feed, process, deliver, exit")
    _config_arg(p)
    p = sub.add_parser("check", help="validate the config: schema, rules, examples, channels")
    _config_arg(p)
    match_cmd.add_parser(sub)
    p = sub.add_parser("backtest", help="run the current rules over stored articles")
    _config_arg(p)
    p.add_argument("--since", default="7d", help="how far back (e.g. 24h, 7d; default 7d)")
    p.add_argument("--rule", action="append", help="only this rule (repeatable)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p = sub.add_parser("status", help="feeds' health, the delivery queue, recent alerts")
    _config_arg(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p = sub.add_parser("deliveries", help="list or replay alert deliveries")
    _config_arg(p)
    dsub = p.add_subparsers(dest="action", required=True)
    lp = dsub.add_parser("list", help="list deliveries")
    lp.add_argument("--status", choices=["pending", "failed", "dead", "sent", "held", "digested"])
    lp.add_argument("--limit", type=int, default=50)
    lp.add_argument("--format", choices=["text", "json"], default="text")
    _config_arg(lp, nested=True)
    rp = dsub.add_parser("retry", help="make failed or dead deliveries due now")
    _config_arg(rp, nested=True)
    rp.add_argument("ids", nargs="*", type=int, help="delivery ids")
    rp.add_argument("--dead", action="store_true", help="every dead delivery")
    for name in ("evaluate", "train", "feedback"):  # each sets `run`; heavy imports in it
        importlib.import_module(f"monitor.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "run"):
            return int(args.run(args))
        if args.command == "check":
            return ops.check(args.config)
        if args.command == "match":
            return match_cmd.run(args)
        if args.command == "once":
            return asyncio.run(ops.once(args.config))
        if args.command == "run":
            return asyncio.run(ops.run(args.config))
        if args.command == "backtest":
            return ops.backtest(args.config, since=args.since, rules=args.rule, fmt=args.format)
        if args.command == "status":
            return ops.status(args.config, fmt=args.format)
        if args.command == "deliveries":
            if args.action == "list":
                return ops.deliveries_list(
                    args.config, status=args.status, limit=args.limit, fmt=args.format
                )
            return ops.deliveries_retry(args.config, ids=args.ids, dead=args.dead, now=time.time())
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in the config", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps({"error": f"unknown command {args.command}"}), file=sys.stderr)
    return 2

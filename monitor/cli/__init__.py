"""The `monitor` command: every subcommand, its options, and the exit codes.

Start-up is kept cheap: this module imports only argparse. Each subcommand names its handler as
`"module:function"` and the module is imported only when that subcommand runs, so `monitor
--help` never loads SQLAlchemy, aiohttp, pydantic or the rule compiler (a test guards it). A new
subcommand registers here in one line:

    _command(sub, "name", "monitor.cli.mymodule:handler", help="...")

and its handler takes the parsed `argparse.Namespace` and returns an exit code.

Exit codes (docs/commands.md): 0 ok; 1 an error the user can act on (config, database, an
unknown id); 2 bad usage; 3 `once` polled but some feeds failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from monitor import __version__
from monitor.errors import ConfigError, MonitorError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FEEDS_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `git log | head`

DEFAULT_CONFIG = "monitor.yaml"
FORMATS = ("text", "json")
DELIVERY_STATUSES = ("pending", "failed", "dead", "sent", "held", "digested")


def default_config() -> str:
    """The config file a command reads without `-c`: $MONITOR_CONFIG, else monitor.yaml."""
    return os.environ.get("MONITOR_CONFIG") or DEFAULT_CONFIG


def _config_arg(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Accepted before and after the subcommand (`monitor -c X once`, `monitor once -c X`). A
    # subcommand's default is suppressed so that it never overwrites a --config given before.
    p.add_argument(
        "-c",
        "--config",
        default=default_config() if top else argparse.SUPPRESS,
        metavar="FILE",
        help=f"config file (default: $MONITOR_CONFIG or {DEFAULT_CONFIG})",
    )


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")


def duration(value: str) -> str:
    """An argparse type: a duration such as 30m, 24h, 7d (kept as given, checked here)."""
    from monitor.config import parse_duration

    try:
        parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _command(sub: Any, name: str, handler: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Register subcommand `name`, run by `handler` ("module:function", imported on use)."""
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler)
    _config_arg(p)
    return p


def _learning_parsers(sub: Any) -> None:
    """evaluate, train, feedback: the rules measured against labels, and the labels kept."""
    p = _command(
        sub,
        "evaluate",
        "monitor.cli.evaluate:run",
        help="precision, recall and F1 of rules on labelled articles",
    )
    p.add_argument("--rule", action="append", help="only this rule (repeatable)")
    p.add_argument("--labels", help="labels file (JSON lines; see docs/evaluation.md)")
    p.add_argument("--csv", help="CSV that `row` lines refer to when they name none")
    _format_arg(p)
    p.add_argument("--min-f1", type=float, help="exit 1 when a rule's F1 is below this")
    p.add_argument(
        "--no-feedback", action="store_true", help="leave out the verdicts in the database"
    )
    p = _command(
        sub,
        "train",
        "monitor.cli.train:run",
        help="fit the trained scorers of rules (scikit-learn)",
    )
    p.add_argument("--rule", action="append", help="only this rule (repeatable)")
    p.add_argument("--no-feedback", action="store_true", help="leave out stored verdicts")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="cross-validation repeats (default 3)")
    _format_arg(p)
    p = _command(
        sub,
        "feedback",
        "monitor.cli.feedback:run",
        help="store a verdict on an alert (labelled data)",
    )
    p.add_argument("alert_id", type=int, help="the alert's id (in its message: alert_id)")
    p.add_argument("verdict", choices=["relevant", "irrelevant"])
    p.add_argument("--note", help="why (shown by evaluate)")
    p.add_argument("--author", default=os.environ.get("USER"), help="who (default: $USER)")


def _feeds_parsers(sub: Any) -> None:
    p = sub.add_parser("feeds", help="list, add or export the configured feeds")
    _config_arg(p)
    fsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    lp = _command(fsub, "list", "monitor.cli.feeds:list_feeds", help="list the configured feeds")
    _format_arg(lp)
    ap = _command(
        fsub,
        "add",
        "monitor.cli.feeds:add",
        help="find the feed of a site page and append it to a feeds file",
    )
    ap.add_argument("url", help="a feed URL, or a site page that links to its feed")
    ap.add_argument(
        "--file", "-f", help="feeds file to append to (default: the config file itself)"
    )
    ap.add_argument("--name", help="the feed's name (default: the feed's own title)")
    ap.add_argument("--allow-private", action="store_true", help="allow a loopback/private URL")
    ep = _command(fsub, "export", "monitor.cli.feeds:export", help="write the feeds as OPML")
    ep.add_argument("--output", "-o", help="write to this file (default: standard output)")


def _deliveries_parsers(sub: Any) -> None:
    p = sub.add_parser("deliveries", help="list or replay alert deliveries")
    _config_arg(p)
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    lp = _command(dsub, "list", "monitor.cli.ops:cmd_deliveries_list", help="list deliveries")
    lp.add_argument("--status", choices=DELIVERY_STATUSES, help="only deliveries in this state")
    lp.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _format_arg(lp)
    rp = _command(
        dsub,
        "retry",
        "monitor.cli.ops:cmd_deliveries_retry",
        help="make failed or dead deliveries due now",
    )
    rp.add_argument("ids", nargs="*", type=int, metavar="ID", help="delivery ids")
    rp.add_argument("--dead", action="store_true", help="every dead delivery")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor", description="News monitor: polls feeds, matches rules, sends alerts."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _config_arg(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(
        sub,
        "run",
        "monitor.cli.cycle:cmd_run",
        help="run the daemon (Ctrl-C / SIGTERM stops, SIGHUP reloads)",
    )
    p = _command(
        sub, "once", "monitor.cli.cycle:cmd_once", help="one cycle: poll feeds, process, deliver"
    )
    p.add_argument("--force", action="store_true", help="also poll feeds that are in backoff")
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar (default: only on a terminal)",
    )
    _command(
        sub,
        "check",
        "monitor.cli.check:cmd_check",
        help="validate the config: schema, rules, examples, channels, database",
    )
    p = _command(
        sub,
        "match",
        "monitor.cli.match:run",
        help="match articles (URLs, HTML, feed or JSON-lines files) against the rules",
        description="Match articles against the configured rules and show why they matched.",
    )
    p.add_argument(
        "--rule", action="append", default=None, metavar="NAME", help="only this rule (repeatable)"
    )
    _format_arg(p)
    p.add_argument(
        "--explain", action="store_true", help="also explain why the other rules did not match"
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="page or feed URL, .html/.txt file, feed file, or JSON-lines file ('-' for stdin)",
    )
    p = _command(
        sub,
        "backtest",
        "monitor.cli.backtest:cmd_backtest",
        help="run the rules over stored articles",
    )
    p.add_argument(
        "--since", default="7d", type=duration, help="how far back (e.g. 24h, 7d; default 7d)"
    )
    p.add_argument("--rule", action="append", help="only this rule (repeatable)")
    _format_arg(p)
    p = _command(
        sub, "status", "monitor.cli.ops:cmd_status", help="feeds' health, deliveries, alerts"
    )
    _format_arg(p)
    _deliveries_parsers(sub)
    _feeds_parsers(sub)
    p = sub.add_parser("notify", help="test a notification channel")
    _config_arg(p)
    nsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    tp = _command(
        nsub,
        "test",
        "monitor.cli.notify:cmd_notify_test",
        help="send a sample alert through a channel and show what the receiver answered",
    )
    tp.add_argument("channel", metavar="CHANNEL", help="a channel name from the config")
    p = sub.add_parser(
        "completion",
        help="print the shell completion script (eval it, or save it where your shell looks)",
    )
    p.set_defaults(handler="monitor.cli.completion:cmd_completion")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p = sub.add_parser("init", help="write a starter config (DIR/monitor.yaml)")
    p.set_defaults(handler="monitor.cli.init:cmd_init")
    p.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: .")
    p.add_argument("--force", action="store_true", help="overwrite an existing monitor.yaml")
    _learning_parsers(sub)
    return parser


def _handler(spec: str) -> Callable[[argparse.Namespace], int]:
    """Import the handler's module. The cyclic collector is paused meanwhile: imports make
    many objects and no garbage, and collecting during them cost 10-20% of `status`'s CPU.
    What they made is then frozen (kept out of every later collection) rather than left in
    the youngest generation: there the first collections of the command walked all of it
    again, 0.12 s of the 0.37 s a warm `once` of 200 feeds spends after its imports. The
    daemon collects and freezes once more when it starts (`Runtime.freeze`)."""
    module, _, name = spec.partition(":")
    enabled = gc.isenabled()
    gc.disable()
    try:
        fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return fn


def _report_config_error(exc: Any) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    print(f"{len(exc.problems)} problem(s) in the config", file=sys.stderr)
    return EXIT_ERROR


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core when numpy is imported, and they spin a
    while: 0.1 s of CPU of every `monitor check` of a rule with a trained model. The scorer
    and the story signatures multiply small arrays, which one thread does as fast. Set before
    any import of numpy, and inherited by the worker processes; a value the user set wins."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    _one_blas_thread()
    try:
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (monitor completion)
            from monitor.cli.completion import complete

            complete(parser)
        args = parser.parse_args(argv)
        code = _dispatch(args)
        sys.stdout.flush()  # here, so that a reader gone away is caught below, not at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return _handler(args.handler)(args)
    except ConfigError as exc:
        return _report_config_error(exc)
    except MonitorError as exc:
        # Errors raised on purpose (an unusable database, an unknown id): one line, no traceback.
        print(f"monitor {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        from monitor.store.health import fault_message  # a read-only, full, down database

        if (problem := fault_message(exc)) is None:
            raise
        print(f"monitor {args.command}: {problem}", file=sys.stderr)
        return EXIT_ERROR

"""`monitor check`: the config (schema, rules, examples, templates, channels) and the database.

Imports neither the fetcher nor the parsers: a check must be quick, and a test holds it to
that (no aiohttp, trafilatura, feedparser or apprise in its process).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from monitor.checks import compile_settings, network_warnings
from monitor.config import load_config


def describe_database(url: str) -> str:
    """`check_database`'s answer; for a plain SQLite file that does not exist yet, in a
    writable folder, without loading SQLAlchemy and the store (a third of `check`'s time)."""
    path = url.removeprefix("sqlite:///")
    if (
        path != url
        and path not in ("", ":memory:")
        and not path.startswith("file:")
        and "?" not in path
        and not os.path.lexists(path)
        and os.access(Path(path).absolute().parent, os.W_OK | os.X_OK)
    ):
        return f"{path} will be created on the first run"
    from monitor.store.engine import check_database  # every other case, and every error

    return check_database(url)


def check(path: str) -> int:
    checked = compile_settings(load_config(path))
    st = checked.settings
    for warning in network_warnings(st):
        print(warning, file=sys.stderr)
    database = describe_database(st.database)
    n_examples = sum(len(r.examples.match) + len(r.examples.no_match) for r in st.active_rules)
    print(
        f"{path}: ok ({len(st.feed_list)} feeds, {len(st.active_rules)} rules, "
        f"{n_examples} examples passed, {len(st.channels)} channels; database: {database})"
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    return check(args.config)

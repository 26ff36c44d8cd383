"""`monitor feedback ALERT_ID relevant|irrelevant [--note TEXT]`: an analyst's verdict on an
alert, stored as labelled data for `monitor evaluate` and `monitor train`."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from monitor.cli.evaluate import database_exists
    from monitor.config import load_config
    from monitor.errors import UnknownAlert
    from monitor.store import Store

    settings = load_config(args.config)
    if not database_exists(settings.database):
        print(
            f"error: no alert with id {args.alert_id}: the database {settings.database} "
            "does not exist yet",
            file=sys.stderr,
        )
        return 1
    store = Store(settings.database)
    try:
        fid = store.feedback.add(args.alert_id, args.verdict, note=args.note, author=args.author)
    except UnknownAlert:
        print(
            f"error: no alert with id {args.alert_id} in {settings.database} "
            "(`monitor status` lists recent alerts)",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()
    print(f"alert {args.alert_id}: {args.verdict} (feedback {fid})")
    return 0

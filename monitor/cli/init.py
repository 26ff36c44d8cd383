"""`monitor init [DIR]`: a starter config for a user who installed from a wheel.

Writes DIR/monitor.yaml (DIR defaults to the working folder): a few real news feeds, one rule
with examples, the console channel, a SQLite database beside the config. `monitor check`
accepts it as written (a test holds it to that). An existing file is never overwritten
unless `--force`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.cli import DEFAULT_CONFIG, EXIT_ERROR, EXIT_OK

STARTER = """\
# A starter config written by `monitor init`. Check it, then run it:
#   monitor check -c {config}
#   monitor once  -c {config}     # one pass (cron), or
#   monitor run   -c {config}     # the daemon
# Any key can be set from the environment: MONITOR_DATABASE=..., MONITOR_DEFAULTS__INTERVAL=5m.

database: sqlite:///{database}

defaults:
  interval: 10m          # how often each feed is polled
  extract: true          # fetch each new article's page and extract its text
  channels: [console]    # where alerts go when a rule names no channel

fetch:
  contact: https://example.org/contact   # your URL or e-mail: sites like to know who polls them

feeds:
  - {{url: "https://feeds.bbci.co.uk/news/world/rss.xml", name: BBC World}}
  - {{url: "https://www.theguardian.com/world/rss", name: Guardian World}}
  - {{url: "https://feeds.npr.org/1004/rss.xml", name: NPR World}}
  - {{url: "https://www.aljazeera.com/xml/rss/all.xml", name: Al Jazeera}}
  # Add more with `monitor feeds add URL` (a site's page is enough: its feed is found).

rules:
  - name: earthquakes
    description: Strong earthquakes anywhere.
    severity: high
    query: (earthquake* OR quake*) AND (magnitude OR tsunami OR killed OR dead)
    examples:
      match:
        - A magnitude 7.1 earthquake struck off the coast, and a tsunami warning was issued
      no_match:
        - The band's new album caused a quake in the charts

channels:
  console: {{type: console}}
  # An HTTP endpoint of yours (the URL can come from the environment):
  # hook: {{type: webhook, url: "${{WEBHOOK_URL}}"}}
"""


def starter_config(config: Path) -> str:
    """The starter config's text for a config file at `config` (its database beside it)."""
    return STARTER.format(config=config, database=config.parent.resolve() / "monitor.db")


def init(directory: str, *, force: bool = False) -> int:
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        print(f"monitor init: {folder} is not a folder", file=sys.stderr)
        return EXIT_ERROR
    config = folder / DEFAULT_CONFIG
    if config.exists() and not force:
        print(
            f"monitor init: {config} already exists (--force overwrites it)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(starter_config(config), encoding="utf-8")
    print(f"wrote {config}; next: monitor check -c {config}")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    return init(args.directory, force=args.force)

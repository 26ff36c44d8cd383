"""Where the tests' real data is: the sample in tests/data, or the whole corpora.

`DATA` (tests/data) is a small sample of the project's corpora, shipped with the repository in
the same layout as a corpora folder (feeds/real, feeds/feedparser-tests, articles/scrapinghub-aeb,
news/ag_news, seed); tests/data/SOURCES.md says where each file came from. Every test can use it.

The whole corpora (thousands of feeds, pages and news rows, about 24 MB) are not in the
repository. The sweeps over them are marked `corpora` and run only when the environment variable
MONITOR_CORPORA names a corpora folder (a relative path is taken from the repository root); when
it is not set, conftest.py deselects them and says so in one line at the end of the run.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ENV = "MONITOR_CORPORA"
#: Sub-folders a corpora folder has (tests/data has the same ones).
LAYOUT = (
    "feeds/real",
    "feeds/feedparser-tests",
    "articles/scrapinghub-aeb",
    "news/ag_news",
    "seed",
)


def corpora_root() -> Path | None:
    """The whole corpora folder MONITOR_CORPORA names, or None when it is not set."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def layout_problem(root: Path) -> str | None:
    """Why `root` is not a corpora folder (a missing sub-folder), or None when it is one."""
    if not root.is_dir():
        return f"{root} is not a folder"
    missing = [sub for sub in LAYOUT if not (root / sub).is_dir()]
    return f"{root} has no {', '.join(missing)}" if missing else None

"""Task runner: `nox -s fast` (or tests, lint, docs, bench); `nox --list` shows them all.

Each session installs the project with the extras it needs into its own virtualenv, so the
tasks behave the same on any machine. CI (`.ci/run`) runs the same commands without nox.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["fast", "lint", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def fast(session: nox.Session) -> None:
    """The fast tests: everything but the end-to-end tests marked slow."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", "-m", "not slow", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """All tests; the corpus sweeps too when MONITOR_CORPORA names a corpora folder."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy (strict), as CI runs them."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "monitor")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs site: the configuration reference is current, then mkdocs build --strict."""
    session.install("-e", ".[docs]")
    session.run("python", "docs/tools/config_reference.py", "--check")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark in bench/, each printing its table (`-- NAME` runs only bench_NAME.py)."""
    session.install("-e", ".[dev]")
    names = session.posargs or ["rules", "stories", "fetch", "delivery"]
    for name in names:
        session.run("python", f"bench/bench_{name}.py")

"""The project's habits hold: the task runner, pre-commit, the docs site's config, the licence."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = {"fast", "tests", "lint", "docs", "bench"}


def load_noxfile_with_a_recording_nox(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Import noxfile.py against a stand-in `nox` that records the sessions it declares."""
    sessions: dict[str, Any] = {}
    fake = types.ModuleType("nox")

    def session(**_kwargs: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def register(fn: Callable[..., None]) -> Callable[..., None]:
            sessions[fn.__name__] = fn
            return fn

        return register

    fake.session = session  # type: ignore[attr-defined]
    fake.Session = object  # type: ignore[attr-defined]
    fake.options = types.SimpleNamespace()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nox", fake)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return sessions


class RecordingSession:
    def __init__(self, posargs: list[str] | None = None) -> None:
        self.posargs = posargs or []
        self.commands: list[list[str]] = []

    def install(self, *args: str) -> None:
        self.commands.append(["pip", "install", *args])

    def run(self, *args: str) -> None:
        self.commands.append(list(args))


def test_the_noxfile_declares_every_session(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(load_noxfile_with_a_recording_nox(monkeypatch)) == SESSIONS


def test_the_nox_sessions_run_the_projects_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = load_noxfile_with_a_recording_nox(monkeypatch)
    ran: dict[str, list[list[str]]] = {}
    for name, fn in sessions.items():
        s = RecordingSession()
        fn(s)
        ran[name] = s.commands
    assert ["pytest", "-q", "-m", "not slow"] in ran["fast"]
    assert ["mypy", "monitor"] in ran["lint"]
    assert ["mkdocs", "build", "--strict"] in ran["docs"]
    scripts = [c[1] for c in ran["bench"] if c[0] == "python"]
    assert scripts and all((ROOT / s).is_file() for s in scripts)
    assert ["python", "docs/tools/config_reference.py", "--check"] in ran["docs"]
    assert (ROOT / "docs" / "tools" / "config_reference.py").is_file()


@pytest.mark.skipif(importlib.util.find_spec("nox") is None, reason="nox is not installed")
def test_nox_itself_lists_the_sessions() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nox", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name in SESSIONS:
        assert f" {name} -> " in out


def test_pre_commit_runs_ruff_ruff_format_and_mypy_with_installed_tools() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert set(hooks) == {"ruff", "ruff-format", "mypy"}
    for hook in hooks.values():
        assert hook["language"] == "system"
        assert shutil.which(hook["entry"].split()[0]), hook["entry"]
    assert hooks["ruff-format"]["entry"].startswith("ruff format")
    assert hooks["mypy"]["entry"] == "mypy monitor"


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["name"] == "material" and config["strict"] is True

    def files(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        return [f for value in node.values() for f in files(value)]

    nav = files(config["nav"])
    pages = sorted(
        str(p.relative_to(ROOT / "docs"))
        for p in (ROOT / "docs").rglob("*.md")
        if "tools" not in p.parts
    )
    assert sorted(nav) == pages


def test_the_docs_extra_and_ci_build_the_site() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    docs = " ".join(project["optional-dependencies"]["docs"])
    assert "mkdocs>=" in docs and "mkdocs-material>=" in docs
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "'.[dev,docs]'" in ci
    assert ci.index("mkdocs build --strict") < ci.index("python3 -m pytest")


def test_the_licence_is_the_mit_licence_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "MIT"}
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")
    assert "the news-monitor contributors" in licence
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in licence


def test_the_changelog_keeps_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "Keep a Changelog" in text
    assert text.index("## Unreleased") < text.index("## 0.1.0")

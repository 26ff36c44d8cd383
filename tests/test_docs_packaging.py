"""The deployment files hold what docs/operations.md says: systemd unit, compose.yaml, Dockerfile.

There is no Docker engine on the test machines, so compose.yaml is parsed (`docker compose
config` is not run) and the Dockerfile's layers are checked by reading it; the systemd unit is
checked by `systemd-analyze verify` itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "news-monitor.service"
INSTALLED = "/opt/news-monitor/bin/monitor run"


def render_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with its ExecStart pointed at this interpreter, so the binary exists."""
    text = UNIT.read_text(encoding="utf-8") if text is None else text
    assert INSTALLED in text
    path = tmp_path / "news-monitor.service"
    path.write_text(text.replace(INSTALLED, f"{sys.executable} -m monitor run"), encoding="utf-8")
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify(render_unit(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    # verify exits 0 on unknown keys and bad values too; it must have nothing to say.
    assert result.stdout + result.stderr == ""


@needs_systemd
def test_verify_would_catch_a_mistake_in_the_unit(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSystem=strcit")
    result = verify(render_unit(tmp_path, text))
    assert "strcit" in result.stdout + result.stderr


def test_the_unit_restarts_on_failure_and_is_hardened() -> None:
    s = unit_settings()
    assert s["Type"] == ["simple"]
    assert s["Restart"] == ["on-failure"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "StateDirectory": "news-monitor",
        "ReadWritePaths": "/var/lib/news-monitor",
    }.items():
        assert s[key] == [value], key
    database = next(v for v in s["Environment"] if v.startswith("MONITOR_DATABASE="))
    assert database == "MONITOR_DATABASE=sqlite:////var/lib/news-monitor/monitor.db"
    user = (ROOT / "deploy" / "news-monitor.sysusers").read_text(encoding="utf-8")
    assert re.search(r"^u news-monitor ", user, re.M)


# --------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_runs_postgres_and_two_monitor_replicas() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "monitor-1", "monitor-2"}
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("monitor-1", "monitor-2"):
        monitor = services[name]
        assert monitor["build"] == "."
        database = monitor["environment"]["MONITOR_DATABASE"]
        assert database.startswith("postgresql://") and "@postgres:5432/" in database
        assert monitor["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        listen = monitor["environment"]["MONITOR_WEB__LISTEN"]
        assert listen.endswith(":8080")


def test_the_compose_environment_is_a_config_the_monitor_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replicas' environment over the example config loads (a refused listen address or a
    misspelt variable would stop both containers at start)."""
    from monitor.checks import compile_settings
    from monitor.config import load_config

    env = compose()["services"]["monitor-1"]["environment"]
    for key, value in env.items():
        if key != "MONITOR_DATABASE":  # the compose network's PostgreSQL
            monkeypatch.setenv(key, str(value))
    settings = compile_settings(load_config(ROOT / "config" / "example.yaml")).settings
    assert settings.web is not None and settings.web.listen == "0.0.0.0:8080"
    assert settings.daemon.poll_on_start is False


def test_every_compose_service_has_a_healthcheck() -> None:
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("monitor-1", "monitor-2"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/healthz" in test


def test_compose_replicas_publish_different_ports() -> None:
    services = compose()["services"]
    ports = [services[n]["ports"][0] for n in ("monitor-1", "monitor-2")]
    assert len(set(ports)) == 2 and all(p.endswith(":8080") for p in ports)


# --------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_the_base_image_is_pinned_to_a_full_version() -> None:
    (base,) = [line.split()[1] for line in dockerfile() if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_the_dependency_layer_is_built_before_the_source_is_copied() -> None:
    lines = dockerfile()
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY ")]
    first_copy = lines[copies[0]]
    assert first_copy == "COPY pyproject.toml ./"
    deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    source = next(i for i, line in enumerate(lines) if line.startswith("COPY monitor"))
    assert copies[0] < deps < source
    assert all(i > deps for i in copies[1:]), "only pyproject.toml is copied before the deps"
    assert "pip install --no-deps ." in " ".join(lines[source:])


def test_the_dependency_layer_installs_what_pyproject_declares(tmp_path: Path) -> None:
    (run,) = [line for line in dockerfile() if "import tomllib" in line]
    code = re.search(r'python -c "(.*?)" >', run)
    assert code is not None
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", code.group(1).replace("\\n", "\n").replace("'\n'", "'\\n'")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert out == project["dependencies"] + project["optional-dependencies"]["postgres"]


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    lines = dockerfile()
    assert "USER monitor" in lines
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "/healthz" in health
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".git" in ignored and "*.db" in ignored

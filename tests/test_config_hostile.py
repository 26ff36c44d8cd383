"""Hostile configs: alias bombs are refused fast, includes stay in the config's folder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from monitor.checks import compile_settings
from monitor.cli import main
from monitor.config import load_config
from monitor.daemon import Runtime
from monitor.errors import ConfigError

# The "billion laughs" in YAML: 9 levels of 9 aliases each, 9^9 (387 million) values once
# expanded, written in under 1 KB.
BOMB = """\
database: sqlite:///{db}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_an_alias_bomb_is_refused_at_once_naming_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(BOMB.format(db=tmp_path / "m.db"))
    assert len(cfg.read_bytes()) < 1024
    started = time.perf_counter()
    [problem] = _problems(cfg)
    elapsed = time.perf_counter() - started
    # Expanding it takes minutes and gigabytes; refusing it takes milliseconds (a loaded
    # machine gets a generous bound, this is not a benchmark).
    assert elapsed < 2.0
    assert problem.startswith(f"{cfg}:2:")  # the first anchor that is reused
    assert "alias bomb" in problem


def test_monitor_check_refuses_a_bomb_in_an_included_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    bomb = tmp_path / "rules" / "bomb.yaml"
    bomb.write_text("rules:\n  - name: r\n    query: x\n" + BOMB.split("\n", 1)[1])
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text('include: ["rules/*.yaml"]\n')
    started = time.perf_counter()
    assert main(["check", "--config", str(cfg)]) != 0
    assert time.perf_counter() - started < 5.0
    err = capsys.readouterr().err
    assert f"{bomb}:4:" in err and "alias" in err


def test_a_reload_refuses_a_bomb_and_keeps_the_running_config(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path / 'm.db'}\n")
    rt = Runtime(compile_settings(load_config(cfg)), config_path=str(cfg))
    try:
        cfg.write_text(BOMB.format(db=tmp_path / "m.db"))
        started = time.perf_counter()
        assert rt.reload() is False
        assert time.perf_counter() - started < 2.0
    finally:
        asyncio.run(rt.aclose())


def test_a_recursive_alias_is_an_error_not_a_crash(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("feeds: &x\n  - *x\n")
    [problem] = _problems(cfg)
    assert problem.startswith(f"{cfg}:") and "refers to the value it is part of" in problem


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "defaults: {channels: &ch [console]}\nrules:\n"
        + "".join(f"  - {{name: r{i}, query: troops, channels: *ch}}\n" for i in range(2000))
    )
    settings = load_config(cfg)
    assert len(settings.rules) == 2000
    assert all(r.channels == ["console"] for r in settings.rules)

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


RULES = "rules:\n  - name: outside-rule\n    query: troops\n"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A config folder and, beside it, a folder the config has no business reading."""
    conf, other = tmp_path / "conf", tmp_path / "other"
    conf.mkdir()
    other.mkdir()
    (other / "rules.yaml").write_text(RULES)
    return conf, other


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_an_include_outside_the_config_folder_is_refused(
    layout: tuple[Path, Path], how: str
) -> None:
    conf, other = layout
    if how == "dotdot":
        pattern = "../other/*.yaml"
    elif how == "absolute":
        pattern = f"{other}/*.yaml"
    else:
        (conf / "linked").symlink_to(other, target_is_directory=True)
        pattern = "linked/*.yaml"
    cfg = conf / "monitor.yaml"
    cfg.write_text(f'database: sqlite:///{conf}/m.db\ninclude:\n  - "{pattern}"\n')
    [problem] = _problems(cfg)
    assert problem.startswith(f"{cfg}:3:")
    assert "outside the config's folder" in problem and "include_outside: true" in problem


def test_include_outside_is_an_explicit_opt_in(layout: tuple[Path, Path]) -> None:
    conf, other = layout
    cfg = conf / "monitor.yaml"
    cfg.write_text(f'include_outside: true\ninclude: ["../other/*.yaml", "{other}/*.yaml"]\n')
    with pytest.raises(ConfigError) as info:  # both patterns name the one file
        load_config(cfg)
    assert "duplicate rule name 'outside-rule'" in str(info.value)
    cfg.write_text('include_outside: true\ninclude: ["../other/*.yaml"]\n')
    assert [r.name for r in load_config(cfg).rules] == ["outside-rule"]


def test_includes_inside_the_folder_work_also_by_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(RULES)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f'include: ["{tmp_path}/rules/*.yaml"]\n')
    assert [r.name for r in load_config(cfg).rules] == ["outside-rule"]


def test_an_opml_file_outside_the_config_folder_is_refused(layout: tuple[Path, Path]) -> None:
    conf, other = layout
    (other / "feeds.opml").write_text(
        '<opml version="2.0"><body><outline xmlUrl="https://a.example.org/rss"/></body></opml>'
    )
    cfg = conf / "monitor.yaml"
    cfg.write_text("feeds:\n  - opml: ../other/feeds.opml\n")
    [problem] = _problems(cfg)
    assert problem.startswith(f"{cfg}:2:") and "outside the config's folder" in problem

"""Every fenced example in README.md, CONTRIBUTING.md and docs/ is executed: the docs cannot rot.

One mechanism for every page (urlwatch's test_filter_documentation.py is the model). A block is
checked by its language, or by a marker comment on the line just before its fence:

    <!-- example: KIND [id=NAME] [file=NAME] [under=KEY] [cwd=repo] -->

- ```yaml, unmarked or `config`: loaded with `load_config`, checked with `compile_settings`;
- `fragment under=KEY` (yaml): the same, after wrapping the block under `KEY:`;
- `rule-example` (yaml): `query` (and `entities`) compiled; each `match` text must match and
  each `no_match` text must not;
- `rule-error` (yaml): `query` must fail to compile with exactly `error` (and `hint`);
- `yaml`: parsed only (YAML that is not a monitor config, e.g. a compose file);
- ```json: parsed; ```python: executed;
- `run` (console): each `$ command` is run (`monitor` is this checkout's `python -m monitor`)
  and its output compared with the lines below it: `...` alone matches any lines, and inside
  a line any text;
- `skip REASON`: not run (a test checks that every such marker gives its reason);
- other languages: not run.

`file=NAME` also writes the block to NAME in the page's scratch folder, where its `run` blocks
run (`cwd=repo` runs them from the repository root). `id=NAME` gives a block the extra checks
at the end of this module. Config blocks see a `rules/extra.yaml` and a `feeds.opml` beside
them, and every `${VAR}` they name set to a placeholder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.checks import compile_settings
from monitor.config import ExampleDoc, Examples, RuleConfig, StorySettings, load_config
from monitor.notify import check_templates, sign, webhook_payload
from monitor.notify.templates import render, sample_message
from monitor.rules import RuleCompileError, RuleSpec, compile_rules
from monitor.rules.examples import check_examples
from monitor.stories import normalise_title

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
KINDS = {
    "config",
    "fragment",
    "rule-example",
    "rule-error",
    "yaml",
    "json",
    "python",
    "run",
    "skip",
}
DEFAULT_KIND = {"yaml": "config", "yml": "config", "json": "json", "python": "python"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<spec>.*?)\s*-->\s*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    body: str
    kind: str | None
    attrs: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_marker(spec: str) -> tuple[str | None, dict[str, str], str]:
    """`skip why` -> ("skip", {}, "why"); `fragment under=channels` -> ("fragment", {...}, "")."""
    kind: str | None = None
    attrs: dict[str, str] = {}
    words = spec.split()
    if words and "=" not in words[0]:
        kind = words.pop(0)
    if kind == "skip":
        return kind, attrs, " ".join(words)
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"marker {spec!r}: {word!r} is not key=value")
        attrs[key] = value
    return kind, attrs, ""


def read_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        marker = _MARKER.match(lines[start - 1]) if start else None
        kind, attrs, reason = parse_marker(marker["spec"]) if marker else (None, {}, "")
        lang = m["lang"].lower()
        kind = kind or DEFAULT_KIND.get(lang)
        text = "\n".join(body) + "\n"
        blocks.append(Block(page, start + 1, lang, text, kind, attrs, reason))
    return blocks


BLOCKS = [b for page in PAGES for b in read_blocks(page)]
CHECKED = [b for b in BLOCKS if b.kind is not None]


def by_kind(*kinds: str) -> list[Block]:
    return [b for b in CHECKED if b.kind in kinds]


def by_id(ident: str) -> Block:
    found = [b for b in BLOCKS if b.attrs.get("id") == ident]
    assert len(found) == 1, f"expected one block with id={ident}, found {len(found)}"
    return found[0]


# --------------------------------------------------------------------------- the markers


def test_every_marker_is_known_and_sits_on_a_fence() -> None:
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            m = _MARKER.match(line)
            if not m:
                continue
            where = f"{page.relative_to(ROOT)}:{n + 1}"
            kind, _attrs, reason = parse_marker(m["spec"])
            assert kind is None or kind in KINDS, f"{where}: unknown example kind {kind!r}"
            assert kind != "skip" or reason, f"{where}: a skip says why"
            assert n + 1 < len(lines) and _FENCE.match(lines[n + 1]), (
                f"{where}: an example marker must be on the line just before a fence"
            )


def test_a_marker_is_read_as_kind_and_attributes() -> None:
    assert parse_marker("fragment under=channels id=x") == (
        "fragment",
        {"under": "channels", "id": "x"},
        "",
    )
    assert parse_marker("skip needs a Docker engine") == ("skip", {}, "needs a Docker engine")
    assert parse_marker("file=monitor.yaml") == (None, {"file": "monitor.yaml"}, "")
    with pytest.raises(ValueError):
        parse_marker("run nonsense")


# --------------------------------------------------------------------------- configs


def _placeholder(var: str) -> str:
    return "https://hooks.example.org/x" if "URL" in var or "HOOK" in var else "s3cret"


def load_block_config(block: Block, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    text = block.body
    if block.kind == "fragment":
        under = block.attrs["under"]
        if not text.startswith((" ", "\t")):
            text = "".join(f"  {line}\n" for line in text.splitlines())
        text = f"{under}:\n{text}"
    for var in _VAR.findall(text):
        monkeypatch.setenv(var, _placeholder(var))
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "extra.yaml").write_text(
        "rules:\n  - {name: extra, query: 'title:recall*'}\n", encoding="utf-8"
    )
    (folder / "feeds.opml").write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="NPR" xmlUrl="https://feeds.npr.org/1004/rss.xml"/></body></opml>',
        encoding="utf-8",
    )
    path = folder / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return compile_settings(load_config(path))


@pytest.mark.parametrize("block", by_kind("config", "fragment"), ids=lambda b: b.name)
def test_config_example_loads_and_checks(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_block_config(block, tmp_path, monkeypatch)


@pytest.mark.parametrize("block", by_kind("yaml"), ids=lambda b: b.name)
def test_yaml_example_parses(block: Block) -> None:
    assert yaml.safe_load(block.body) is not None


@pytest.mark.parametrize("block", by_kind("json"), ids=lambda b: b.name)
def test_json_example_parses(block: Block) -> None:
    json.loads(block.body)


@pytest.mark.parametrize("block", by_kind("python"), ids=lambda b: b.name)
def test_python_example_runs(block: Block) -> None:
    exec(compile(block.body, block.name, "exec"), {"__name__": "docs_example"})


def test_every_example_left_unrun_says_why() -> None:
    """A block marked `skip` is not run; its marker must give the reader the reason."""
    unexplained = [b.name for b in by_kind("skip") if len(b.reason.split()) < 2]
    assert not unexplained, unexplained


# --------------------------------------------------------------------------- rules


def _example(item: Any) -> str | ExampleDoc:
    return item if isinstance(item, str) else ExampleDoc(**item)


@pytest.mark.parametrize("block", by_kind("rule-example"), ids=lambda b: b.name)
def test_rule_example_behaves(block: Block) -> None:
    data = yaml.safe_load(block.body)
    rule = RuleConfig(
        name="docs",
        query=data["query"],
        examples=Examples(
            match=[_example(x) for x in data.get("match", [])],
            no_match=[_example(x) for x in data.get("no_match", [])],
        ),
    )
    assert rule.examples.match or rule.examples.no_match, f"{block.name}: no texts to try"
    ruleset = compile_rules([RuleSpec(rule.name, rule.query)], data.get("entities", {}))
    failures = check_examples(ruleset, [rule])
    assert not failures, "\n\n".join(f"{f}\n{f.explanation}" for f in failures)


@pytest.mark.parametrize("block", by_kind("rule-error"), ids=lambda b: b.name)
def test_rule_error_is_raised_as_documented(block: Block) -> None:
    data = yaml.safe_load(block.body)
    with pytest.raises(RuleCompileError) as info:
        compile_rules([RuleSpec("docs", data["query"])], data.get("entities", {}))
    (error,) = info.value.errors
    assert error.message == data["error"]
    if "hint" in data:
        assert error.hint == data["hint"]


def test_the_rule_examples_show_every_form() -> None:
    queries = " ".join(yaml.safe_load(b.body)["query"] for b in by_kind("rule-example"))
    for form in ("*", '"', " OR ", " NOT ", "NEAR/", "ONEAR/", "title:", "entity:", "/"):
        assert form in queries, form
    assert len(by_kind("rule-error")) >= 4


# --------------------------------------------------------------------------- shell sessions


def commands(body: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, expected output lines) pairs."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line.rstrip())
    return out


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """doctest's ELLIPSIS: a line `...` matches any lines, `...` in a line any text."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(output_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    pattern = ".*".join(re.escape(part) for part in head.split("..."))
    return (
        bool(actual)
        and re.fullmatch(pattern, actual[0]) is not None
        and (output_matches(rest, actual[1:]))
    )


def test_output_matching_follows_ellipsis_rules() -> None:
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["ok (... examples)"], ["ok (38 examples)"])
    assert not output_matches(["a", "d"], ["a", "b", "d"])
    assert not output_matches(["ok (1 rules)"], ["ok (2 rules)"])


def run_command(command: str, cwd: Path, scratch: Path) -> tuple[int, list[str]]:
    argv = shlex.split(command)
    if argv[0] == "monitor":
        argv = [sys.executable, "-m", "monitor", *argv[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MONITOR_DATABASE"] = f"sqlite:///{scratch / 'docs-example.db'}"
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    return proc.returncode, [line.rstrip() for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("block", by_kind("run"), ids=lambda b: b.name)
def test_runnable_session_prints_what_the_page_shows(block: Block, tmp_path: Path) -> None:
    for other in read_blocks(block.page):
        if "file" in other.attrs:
            (tmp_path / other.attrs["file"]).write_text(other.body, encoding="utf-8")
    cwd = ROOT if block.attrs.get("cwd") == "repo" else tmp_path
    steps = commands(block.body)
    assert steps, f"{block.name}: a runnable block has `$ command` lines"
    for command, expected in steps:
        code, actual = run_command(command, cwd, tmp_path)
        assert code == 0, f"$ {command}\n" + "\n".join(actual)
        assert output_matches(expected, actual), (
            f"$ {command}\n--- the page shows\n"
            + "\n".join(expected)
            + "\n--- the command printed\n"
            + "\n".join(actual)
        )


# --------------------------------------------------------------------------- named blocks


def test_the_config_guide_has_every_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = load_block_config(by_id("guide"), tmp_path, monkeypatch)
    settings = checked.settings
    assert {"attacks-on-us-troops", "extra"} <= set(checked.ruleset.rule_names)
    assert "https://feeds.npr.org/1004/rss.xml" in [f.url for f in settings.feed_list]
    assert set(settings.channels) == {"desk", "mail", "hook", "console"}


def test_the_channel_examples_cover_every_channel_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_block_config(by_id("channels"), tmp_path, monkeypatch).settings
    assert {"console", "desk", "hook", "mail", "phone"} <= set(settings.channels)
    assert {c.type for c in settings.channels.values()} == {
        "console",
        "webhook",
        "slack",
        "email",
        "apprise",
    }
    for name, channel in settings.channels.items():
        assert check_templates(channel) == [], name


def test_the_json_template_example_renders_json() -> None:
    data = yaml.safe_load("channels:\n" + by_id("template-channels").body)
    body = json.loads(render("text", sample_message(), source=data["channels"]["hook"]["template"]))
    assert body["text"].startswith("[HIGH] Drone attack")


def test_the_payload_example_has_exactly_the_fields_we_send() -> None:
    example = json.loads(by_id("webhook-payload").body)
    assert set(example) == set(webhook_payload(sample_message()))


def test_the_verify_snippet_accepts_our_signature() -> None:
    namespace: dict[str, Any] = {}
    exec(by_id("verify").body, namespace)
    ts, body = str(int(time.time())), b'{"a":1}'
    headers = {"X-Monitor-Timestamp": ts, "X-Monitor-Signature": "v1=" + sign(b"k", ts, body)}
    assert namespace["verify"](b"k", headers, body)
    assert not namespace["verify"](b"other", headers, body)
    stale = str(int(time.time()) - 600)
    old = {"X-Monitor-Timestamp": stale, "X-Monitor-Signature": "v1=" + sign(b"k", stale, body)}
    assert not namespace["verify"](b"k", old, body)


def test_the_pages_hold_examples_of_every_kind() -> None:
    kinds = {b.kind for b in CHECKED}
    assert {"config", "fragment", "rule-example", "rule-error", "json", "python", "run"} <= kinds


def test_the_delivery_example_sets_volume_per_rule_and_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_block_config(by_id("delivery-practice"), tmp_path, monkeypatch).settings
    assert settings.channels["mail"].digest == "0 8 * * *"
    assert settings.channels["hook"].rate_limit == "30/min"
    assert settings.channels["desk"].min_severity == "high"
    [rule] = settings.active_rules
    assert rule.cooldown is not None and rule.cooldown.total_seconds() == 600


def test_the_delivery_session_shows_lines_as_the_cli_prints_them() -> None:
    body = by_id("delivery-session").body
    queue = re.findall(r"^Deliveries: .*$", body, flags=re.MULTILINE)
    assert len(queue) == 2
    for line in queue:
        assert re.fullmatch(
            r"Deliveries: \d+ pending \(oldest (-|\d+[smhd])\), \d+ dead, \d+ sent, "
            r"\d+ held for digests",
            line,
        ), line
    listed = re.findall(r"^#\d+ .*$", body, flags=re.MULTILINE)
    assert listed
    for line in listed:
        assert re.fullmatch(
            r"#\d+ +(dead|failed|pending|sent) +\S+ +\S+ +attempts \d+ +.+", line
        ), line


def test_the_health_example_reports_broken_feeds_to_one_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_block_config(by_id("health-channel"), tmp_path, monkeypatch).settings
    assert settings.fetch.broken_after.total_seconds() == 7200
    assert [n for n, c in settings.channels.items() if c.health] == ["ops"]


def test_the_stories_example_shows_the_defaults() -> None:
    documented = StorySettings.model_validate(
        yaml.safe_load(by_id("stories-defaults").body)["stories"]
    )
    assert documented == StorySettings()


def test_the_title_examples_of_the_stories_page_behave_as_described() -> None:
    page = (ROOT / "docs" / "stories.md").read_text(encoding="utf-8")
    title = "Blast kills three US soldiers at a base in northern Iraq"
    for suffix in ("- Reuters", "| AP News", "— The Associated Press"):
        assert suffix in page
        assert normalise_title(f"{title} {suffix}") == normalise_title(title)
    assert "`Rocket attack on base - 3 wounded` and `... - no casualties`" in page
    assert normalise_title("Rocket attack on base - 3 wounded") != normalise_title(
        "Rocket attack on base - no casualties"
    )

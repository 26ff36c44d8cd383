"""Specification of `monitor match`: inputs of every kind, text and JSON output, errors."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpora import DATA

from monitor.cli import main

GUARDIAN = DATA / "feeds/real/theguardian-us.rss"
CLIMATE_ID = (
    "https://www.theguardian.com/us-news/2018/jan/31/"
    "climate-change-threatens-us-military-bases-pentagon"
)
STADIA_HTML = (
    DATA / "articles/scrapinghub-aeb/html/"
    "042bb7b5fedab6eac7db576522b89b93904c237d344bcbe14a6a5ab7f7335856.html.gz"
)

CONFIG = """\
entities:
  us_forces: [US troops, US forces, US base*, US military site*]
rules:
  - name: troops
    query: entity:us_forces NEAR/4 attack*
  - name: climate
    query: title:"climate change" AND entity:us_forces
  - name: stadia
    query: Stadia NEAR/10 (Google OR Microsoft)
"""


def _run(*argv: str) -> int:
    return main(["match", *argv])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _jsonl(tmp_path: Path, *objs: dict[str, str]) -> Path:
    path = tmp_path / "articles.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def test_json_lines_input_prints_one_json_object_per_match(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = _jsonl(
        tmp_path,
        {"id": "a1", "title": "Attack on US troops", "body": "Rockets hit the base."},
        {"id": "a2", "title": "Quiet day", "url": "https://example.org/quiet"},
    )
    assert _run("--config", str(config), "--format", "json", str(articles)) == 0
    (line,) = capsys.readouterr().out.splitlines()
    obj = json.loads(line)
    assert (obj["id"], obj["rule"]) == ("a1", "troops")
    assert [(h["field"], h["text"], h["leaf"]) for h in obj["hits"]] == [
        ("title", "Attack", "attack*"),
        ("title", "US troops", "entity:us_forces"),
    ]


def test_article_without_id_is_named_by_its_url_then_by_file_and_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = _jsonl(
        tmp_path,
        {"url": "https://example.org/a", "body": "US forces under attack"},
        {"body": "US forces under attack"},
    )
    _run("--config", str(config), "--format", "json", str(articles))
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["https://example.org/a", f"{articles}:2"]


def test_stdin_is_read_for_a_dash(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps({"id": "s", "body": "an attack on US forces"}).encode() + b"\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert _run("--config", str(config), "--format", "json", "-") == 0
    assert json.loads(capsys.readouterr().out)["id"] == "s"


def test_text_output_shows_hits_and_the_highlighted_snippet(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = _jsonl(tmp_path, {"id": "a1", "body": "Militants attack US troops again."})
    _run("--config", str(config), str(articles))
    out = capsys.readouterr().out
    assert "a1: troops matched" in out
    assert "body[10:16] 'attack' ← attack*" in out
    assert "Militants **attack** **US troops** again." in out


def test_feed_file_entries_are_matched_by_their_id(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("--config", str(config), "--format", "json", str(GUARDIAN)) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["id"] == CLIMATE_ID
    assert json.loads(line)["rule"] == "climate"


def test_gzipped_feed_file_is_decompressed(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gz = tmp_path / "guardian.rss.gz"
    gz.write_bytes(gzip.compress(GUARDIAN.read_bytes()))
    _run("--config", str(config), "--format", "json", str(gz))
    assert json.loads(capsys.readouterr().out)["id"] == CLIMATE_ID


def test_html_file_is_extracted_and_matched(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "stadia.html.gz"
    shutil.copy(STADIA_HTML, page)
    assert _run("--config", str(config), "--format", "json", str(page)) == 0
    obj = json.loads(capsys.readouterr().out)
    assert (obj["id"], obj["rule"]) == (str(page), "stadia")


@pytest.fixture
def page_server() -> Iterator[str]:
    html = gzip.decompress(STADIA_HTML.read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/article"
    server.shutdown()
    server.server_close()


def test_url_is_fetched_extracted_and_named_by_its_url(
    config: Path, page_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("--config", str(config), "--format", "json", page_server) == 0
    obj = json.loads(capsys.readouterr().out)
    assert (obj["id"], obj["rule"]) == (page_server, "stadia")


def test_explain_says_why_the_other_rules_did_not_match(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = _jsonl(tmp_path, {"id": "a1", "body": "US troops arrive for an exercise"})
    assert _run("--config", str(config), "--rule", "troops", "--explain", str(articles)) == 0
    out = capsys.readouterr().out
    assert "a1: troops did not match" in out
    assert "✗ attack* — not found in title, summary, body" in out


def test_no_match_still_exits_zero(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("--config", str(config), str(_jsonl(tmp_path, {"body": "nothing"}))) == 0
    assert capsys.readouterr().out == ""


def test_broken_rule_is_reported_with_file_line_column_and_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("rules:\n  - name: bad\n    query: attack NEAR/ troops\n", encoding="utf-8")
    assert _run("--config", str(config), str(_jsonl(tmp_path, {"body": "x"}))) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{config}:3:19: rule 'bad': NEAR/ needs a number"
    assert err[1:3] == ["  attack NEAR/ troops", "         ^"]


def test_unknown_rule_name_is_an_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("--config", str(config), "--rule", "nope", str(_jsonl(tmp_path))) == 2
    assert "unknown rule 'nope'" in capsys.readouterr().err


def test_unreadable_input_is_an_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--config", str(config), "/nonexistent/file.jsonl") == 2
    assert "/nonexistent/file.jsonl" in capsys.readouterr().err


def test_plain_text_article_file_is_matched_with_its_first_line_as_title(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = DATA / "seed/us-troops-attacks-article.txt"
    shipped = Path(__file__).resolve().parents[1] / "config" / "example.yaml"
    assert _run("--config", str(shipped), "--format", "json", str(seed)) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rule"] for r in rows] == ["attacks-on-us-troops"]
    assert rows[0]["id"] == str(seed)
    assert any(h["field"] == "title" for h in rows[0]["hits"])

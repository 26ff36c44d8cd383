"""`monitor match --explain` on several inputs shows how the daemon would group them into
stories, and why each article joined its story."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpora import DATA

from monitor.cli import main

TRUTH = DATA / "articles" / "scrapinghub-aeb" / "ground-truth.json"


def test_wire_copies_group_into_one_story_and_others_stay_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = json.loads(TRUTH.read_text())
    bodies = [v["articleBody"] for v in truth.values() if len(v["articleBody"]) > 3000][:2]
    wire, other = bodies
    paragraphs = wire.split("\n")
    articles = [
        {
            "id": "outlet-a",
            "title": "Original headline of the wire story",
            "body": wire,
            "url": "https://a.example/news/1",
        },
        # The same wire copy elsewhere: another URL and headline, the last paragraph cut.
        {
            "id": "outlet-b",
            "title": "Another outlet's headline for it",
            "url": "https://b.example/world/2?utm_source=rss",
            "body": "\n".join(paragraphs[:-1]),
        },
        {
            "id": "outlet-c",
            "title": "A different story altogether today",
            "body": other,
            "url": "https://c.example/3",
        },
    ]
    src = tmp_path / "articles.jsonl"
    src.write_text("".join(json.dumps(a) + "\n" for a in articles))
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("rules:\n  - {name: anything, query: the}\n")
    assert main(["match", "--config", str(cfg), "--explain", "--format", "json", str(src)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stories = {r["id"]: r for r in rows if "story" in r}
    assert stories["outlet-a"]["story"] == stories["outlet-b"]["story"]
    assert stories["outlet-c"]["story"] != stories["outlet-a"]["story"]
    assert stories["outlet-a"]["why_grouped"] == "new"
    assert stories["outlet-b"]["why_grouped"].startswith("text~")

    assert main(["match", "--config", str(cfg), "--explain", str(src)]) == 0
    text = capsys.readouterr().out
    assert "stories: 3 articles in 2 stories" in text
    assert "story 1: outlet-b (joined: near-duplicate text" in text

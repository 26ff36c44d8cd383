"""`monitor evaluate` and `monitor feedback`: counts, misses with explanations, the labels
format (inline articles, CSV rows by reference, headers), bad input named by file and line,
stored verdicts as labelled data, the --min-f1 gate; accent folding in rules and text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.rules import RuleSpec, compile_rules
from monitor.rules.labels import LabelsError, read_labels
from monitor.store import Store

DATA = Path(__file__).parent / "data" / "matching"

RULE = """
rules:
  - name: troops
    query: (attack* OR bomb*) NEAR/5 ("US troops" OR "US soldiers")
    examples:
      match: ["Insurgents attacked US troops near Mosul"]
      no_match:
        - US troops arrive in Poland
        - A bomb hit a market far from the city where hundreds of US soldiers live
"""

# 2 on topic found, 1 on topic missed, 1 off topic found, 2 off topic not found.
LABELS = [
    {"id": "tp1", "title": "Bomb attack on US troops in Baghdad", "label": True},
    {"id": "tp2", "body": "Rebels attack US soldiers at a checkpoint.", "label": 1},
    {"id": "fn1", "title": "Two Marines killed in Anbar ambush", "label": True, "note": "marines"},
    {"id": "fp1", "body": "US troops trained to spot a bomb in a drill", "label": False},
    {"id": "tn1", "title": "Stocks rally on Wall Street", "label": 0},
    {"id": "tn2", "summary": "US troops arrive in Poland for exercises", "label": "irrelevant"},
]


def config(tmp: Path, extra: str = "") -> Path:
    path = tmp / "monitor.yaml"
    path.write_text(f"database: sqlite:///{tmp}/monitor.db\n{extra}{RULE}")
    return path


def labels_file(tmp: Path, rows: list[dict[str, object]], name: str = "labels.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_counts_figures_and_every_miss_with_its_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    labels = labels_file(tmp_path, LABELS)
    assert main(["evaluate", "--config", str(cfg), "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "rule 'troops' on labelled data (6 articles)" in out
    assert "precision 0.667  recall 0.667  F1 0.667   tp 2  fp 1  fn 1  tn 2" in out
    assert "false negatives (1):" in out and "false positives (1):" in out
    assert f"{labels}:3 [fn1] 'Two Marines killed in Anbar ambush'" in out
    assert "note: marines" in out
    assert "rule 'troops': did not match" in out  # the explanation of the miss
    assert f"{labels}:4 [fp1]" in out and "rule 'troops': matched" in out
    # The examples are reported apart.
    assert "rule 'troops' on its examples (3 articles)" in out
    assert "precision 1.000  recall 1.000  F1 1.000   tp 1  fp 0  fn 0  tn 2" in out

    assert main(["evaluate", "-c", str(cfg), "--labels", str(labels), "--format", "json"]) == 0
    first, examples = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["tp"], first["fp"], first["fn"], first["tn"]) == (2, 1, 1, 2)
    assert [m["id"] for m in first["false_negatives"]] == ["fn1"]
    assert [m["id"] for m in first["false_positives"]] == ["fp1"]
    assert "did not match" in first["false_negatives"][0]["explanation"]
    assert examples["data"] == "examples" and examples["total"] == 3


def test_min_f1_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, labels = config(tmp_path), labels_file(tmp_path, LABELS)
    assert main(["evaluate", "-c", str(cfg), "--labels", str(labels), "--min-f1", "0.6"]) == 0
    assert main(["evaluate", "-c", str(cfg), "--labels", str(labels), "--min-f1", "0.7"]) == 1
    assert "F1 0.667 on labels is below --min-f1 0.7" in capsys.readouterr().err


def test_a_malformed_line_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "ok", "label": true}\n\n# a comment\n{"title": "x", "label": tru\n')
    assert main(["evaluate", "-c", str(cfg), "--labels", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4: not a JSON object" in err and "Traceback" not in err
    for line, message in [
        ('{"title": "x"}', "missing 'label'"),
        ('{"title": "x", "label": "maybe"}', "label must be true/false"),
        ('{"label": 1}', "no text"),
        ('{"row": 3, "label": 1}', "a 'row' needs a CSV"),
        ('{"csv": "agnews_rows.csv", "row": 50, "label": 1}', "row 50 is past the end"),
        ('{"csv": "missing.csv", "row": 0, "label": 1}', "cannot read"),
        ("[1, 2]", "each line must be a JSON object"),
    ]:
        path = tmp_path / "one.jsonl"
        path.write_text('{"title": "fine", "label": 0}\n' + line + "\n")
        if "agnews" in line:
            (tmp_path / "agnews_rows.csv").write_bytes((DATA / "agnews_rows.csv").read_bytes())
        with pytest.raises(LabelsError, match=message) as exc:
            read_labels(path)
        assert str(exc.value).startswith(f"{path}:2: ")


def test_csv_rows_by_reference_with_and_without_a_header(tmp_path: Path) -> None:
    docs = read_labels(DATA / "troops_labels.jsonl")
    assert len(docs) == 50 and sum(d.label for d in docs) == 16
    # train_subset.csv's header: `text` is the article's text, the other columns are ignored.
    assert docs[0].fields["body"].startswith("Falluja advance encounters")
    assert docs[0].fields["title"] == "" and docs[0].fields["url"] == ""
    assert docs[0].ident == "agnews_rows.csv#0" and docs[0].source.endswith("jsonl:2")
    assert docs[0].note.startswith("borderline")
    # A headerless CSV in AG News' test layout (class_index, title, description).
    (tmp_path / "ag.csv").write_text(
        '"1","Rocket attack on US base","Militants fired rockets at a US base."\n'
        '"3","Oil prices rise","Crude climbed on Monday."\n'
    )
    (tmp_path / "other.csv").write_text("a;b\n")
    path = labels_file(
        tmp_path,
        [
            {"csv": "ag.csv", "row": 0, "label": 1},
            {"csv": "ag.csv", "row": 1, "label": 0, "rule": "troops"},
            {"csv": "other.csv", "columns": ["x", "title"]},
            {"row": 0, "label": 0},
        ],
    )
    ag0, ag1, other = read_labels(path)
    assert ag0.fields["title"] == "Rocket attack on US base"
    assert ag0.fields["summary"] == "Militants fired rockets at a US base." and ag0.label
    assert ag1.rule == "troops" and not ag1.label
    assert other.fields["title"] == "" and other.ident == "other.csv#0"
    (tmp_path / "nohead.csv").write_text("a,b\nc,d\n")
    bad = labels_file(tmp_path, [{"csv": "nohead.csv", "row": 0, "label": 1}], "bad.jsonl")
    with pytest.raises(LabelsError, match="no header naming its columns"):
        read_labels(bad)


def test_the_dev_labels_form_works_with_csv_given_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (DATA / "troops_labels.jsonl").read_text().splitlines()[1:]  # no {"csv"} line
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = config(tmp_path)
    args = ["evaluate", "-c", str(cfg), "--labels", str(path), "--format", "json"]
    assert main([*args, "--csv", str(DATA / "agnews_rows.csv")]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["total"] == 50 and report["tp"] + report["fn"] == 16


def _alert(store: Store, title: str) -> int:
    from sqlalchemy import select

    from monitor.store import FeedSpec
    from monitor.store import schema as sc
    from tests.test_store_feedback import alert

    store.feeds.sync([FeedSpec("http://news.example/feed", "News", False)], 1.0)
    feed = store.feeds.get("http://news.example/feed")
    assert feed is not None
    alert_id = alert(store, feed.id, title.replace(" ", "-"), title, "troops")
    with store.engine.connect() as conn:
        assert conn.execute(select(sc.alerts.c.rule).where(sc.alerts.c.id == alert_id)).scalar()
    return alert_id


def test_feedback_through_the_cli_changes_the_next_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    store = Store(f"sqlite:///{tmp_path}/monitor.db")
    alert_id = _alert(store, "Bomb attack on US troops was a training film")
    store.close()
    args = ["evaluate", "-c", str(cfg), "--format", "json"]
    assert main(args) == 0
    [examples] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert examples["data"] == "examples"  # no verdicts yet: the examples only

    assert main(["feedback", "-c", str(cfg), str(alert_id), "irrelevant", "--note", "film"]) == 0
    assert f"alert {alert_id}: irrelevant" in capsys.readouterr().out
    assert main(args) == 0  # --labels left out: the verdicts are the labelled data
    labelled, _ = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (labelled["tp"], labelled["fp"], labelled["fn"], labelled["tn"]) == (0, 1, 0, 0)
    assert labelled["false_positives"][0]["source"] == f"feedback on alert {alert_id}"
    assert labelled["false_positives"][0]["note"] == "film"

    # A later verdict on the same alert replaces the earlier one.
    assert main(["feedback", "-c", str(cfg), str(alert_id), "relevant"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    labelled = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (labelled["tp"], labelled["fp"]) == (1, 0)


def test_feedback_for_an_unknown_alert_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    assert main(["feedback", "-c", str(cfg), "41", "relevant"]) == 1  # no database yet
    assert "no alert with id 41" in capsys.readouterr().err
    assert not (tmp_path / "monitor.db").exists()
    Store(f"sqlite:///{tmp_path}/monitor.db").close()
    assert main(["feedback", "-c", str(cfg), "41", "relevant"]) == 1
    err = capsys.readouterr().err
    assert "no alert with id 41" in err and "Traceback" not in err


def test_accents_fold_in_rules_and_text_alike_unless_switched_off(tmp_path: Path) -> None:
    rules = [RuleSpec("cafe", "cafe NEAR/3 bomb*"), RuleSpec("irak", '"Irák" AND attack*')]
    ruleset = compile_rules(rules)
    assert [m.rule for m in ruleset.match({"body": "A bomb outside the Café de Flore"})] == ["cafe"]
    hit = ruleset.match({"title": "Attack in IRAK, Irak and Iraq"})
    assert [m.rule for m in hit] == ["irak"]
    assert {h.field for h in hit[0].hits} == {"title"}
    off = compile_rules(rules, fold_accents=False)
    assert off.match({"body": "A bomb outside the Café de Flore"}) == []
    assert off.match({"body": "A bomb outside the cafe"})[0].rule == "cafe"
    compile_rules([])  # back to the default for the other tests

    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "fold_accents: false\nrules:\n  - name: cafe\n    query: cafe\n"
        "    examples: {no_match: ['Café crème']}\n"
    )
    assert main(["check", "--config", str(cfg)]) == 0
    cfg.write_text(
        "rules:\n  - name: cafe\n    query: cafe\n    examples: {match: ['Café crème']}\n"
    )
    assert main(["check", "--config", str(cfg)]) == 0


def test_every_channel_shows_the_alert_id_a_verdict_needs() -> None:
    from monitor.notify.slack import slack_payload
    from monitor.notify.templates import render, sample_message
    from monitor.notify.webhook import webhook_payload

    msg = sample_message()
    msg.alert_id = 4711
    text = render("text", msg, default="message.txt.j2")
    assert "alert:     4711 (verdict: monitor feedback 4711 relevant|irrelevant)" in text
    assert "alert 4711" in render("html", msg, default="message.html.j2")
    assert "alert 4711" in json.dumps(slack_payload(msg))
    assert webhook_payload(msg)["alert_id"] == 4711
    msg.alert_id = None  # a message without an alert (a health event) shows none
    assert "alert:" not in render("text", msg, default="message.txt.j2")

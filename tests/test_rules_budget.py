"""The regex budget of an article: bounded regex time, reasons kept, slow rules named once.

`(a|aa)+$` on 'aaaa…!' backtracks exponentially (the `regex` package optimises the textbook
`(a+)+$` away): each such regex gives up after its own 50 ms
per field; the article's budget bounds the sum over every rule, and matching runs off the
event loop with the GIL released.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from monitor.rules import RuleSpec, compile_rules
from monitor.rules.budget import ArticleBudget, RuleBudgetStats, poll_budget, run_matching

KILLER = "a" * 60 + "!"


@pytest.fixture(autouse=True)
def fresh_stats() -> Iterator[None]:
    RuleBudgetStats.reset()
    yield
    RuleBudgetStats.reset()


def _killers(n: int) -> list[RuleSpec]:
    return [RuleSpec(f"slow-{i}", "title:/(a|aa)+$/") for i in range(n)]


def test_once_the_budget_is_spent_the_remaining_regexes_are_not_run() -> None:
    ruleset = compile_rules(_killers(10))
    budget = ArticleBudget(0.12)
    assert ruleset.match({"title": KILLER}, budget=budget) == []
    reasons = list(budget.abandoned.values())
    assert len(reasons) == 10
    # At most three run: two give up on their own 50 ms, a third (if any time is left) is cut
    # short by the budget; the others are never started.
    skipped = "not run: the article's 120 ms regex budget ran out"
    assert sum(r.startswith(skipped) for r in reasons) >= 7
    ran = [r for r in reasons if not r.startswith(skipped)]
    assert all(r.startswith(("gave up after 50 ms", "stopped after")) for r in ran), ran


def test_the_rules_that_spent_the_budget_are_counted_not_the_ones_skipped() -> None:
    ruleset = compile_rules(_killers(10))
    for _ in range(3):
        ruleset.match({"title": KILLER}, budget=0.12)
    counts = RuleBudgetStats.snapshot()
    assert counts["slow-0"] == 3
    assert "slow-9" not in counts  # never ran: not its fault


def test_a_rule_with_another_way_to_match_still_matches_without_its_regex() -> None:
    ruleset = compile_rules([*_killers(4), RuleSpec("either", "breaking OR title:/(a|aa)+$/")])
    budget = ArticleBudget(0.1)
    fields = {"title": KILLER, "summary": "breaking news"}
    assert [m.rule for m in ruleset.match(fields, budget=budget)] == ["either"]


def test_the_explanation_says_why_a_regex_counted_as_not_matched() -> None:
    ruleset = compile_rules([RuleSpec("slow", "title:/(a|aa)+$/ OR troops")])
    text = ruleset.explain({"title": KILLER}, "slow", budget=0.03)
    assert "did not match" in text
    assert "regex budget ran out" in text
    text = ruleset.explain({"title": KILLER}, "slow")
    assert "gave up after 50 ms on this field" in text


def test_a_slow_rule_is_logged_once_per_period_not_once_per_article(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ruleset = compile_rules(_killers(1))
    with caplog.at_level(logging.WARNING, logger="monitor.rules.budget"):
        for _ in range(5):
            ruleset.match({"title": KILLER}, budget=0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "'slow-0'" in lines[0] and "200 ms per article" in lines[0]
    assert RuleBudgetStats.snapshot() == {"slow-0": 5}


def test_the_next_log_line_counts_the_articles_since_the_last() -> None:
    RuleBudgetStats.record("r", 0.2, now=0.0)
    for t in (1.0, 2.0, 3.0):
        RuleBudgetStats.record("r", 0.2, now=t)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("monitor.rules.budget")
    logger.addHandler(handler)
    try:
        RuleBudgetStats.record("r", 0.2, now=400.0)
    finally:
        logger.removeHandler(handler)
    assert len(logged) == 1
    assert "on 4 article(s) in the last 400 s" in logged[0]
    assert RuleBudgetStats.snapshot() == {"r": 5}


async def test_matching_in_a_thread_leaves_the_event_loop_free() -> None:
    # About a second of catastrophic backtracking (20 rules x 50 ms): the loop must keep
    # ticking every few milliseconds meanwhile, because the regex releases the GIL.
    ruleset = compile_rules(_killers(20))
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    await asyncio.to_thread(ruleset.match, {"title": KILLER}, budget=5.0)
    took = time.monotonic() - started
    task.cancel()
    assert took > 0.5  # the regexes did run
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.2f} s"


async def test_a_poll_budget_bounds_the_regex_time_of_all_its_articles() -> None:
    # 40 articles that would each spend their 200 ms: the poll stops regexes after 0.3 s.
    ruleset = compile_rules([*_killers(4), RuleSpec("calm", "calm")])
    fields = {"title": KILLER, "summary": "calm words"}

    async def poll() -> tuple[list[list[str]], ArticleBudget]:
        poll_budget(0.3)
        out = []
        for _ in range(40):
            matches = await run_matching(ruleset.match, fields, budget=0.2)
            out.append([m.rule for m in matches])
        last = ArticleBudget(0.2)  # made in the poll's context: it sees the spent budget
        return out, last

    results, last = await asyncio.create_task(poll())
    assert results == [["calm"]] * 40  # every article still matched its other rules
    assert last.poll is not None and last.poll.left() <= 0
    text = ruleset.explain(fields, "slow-0", budget=last)
    assert "the poll's 0.3 s regex budget ran out" in text


async def test_matching_runs_in_its_own_threads() -> None:
    import threading

    name = await run_matching(lambda: threading.current_thread().name)
    assert name.startswith("rules")

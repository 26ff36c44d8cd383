"""When a rule's match becomes an alert (`monitor.alerting.decide`): pure decisions.

The store tests (test_store.py, test_delivery_routing.py) prove the store writes what these
decisions say; here each rule of the decision on its own, in microseconds.
"""

from __future__ import annotations

import dataclasses

from monitor.alerting import Action, Replay, Route, StoryState, decide

NOW = 1_800_000_000.0
ROUTE = Route(rule="r", severity="high", channels=[("hook", False), ("mail", True)])


def test_a_first_match_alerts_every_channel_of_the_route() -> None:
    decision = decide(ROUTE, StoryState(now=NOW))
    assert decision.action is Action.ALERT and decision.stored_status == "sent"
    assert decision.channels == [("hook", False), ("mail", True)]


def test_a_story_already_alerted_is_not_alerted_again() -> None:
    decision = decide(ROUTE, StoryState(now=NOW, previous="sent", new_outlet=True))
    assert decision.action is Action.NONE and decision.stored_status is None


def test_a_new_outlet_sends_an_update_when_the_rule_wants_updates() -> None:
    route = dataclasses.replace(ROUTE, updates=True)
    decision = decide(route, StoryState(now=NOW, previous="sent", new_outlet=True))
    assert decision.action is Action.UPDATE and decision.channels == ROUTE.channels


def test_the_same_outlet_again_sends_no_update() -> None:
    route = dataclasses.replace(ROUTE, updates=True)
    assert decide(route, StoryState(now=NOW, previous="sent")).action is Action.NONE


def test_a_suppressed_story_gets_no_update() -> None:
    route = dataclasses.replace(ROUTE, updates=True)
    story = StoryState(now=NOW, previous="suppressed", new_outlet=True)
    assert decide(route, story).action is Action.NONE


def test_fewer_outlets_than_min_sources_waits() -> None:
    route = dataclasses.replace(ROUTE, min_sources=2)
    decision = decide(route, StoryState(now=NOW, outlets=1))
    assert decision.action is Action.WAIT and decision.stored_status == "waiting"
    assert decision.channels == [] and "1 of 2" in decision.reason


def test_a_waiting_story_is_released_when_the_outlets_reach_min_sources() -> None:
    route = dataclasses.replace(ROUTE, min_sources=2)
    decision = decide(route, StoryState(now=NOW, previous="waiting", outlets=2))
    assert decision.action is Action.ALERT and decision.stored_status == "sent"


def test_a_waiting_story_still_short_of_sources_changes_nothing() -> None:
    route = dataclasses.replace(ROUTE, min_sources=3)
    decision = decide(route, StoryState(now=NOW, previous="waiting", outlets=2))
    assert decision.action is Action.NONE


def test_an_alert_within_the_cooldown_is_suppressed() -> None:
    route = dataclasses.replace(ROUTE, cooldown=3600.0)
    decision = decide(route, StoryState(now=NOW, last_sent_at=NOW - 600))
    assert decision.action is Action.SUPPRESS and decision.stored_status == "suppressed"
    assert "600 s ago" in decision.reason


def test_an_alert_after_the_cooldown_is_sent() -> None:
    route = dataclasses.replace(ROUTE, cooldown=3600.0)
    assert decide(route, StoryState(now=NOW, last_sent_at=NOW - 3601)).action is Action.ALERT


def test_min_sources_is_checked_before_the_cooldown() -> None:
    route = dataclasses.replace(ROUTE, cooldown=3600.0, min_sources=2)
    story = StoryState(now=NOW, outlets=1, last_sent_at=NOW - 10)
    assert decide(route, story).action is Action.WAIT


def test_a_released_story_in_cooldown_keeps_waiting() -> None:
    route = dataclasses.replace(ROUTE, cooldown=3600.0, min_sources=2)
    story = StoryState(now=NOW, previous="waiting", outlets=2, last_sent_at=NOW - 10)
    assert decide(route, story).action is Action.NONE


# --------------------------------------------------------------------------- replay (backtest)


def test_replay_waits_for_a_second_outlet_and_releases_on_an_article_that_does_not_match() -> None:
    route = dataclasses.replace(ROUTE, min_sources=2, within=3600.0)
    replay = Replay({"r": route})
    first = replay.article(story_id=7, feed_id=1, fetched_at=NOW, matched=["r"])
    same_feed = replay.article(story_id=7, feed_id=1, fetched_at=NOW + 60, matched=["r"])
    other = replay.article(story_id=7, feed_id=2, fetched_at=NOW + 120, matched=[])
    assert [d.action for _, d in first] == [Action.WAIT]
    assert [d.action for _, d in same_feed] == [Action.NONE]
    assert [(r, d.action) for r, d in other] == [("r", Action.ALERT)]


def test_replay_counts_only_outlets_within_the_window() -> None:
    route = dataclasses.replace(ROUTE, min_sources=2, within=3600.0)
    replay = Replay({"r": route})
    replay.article(story_id=7, feed_id=1, fetched_at=NOW, matched=["r"])
    late = replay.article(story_id=7, feed_id=2, fetched_at=NOW + 7200, matched=["r"])
    assert [d.action for _, d in late] == [Action.NONE]  # still waiting: feed 1 is too old


def test_replay_applies_the_cooldown_across_stories_and_sends_updates() -> None:
    route = dataclasses.replace(ROUTE, cooldown=3600.0, updates=True)
    replay = Replay({"r": route})
    [(_, a)] = replay.article(story_id=1, feed_id=1, fetched_at=NOW, matched=["r"])
    [(_, b)] = replay.article(story_id=2, feed_id=1, fetched_at=NOW + 60, matched=["r"])
    [(_, c)] = replay.article(story_id=1, feed_id=2, fetched_at=NOW + 120, matched=["r"])
    assert (a.action, b.action, c.action) == (Action.ALERT, Action.SUPPRESS, Action.UPDATE)

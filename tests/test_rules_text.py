"""Specification of the normaliser shared by rules and article text (monitor.rules.text)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from monitor.rules import tokenize
from monitor.rules.text import fold, set_fold_accents


def test_case_and_compatibility_forms_fold_to_one_form() -> None:
    assert tokenize("ＵＮＩＴＥＤ Straße").norms == ["united", "strasse"]


def test_us_with_and_without_dots_is_one_token() -> None:
    assert tokenize("U.S. U.S US us").norms == ["us", "us", "us", "us"]


def test_possessive_s_is_dropped_with_straight_or_curly_apostrophe() -> None:
    assert tokenize("Israel's Israel’s").norms == ["israel", "israel"]


def test_apostrophes_inside_words_are_dropped() -> None:
    assert tokenize("O’Brien don't").norms == ["obrien", "dont"]


def test_hyphenated_word_gives_parts_and_a_joined_alias() -> None:
    toks = tokenize("an e-mail scam")
    assert toks.norms == ["an", "e", "mail", "scam"]
    assert toks.aliases == {"email": [(1, 2)]}


def test_spans_point_into_the_original_text() -> None:
    text = "Blinken visits Iraq as attacks on U.S. troops continue"
    toks = tokenize(text)
    i = toks.norms.index("us")
    assert text[toks.starts[i] : toks.ends[i]] == "U.S."


def test_spans_stay_exact_in_non_ascii_text() -> None:
    text = "Café “attacks” on U.S. troops — Société"
    toks = tokenize(text)
    pieces = [text[s:e] for s, e in zip(toks.starts, toks.ends, strict=True)]
    assert pieces == ["Café", "attacks", "on", "U.S.", "troops", "Société"]


def test_decomposed_accents_stay_inside_the_word() -> None:
    assert tokenize("cafe\u0301 bar").norms == ["cafe", "bar"]  # folded by default
    with accents_kept():
        assert tokenize("cafe\u0301 bar").norms == ["café", "bar"]


def test_fold_is_nfkc_and_casefold() -> None:
    assert fold("ﬁle ÉTÉ") == "file ete"
    with accents_kept():
        assert fold("ﬁle ÉTÉ") == "file été"


def test_accents_of_latin_letters_fold_and_other_scripts_keep_theirs() -> None:
    text = "Café in Irák, Łódź, Ærø; Москва й; Ελλάδα"
    toks = tokenize(text)
    assert toks.norms == ["cafe", "in", "irak", "lodz", "aero", "москва", "й", "ελλάδα"]
    pieces = [text[s:e] for s, e in zip(toks.starts, toks.ends, strict=True)]
    assert pieces[:3] == ["Café", "in", "Irák"]  # spans still in the original text


@contextlib.contextmanager
def accents_kept() -> Iterator[None]:
    set_fold_accents(False)
    try:
        yield
    finally:
        set_fold_accents(True)


def test_typographic_quotes_and_dashes_keep_spans_exact() -> None:
    text = "“Attacks” on U.S. troops — Israel’s onslaught…"
    toks = tokenize(text)
    assert toks.norms == ["attacks", "on", "us", "troops", "israel", "onslaught"]
    pieces = [text[s:e] for s, e in zip(toks.starts, toks.ends, strict=True)]
    assert pieces == ["Attacks", "on", "U.S.", "troops", "Israel’s", "onslaught"]


def test_hyphen_parts_have_their_own_spans() -> None:
    text = "a US-led drone-strike"
    toks = tokenize(text)
    pieces = [text[s:e] for s, e in zip(toks.starts, toks.ends, strict=True)]
    assert pieces == ["a", "US", "led", "drone", "strike"]

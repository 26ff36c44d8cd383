"""monitor.extract on real news pages (Zyte article-extraction benchmark) and edge cases."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from monitor.extract import MAX_HTML_BYTES, Extracted, extract_article

AEB = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "articles" / "scrapinghub-aeb"

pytestmark = pytest.mark.skipif(not AEB.is_dir(), reason=f"corpus not found at {AEB}")


def _tokens(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def _f1(predicted: str, truth: str) -> float:
    # The benchmark's own measure: overlap of word multisets.
    p, t = _tokens(predicted), _tokens(truth)
    common = sum((p & t).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(t.values())
    return 2 * precision * recall / (precision + recall)


def _page(key: str) -> bytes:
    return gzip.decompress((AEB / "html" / f"{key}.html.gz").read_bytes())


def _sample(n: int) -> list[tuple[str, dict[str, str]]]:
    truth: dict[str, dict[str, str]] = json.loads((AEB / "ground-truth.json").read_text())
    return sorted(truth.items())[:n]


def test_article_text_matches_the_ground_truth_on_real_pages() -> None:
    scores = []
    for key, expected in _sample(12):
        result = extract_article(_page(key), expected["url"])
        scores.append(_f1(result.text if result else "", expected["articleBody"]))
    assert sum(scores) / len(scores) > 0.8, scores


def test_metadata_comes_from_the_page() -> None:
    key, expected = _sample(1)[0]
    result = extract_article(_page(key), "https://mirror.example.org/copy")
    assert isinstance(result, Extracted)
    assert result.title and "Google Stadia" in result.title
    assert result.author == "Sarah E Needleman"
    assert result.date == "2019-11-19"
    assert result.canonical_url == expected["url"]


def test_a_relative_canonical_link_is_made_absolute() -> None:
    paragraph = "<p>" + "The council voted on the new budget late on Tuesday night. " * 20 + "</p>"
    page = (
        '<html><head><title>Budget</title><link rel="canonical" href="/news/budget"></head>'
        f"<body><article><h1>Budget passes</h1>{paragraph}{paragraph}</article></body></html>"
    )
    result = extract_article(page, "https://city.example.org/news/budget?utm=x")
    assert result is not None
    assert result.canonical_url == "https://city.example.org/news/budget"


def test_a_page_without_article_text_gives_none() -> None:
    assert extract_article(b"<html><body><nav>Home</nav></body></html>", "https://e.org/") is None


def test_an_empty_page_gives_none() -> None:
    assert extract_article(b"", "https://e.org/") is None


def test_an_oversized_page_is_cut_not_refused() -> None:
    paragraph = b"<p>" + b"Officials confirmed the evacuation of the coastal town. " * 20 + b"</p>"
    page = b"<html><body><article>" + paragraph * (MAX_HTML_BYTES // len(paragraph) + 100)
    result = extract_article(page, "https://e.org/a")
    assert result is not None
    assert "evacuation" in result.text

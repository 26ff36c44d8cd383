"""Control characters out of text that came from a feed or a page, once, where it enters.

Feed and page text ends up on terminals (the console channel, `monitor status`, `monitor
match`), in log files and in every channel. An ESC sequence in a title can rewrite a terminal
or forge a log line; a C1 control (U+009B is a one-character CSI on many terminals) or a bidi
override (U+202E makes "gpj.exe" read "exe.jpg") misleads a reader. `monitor.feeds` and
`monitor.extract` pass every field through here, so no consumer needs to escape anything.

- `clean_line` (titles, authors, tags, ids): ESC sequences and every C0/C1 control and DEL
  removed (tabs and newlines become spaces), and the bidi embeddings, overrides and isolates
  (U+202A-U+202E, U+2066-U+2069) dropped.
- `clean_text` (page text): the same, but newlines and tabs are kept, and so are the bidi
  controls, which right-to-left articles may use between paragraphs.
- `clean_url`: the same characters percent-encoded, so the link still leads where it did.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other string controls (DCS, SOS, PM,
# APC up to ST), and two-character escapes: each removed whole, so no "[31m" is left behind.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -~]?"
)
_C0 = "".join(map(chr, range(0x20)))
_C1 = "".join(map(chr, range(0x7F, 0xA0)))  # DEL and C1
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

_LINE_BAD = re.compile(f"[{re.escape(_C0 + _C1 + _BIDI)}]")
_TEXT_BAD = re.compile(f"[{re.escape(_C0.replace(chr(9), '').replace(chr(10), '') + _C1)}]")
_URL_BAD = re.compile(f"[{re.escape(_C0 + _C1 + _BIDI)} ]")

_LINE_TABLE = {ord(c): None for c in _C0 + _C1 + _BIDI} | {9: " ", 10: " ", 13: " "}
_TEXT_TABLE = {ord(c): None for c in _C0 + _C1 if c not in "\t\n\r"} | {13: "\n"}


def clean_line(text: str) -> str:
    """`text` with no control character or bidi override left (whitespace kept as spaces)."""
    if not _LINE_BAD.search(text):  # the common case, in C
        return text
    return _ESCAPES.sub("", text).translate(_LINE_TABLE)


def clean_text(text: str) -> str:
    """`text` with no control character but tab and newline (a CR becomes a newline)."""
    if not _TEXT_BAD.search(text):
        return text
    return _ESCAPES.sub("", text.replace("\r\n", "\n")).translate(_TEXT_TABLE)


def clean_url(url: str) -> str:
    """`url` with spaces, control characters and bidi overrides percent-encoded."""
    if not _URL_BAD.search(url):
        return url
    return _URL_BAD.sub(lambda m: quote(m.group(), safe=""), url)

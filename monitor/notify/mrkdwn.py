"""Slack mrkdwn escaping: text from articles shown as text, never as markup or a mention.

Slack's mrkdwn gives `&`, `<` and `>` a meaning: `<http://x|label>` is a link, `<!channel>`,
`<!here>` and `<@U123>` notify people. `escape` turns the three into entities, which defeats
all of those, and puts a word joiner after the `@` of a bare `@channel`, `@here` or
`@everyone` (which Slack turns into a mention when a webhook asks for `link_names`).
The Slack channel's own blocks and the `mrkdwn` flavour of the templates both use it.
"""

from __future__ import annotations

import re

from markupsafe import Markup

from monitor.notify.message import segments

_BARE_MENTION = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)


def escape(text: str) -> str:
    """`text` safe to put in mrkdwn: `&`, `<`, `>` as entities, bare mass mentions broken."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BARE_MENTION.sub("@\u2060", out) if "@" in out else out


def trusted(text: str) -> Markup:
    """Mark `text` as mrkdwn that templates must output as it is (not escaped again)."""
    return Markup(text)


def link(url: str | None, label: str) -> Markup:
    """`<url|label>` with both made safe; just the label when there is no URL."""
    text = escape(label).replace("|", "¦")
    if not url:
        return Markup(text)
    safe_url = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    return Markup(f"<{escape(safe_url)}|{text}>")


def bold(text: str, spans: list[tuple[int, int]]) -> Markup:
    """`text` escaped, with each highlighted run in mrkdwn bold."""
    out = []
    for piece, hot in segments(text, spans):
        core = piece.strip()
        if hot and core:
            # mrkdwn bold needs the asterisks against non-space characters.
            lead = piece[: len(piece) - len(piece.lstrip())]
            trail = piece[len(piece.rstrip()) :]
            out.append(f"{lead}*{escape(core)}*{trail}")
        else:
            out.append(escape(piece))
    return Markup("".join(out))

"""Jinja2 templates for message bodies: the sandbox, the defaults, and up-front checking.

Templates come from config files, so they run in an immutable sandbox: no attribute access to
internals, no mutation of the message. HTML templates autoescape (and the email channel still
sanitises their output with nh3, because a template may use `|safe`). A template that fails at
render time makes the delivery fail permanently: retrying the same template cannot help.

Every template sees the message as `msg` and each of its fields by name (`title`, `url`,
`snippet`, `items`, ...), plus the filters `highlight` (the snippet with its highlights marked)
and `datetime` (a timestamp as `YYYY-MM-DD HH:MM UTC`).

Slack templates are the `mrkdwn` flavour: every `{{ ... }}` is mrkdwn-escaped on output
(`&`, `<`, `>` as entities, so a title cannot add a link or a `<!channel>` mention), while the
template's own text is mrkdwn as written. Filters: `mrkdwn` (escape explicitly; output is not
escaped twice), `link(label)` (`{{ url | link(title) }}`: a safe `<url|label>`), `highlight`
(the snippet escaped, highlights in bold), and `safe` to output a value as it is (only for text
you trust: never an article field).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from monitor.errors import DeliveryError
from monitor.notify import mrkdwn
from monitor.notify.channel_config import ChannelConfigBase
from monitor.notify.email_config import EmailChannel
from monitor.notify.message import AlertMessage, mark, segments
from monitor.notify.slack_config import SlackChannel

TEMPLATE_DIR = Path(__file__).parent / "templates"
Flavour = Literal["text", "html", "mrkdwn"]

#: Any registered channel's config (see `notify.channel_config`).
ChannelConfig = ChannelConfigBase

# Names a template may use besides the message fields.
_EXTRA_NAMES = frozenset({"msg", "hl_open", "hl_close", "severity_label"})
_FIELD_NAMES = frozenset(f.name for f in fields(AlertMessage))


def _subject(item: Any) -> tuple[str, list[tuple[int, int]]]:
    if isinstance(item, AlertMessage):
        return item.snippet, item.highlights
    return str(item), []


def _highlight_text(item: Any, before: str = "**", after: str = "**") -> str:
    text, spans = _subject(item)
    return mark(text, spans, before, after)


def _highlight_html(item: Any) -> Markup:
    text, spans = _subject(item)
    out = Markup("")
    for piece, hot in segments(text, spans):
        out += Markup("<mark>%s</mark>") % piece if hot else escape(piece)
    return out


def _format_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    moment: datetime = value.astimezone(UTC) if value.tzinfo is not None else value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _finalize(value: Any) -> Any:
    # `{{ url }}` on a message without a URL should print nothing, not "None".
    return "" if value is None else value


def _finalize_mrkdwn(value: Any) -> Any:
    # Autoescape for mrkdwn: Jinja's own autoescape is HTML's (it would turn a quote into
    # &#34;, which Slack shows as is). Markup is what `mrkdwn`, `link`, `highlight` and `safe`
    # return: already safe, output as it is.
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return mrkdwn.escape(str(value))


def _mrkdwn_filter(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return mrkdwn.trusted(mrkdwn.escape("" if value is None else str(value)))


def _highlight_mrkdwn(item: Any) -> Markup:
    text, spans = _subject(item)
    return mrkdwn.bold(text, spans)


def _link_filter(url: Any, label: Any = None) -> Markup:
    url_text = "" if url is None else str(url)
    return mrkdwn.link(url_text or None, url_text if label is None else str(label))


_HIGHLIGHT: dict[Flavour, Callable[..., Any]] = {
    "text": _highlight_text,
    "html": _highlight_html,
    "mrkdwn": _highlight_mrkdwn,
}


def _make_env(flavour: Flavour) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=flavour == "html",
        finalize=_finalize_mrkdwn if flavour == "mrkdwn" else _finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["highlight"] = _HIGHLIGHT[flavour]
    env.filters["datetime"] = _format_datetime
    if flavour == "mrkdwn":
        env.filters["mrkdwn"] = _mrkdwn_filter
        env.filters["link"] = _link_filter
    return env


_ENVS: dict[Flavour, ImmutableSandboxedEnvironment] = {
    "text": _make_env("text"),
    "html": _make_env("html"),
    "mrkdwn": _make_env("mrkdwn"),
}


def environment(flavour: Flavour) -> ImmutableSandboxedEnvironment:
    """The shared sandboxed environment for text or HTML templates."""
    return _ENVS[flavour]


@lru_cache(maxsize=256)
def _compile(flavour: Flavour, source: str) -> jinja2.Template:
    return _ENVS[flavour].from_string(source)


def context(msg: AlertMessage, **extra: Any) -> dict[str, Any]:
    """The variables a template sees for `msg`."""
    ctx: dict[str, Any] = {name: getattr(msg, name) for name in _FIELD_NAMES}
    ctx.update(
        msg=msg,
        hl_open="**",
        hl_close="**",
        severity_label=msg.severity.upper(),
    )
    ctx.update(extra)
    return ctx


def render(
    flavour: Flavour,
    msg: AlertMessage,
    *,
    source: str | None = None,
    default: str | None = None,
    **extra: Any,
) -> str:
    """Render the config template `source`, or the packaged template named `default`.

    Any failure (syntax, sandbox violation, an exception inside the template) raises
    `DeliveryError(permanent=True)` naming the reason.
    """
    try:
        if source is not None:
            template = _compile(flavour, source)
        elif default is not None:
            template = _ENVS[flavour].get_template(default)
        else:
            raise ValueError("render() needs a template source or a default name")
        rendered: str = template.render(context(msg, **extra))
        return rendered
    except jinja2.TemplateSyntaxError as exc:
        reason = f"template error, line {exc.lineno}: {exc.message}"
        raise DeliveryError(reason, permanent=True) from exc
    except Exception as exc:  # a user template can raise anything; none of it is retryable
        reason = f"template error: {type(exc).__name__}: {exc}"
        raise DeliveryError(reason, permanent=True) from exc


def _template_keys(config: ChannelConfig) -> list[tuple[str, str, Flavour]]:
    keys: list[tuple[str, str, Flavour]] = []
    if config.template is not None:
        flavour: Flavour = (
            "html"
            if isinstance(config, EmailChannel)
            else "mrkdwn"
            if isinstance(config, SlackChannel)
            else "text"
        )
        keys.append(("template", config.template, flavour))
    if isinstance(config, EmailChannel) and config.subject is not None:
        keys.append(("subject", config.subject, "text"))
    return keys


def check_templates(config: ChannelConfig) -> list[str]:
    """Problems with a channel's templates, each as `"<key>:<line>: <message>"`.

    `<key>` is the config key holding the template (`template`, `subject`) and `<line>` the
    1-based line inside it. Catches syntax errors, names no message has, and errors raised when
    rendering a sample alert and a sample digest.
    """
    problems: list[str] = []
    for key, source, flavour in _template_keys(config):
        env = _ENVS[flavour]
        try:
            ast = env.parse(source)
            _compile(flavour, source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{key}:{exc.lineno}: {exc.message}")
            continue
        known = _FIELD_NAMES | _EXTRA_NAMES
        for name in sorted(jinja2.meta.find_undeclared_variables(ast) - known):
            problems.append(
                f"{key}:{_line_of(source, name)}: unknown variable {name!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        for sample in (sample_message(), sample_digest()):
            try:
                render(flavour, sample, source=source)
            except DeliveryError as exc:
                line = _failing_line(exc.__cause__)
                problems.append(f"{key}:{line}: {exc} (rendering a sample {sample.kind})")
                break
    return problems


def _failing_line(exc: BaseException | None) -> int:
    # Jinja rewrites tracebacks so a template's frames carry its own line numbers.
    line = 1
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _line_of(source: str, name: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if name in line:
            return number
    return 1


def sample_message() -> AlertMessage:
    """A realistic alert, used to trial-render templates and in docs."""
    return AlertMessage(
        kind="alert",
        idempotency_key="sample:1:desk",
        alert_id=1,
        rule="attacks-on-us-troops",
        severity="high",
        title="Drone attack on US base in Syria",
        url="https://news.example.org/2024/drone-attack",
        source="Example News",
        published=datetime(2024, 1, 28, 9, 30, tzinfo=UTC),
        snippet="US forces in Syria came under drone attack overnight, officials said.",
        highlights=[(0, 9), (36, 42)],
        story_id=1,
        sources=[
            {
                "feed": "Example News",
                "url": "https://news.example.org/2024/drone-attack",
                "title": "Drone attack on US base in Syria",
            }
        ],
        why=[{"field": "body", "leaf": "attack*", "text": "attack", "start": 36, "end": 42}],
        created_at=datetime(2024, 1, 28, 9, 31, tzinfo=UTC),
    )


def sample_digest() -> AlertMessage:
    """A digest of two sample alerts."""
    first = sample_message()
    second = sample_message()
    second.alert_id, second.title, second.severity = 2, "Rocket fire near Erbil airport", "medium"
    digest = sample_message()
    digest.kind, digest.alert_id, digest.rule, digest.title = "digest", None, None, "Digest"
    digest.items = [first, second]
    return digest

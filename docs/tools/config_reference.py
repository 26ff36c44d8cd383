"""Generate docs/reference/configuration.md from the settings models in monitor/config.py.

The configuration reference is never written by hand: every key, its type, its default and its
description come from the pydantic models, so the page cannot drift from the code.

    python docs/tools/config_reference.py          # rewrite docs/reference/configuration.md
    python docs/tools/config_reference.py --check  # exit 1 if the committed page is stale

`tests/test_docs_config_reference.py` runs the check, requires a description on every field and
resolves every key the page lists against the models.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from monitor import config  # noqa: E402

PAGE = ROOT / "docs" / "reference" / "configuration.md"
CHANNEL_TYPES: tuple[type[BaseModel], ...] = typing.get_args(
    typing.get_args(config.ChannelConfig)[0]
)


@dataclass(frozen=True)
class Key:
    """One documented key: its dotted path, and how the page describes it."""

    path: str
    type: str
    default: str
    description: str


# --------------------------------------------------------------------------- types


def _validators(metadata: list[Any]) -> set[Any]:
    return {getattr(m, "func", None) for m in metadata}


def _alias_validators(alias: Any) -> set[Any]:
    return _validators(list(typing.get_args(alias)[1:]))


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen) and m.min_length:
            parts.append(f"at least {m.min_length}")
        if isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length} characters")
    return f" ({', '.join(parts)})" if parts else ""


def type_name(tp: Any, metadata: list[Any] | None = None) -> str:
    """A reader's name for a field's type: `duration`, `list of strings`, `"a" | "b"`..."""
    funcs = _validators(metadata or [])
    if config.parse_duration in funcs:
        return "duration"
    if config.parse_size in funcs:
        return "size"
    if funcs & _alias_validators(config.HttpUrlStr):
        return "http(s) URL"
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return type_name(base, [*(metadata or []), *extra])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in members):
            return "channel" if set(members) == set(CHANNEL_TYPES) else "mapping"
        return " or ".join(type_name(a) for a in members)
    if origin is typing.Literal:
        return ", ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_plural(type_name(item))}"
    if origin is dict:
        _key, value = typing.get_args(tp)
        return f"map of name to {type_name(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(name: str) -> str:
    special = {"string or mapping": "strings or mappings", "channel": "channels"}
    if name in special:
        return special[name]
    return name if name.endswith(("s", ")")) or " " in name else f"{name}s"


# --------------------------------------------------------------------------- defaults


def duration_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds % 604800):
            return f"{int(seconds // size)}{unit}"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def size_text(value: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value} bytes"


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    funcs = _validators(info.metadata)
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "none"
    if isinstance(value, timedelta):
        return f"`{duration_text(value)}`"
    if config.parse_size in funcs and isinstance(value, int):
        return f"`{size_text(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`[{', '.join(map(str, value))}]`"
    if isinstance(value, dict):
        return "`{}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


# --------------------------------------------------------------------------- the walk


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    """The models a field's value is made of (its mapping, its list items, its map values)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        out.extend(_nested_models(arg))
    return out


def _container_suffix(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated or origin in (typing.Union, types.UnionType):
        return _container_suffix(typing.get_args(tp)[0])
    if origin is list:
        return "[]"
    if origin is dict:
        return ".NAME"
    return ""


def field_key(name: str, info: FieldInfo) -> str:
    return info.alias or name


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    """Every key of `model`, depth first, with dotted paths (`rules[].examples.match`)."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{field_key(name, info)}"
        yield Key(
            path=path,
            type=type_name(info.annotation, info.metadata) + _constraints(info.metadata),
            default=default_text(info),
            description=info.description or "",
        )
        nested = [m for m in _nested_models(info.annotation) if m not in CHANNEL_TYPES]
        # Example texts are `str | ExampleDoc`: the article form gets its own keys too.
        for sub in dict.fromkeys(nested):
            yield from walk(sub, f"{path}{_container_suffix(info.annotation)}.")


def channel_keys() -> Iterator[tuple[str, list[Key]]]:
    """The keys every channel has, then the keys each channel type adds."""
    base = config._ChannelBase
    yield "every channel", list(walk(base, "channels.NAME."))
    for channel in CHANNEL_TYPES:
        keys = [
            k
            for k in walk(channel, "channels.NAME.")
            if k.path.split(".")[-1] not in base.model_fields
        ]
        literal = typing.get_args(channel.model_fields["type"].annotation)[0]
        yield f"`type: {literal}`", keys


# --------------------------------------------------------------------------- the page

HEADER = """\
# Configuration reference

<!-- Generated by docs/tools/config_reference.py from monitor/config.py: do not edit. -->

Every key of the config, with its type, its default and what it does. This page is generated
from the settings models in `monitor/config.py`
(`python docs/tools/config_reference.py` rewrites it; a test fails when it is stale).
[Configuration](../configuration.md) explains how the file is written: includes, environment
overrides, `${VAR}` secrets, durations and sizes.

Types: a **duration** is `30s`, `10m`, `2h`, `1h30m`, `7d` or a number of seconds; a **size** is
`512KB`, `10MB` or a number of bytes; a **secret** is never logged (write it as `${VAR}`).
`NAME` stands for a name you choose, `[]` for each item of a list. Every key can be set from the
environment as `MONITOR_` + the path in capitals with `__` for each dot
(`fetch.concurrency` is `MONITOR_FETCH__CONCURRENCY`); the environment wins over the file.
"""


def _table(keys: list[Key]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for k in keys:
        description = k.description.replace("|", "\\|")
        rows.append(f"| `{k.path}` | {k.type} | {k.default} | {description} |")
    return rows


def sections() -> Iterator[tuple[str, list[Key]]]:
    top = config.Settings.model_fields
    scalars = [k for k in walk(config.Settings) if "." not in k.path and "[]" not in k.path]
    yield "Top level", scalars
    for name, info in top.items():
        if name == "channels":
            continue
        keys = list(walk(config.Settings))
        inner = [k for k in keys if k.path.startswith((f"{name}.", f"{name}[]."))]
        if inner and _nested_models(info.annotation):
            yield f"`{name}`", inner


def render() -> str:
    lines = [HEADER]
    for title, keys in sections():
        lines += [f"## {title}", "", *_table(keys), ""]
    lines += [
        "## `channels`",
        "",
        "`channels.NAME.type` chooses the kind of channel; each kind takes the keys every channel"
        " has and its own.",
        "",
    ]
    for title, keys in channel_keys():
        lines += [f"### {title}", "", *_table(keys), ""]
    lines += [
        "## `feeds` items that import OPML",
        "",
        "An item of `feeds` may instead be `{opml: FILE}` (a path relative to the config): it is"
        " replaced, when the config is loaded, by one feed per `outline` with an `xmlUrl` in the"
        " file, named by the outline's `title` or `text`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python docs/tools/config_reference.py")
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

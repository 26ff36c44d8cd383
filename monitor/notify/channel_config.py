"""The channel config base and the registry of channel kinds: pydantic only.

Each channel kind is a config model (a `ChannelConfigBase` subclass with `type:
Literal["KIND"]`) and a `monitor.notify.base.Channel` subclass with `kind = "KIND"`. Defining
the config model registers the kind here; `monitor.config` builds the `channels:` union from
this registry (and rebuilds it when a kind is registered later), and `notify.build_channel`
imports the model's `channel_module` to find the class. So a new channel is one module.

The built-in kinds keep their config in `notify/<kind>_config.py`, which imports only
pydantic: loading the config (`monitor check`, `status`) never imports an HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Union, get_args

from pydantic import Field, field_validator

from monitor.configtypes import Severity, StrictModel


def parse_rate(value: str) -> tuple[float, float]:
    """`"30/min"` -> (30 tokens, per 60 s)."""
    m = re.fullmatch(
        r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*", value
    )
    if not m:
        raise ValueError(f"invalid rate {value!r}: use e.g. 1/s, 30/min, 500/h")
    unit = {
        "s": 1,
        "sec": 1,
        "second": 1,
        "m": 60,
        "min": 60,
        "minute": 60,
        "h": 3600,
        "hour": 3600,
        "d": 86400,
        "day": 86400,
    }[m.group(3)]
    per = float(m.group(2) or 1) * unit
    return float(m.group(1)), per


class ChannelConfigBase(StrictModel):
    """The keys every channel has. A subclass with a `type: Literal["KIND"]` field registers
    itself in `CHANNEL_CONFIGS` when it is defined; its channel class (`base.Channel` with
    the same `kind`) lives in `channel_module`, its own module unless it names another."""

    #: The module whose import registers the channel class (default: the config's module).
    channel_module: ClassVar[str] = ""

    min_severity: Severity = Field("low", description="Skip alerts of lower severity.")
    health: bool = Field(
        False, description="Also send `source.broken` and `source.recovered` messages."
    )
    rate_limit: str | None = Field(
        None,
        description="At most N messages per period: `1/s`, `30/min`, `500/h` (bursts up to N).",
    )
    digest: str | None = Field(
        None, description="A cron expression: hold alerts and send one message per period."
    )
    template: str | None = Field(
        None, description="A Jinja2 template (sandboxed) of the message body."
    )
    enabled: bool = Field(True, description="`false` keeps the channel defined but silent.")

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            parse_rate(v)
        return v

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind = config_kind(cls)
        if kind is None:
            return
        if not cls.__dict__.get("channel_module"):
            cls.channel_module = cls.__module__
        CHANNEL_CONFIGS[kind] = cls
        for listener in list(_LISTENERS):
            listener()


#: Channel config models by kind, in the order they were defined.
CHANNEL_CONFIGS: dict[str, type[ChannelConfigBase]] = {}
#: The built-in kinds, first in the union (and the reference page) in this order.
BUILTIN = ("console", "webhook", "slack", "email", "apprise")
_LISTENERS: list[Callable[[], None]] = []


def config_kind(model: type[ChannelConfigBase]) -> str | None:
    """The kind a channel config model serves: its `type` field's one literal value."""
    field = model.model_fields.get("type")
    args = get_args(field.annotation) if field is not None else ()
    return str(args[0]) if len(args) == 1 else None


def channel_union() -> Any:
    """The `channels:` value type: the registered models, told apart by `type`."""
    order = sorted(
        CHANNEL_CONFIGS, key=lambda k: BUILTIN.index(k) if k in BUILTIN else len(BUILTIN)
    )
    models = tuple(CHANNEL_CONFIGS[k] for k in order)
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


def on_register(listener: Callable[[], None]) -> None:
    """Call `listener` after each channel kind registered from now on (config rebuilds)."""
    _LISTENERS.append(listener)

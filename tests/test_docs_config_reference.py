"""The configuration reference is generated from the settings models and cannot drift.

docs/reference/configuration.md is written by docs/tools/config_reference.py; these tests
hold it to the models: the committed page is what the generator writes now, every field of
every settings model has a description, and every key the page lists exists in the models.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, Field

from monitor import config

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "configuration.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "docs" / "tools" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def models_of(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in models_of(arg)]


def every_model(root: type[BaseModel] = config.Settings) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            todo.extend(models_of(info.annotation))
    return seen


def undescribed(root: type[BaseModel]) -> list[str]:
    return [
        f"{model.__name__}.{name}"
        for model in every_model(root)
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]


def test_the_committed_reference_is_what_the_models_generate() -> None:
    assert PAGE.read_text(encoding="utf-8") == generator().render(), (
        "docs/reference/configuration.md is stale: run python docs/tools/config_reference.py"
    )


def test_every_settings_field_has_a_description() -> None:
    assert len(every_model()) >= 15
    assert undescribed(config.Settings) == []


def test_a_field_without_a_description_is_found() -> None:
    class Inner(BaseModel):
        described: int = Field(1, description="yes")
        bare: int = 2

    class Outer(BaseModel):
        inner: list[Inner] = Field(default_factory=list, description="a list")

    assert undescribed(Outer) == ["Inner.bare"]


def resolve(path: str) -> bool:
    """Does a documented key (`rules[].examples.match[].title`, `channels.NAME.url`) exist?"""
    parts = [p for p in re.split(r"\.|\[\]", path) if p]
    models: list[type[BaseModel]] = [config.Settings]
    for part in parts:
        if part == "NAME":
            continue  # a map's key: the models stay those of the map's values
        found: list[type[BaseModel]] = []
        exists = False
        for model in models:
            for name, info in model.model_fields.items():
                if part in (name, info.alias):
                    exists = True
                    found.extend(models_of(info.annotation))
        if not exists:
            return False
        models = found
    return True


def documented_keys() -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", PAGE.read_text(encoding="utf-8"), re.M)


def test_every_documented_key_exists_in_the_models() -> None:
    keys = documented_keys()
    assert len(keys) > 80
    assert [k for k in keys if not resolve(k)] == []


def test_every_field_is_documented() -> None:
    keys = set(documented_keys())
    for model in every_model():
        for name, info in model.model_fields.items():
            key = info.alias or name
            assert any(k.split(".")[-1].split("[")[0] == key for k in keys), (
                f"{model.__name__}.{name}"
            )


@pytest.mark.parametrize("key", ["fetch.no_such_key", "channels.NAME.webhook_urll", "rules[].x"])
def test_an_unknown_key_does_not_resolve(key: str) -> None:
    assert not resolve(key)


def test_the_reference_shows_types_and_defaults_as_a_user_writes_them() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert "| `fetch.max_feed_bytes` | size | `10MB` |" in text
    assert "| `stories.window` | duration | `72h` |" in text
    assert "| `channels.NAME.from` | string | `news-monitor@localhost` |" in text
    assert "| `feeds[].url` | http(s) URL | (required) |" in text

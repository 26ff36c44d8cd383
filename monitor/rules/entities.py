"""Named gazetteers: `entity:name` in a query means "any alias of that name".

Owns turning the `entities:` config (name -> alias phrases, `*` wildcards allowed) into
phrases tokenised exactly like article text, and the errors for bad aliases and unknown
names (with a did-you-mean hint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.rules.query import (
    EntityRef,
    Phrase,
    RuleError,
    _SyntaxError,
    did_you_mean,
    phrase_of,
)


@dataclass(frozen=True, slots=True)
class Gazetteer:
    """Compiled entities: name -> its alias phrases."""

    entries: Mapping[str, tuple[Phrase, ...]]

    def resolve(self, ref: EntityRef, rule: str) -> tuple[Phrase, ...] | RuleError:
        """The aliases of `ref`, or the error naming the closest defined entity."""
        aliases = self.entries.get(ref.name)
        if aliases is not None:
            return aliases
        known = sorted(self.entries)
        hint = did_you_mean(ref.name, known)
        if hint is None:
            hint = (
                ("defined entities: " + ", ".join(known))
                if known
                else (
                    "define it under entities: in the config, e.g. entities: {"
                    + ref.name
                    + ": [alias one, alias two]}"
                )
            )
        return RuleError(rule, ref.offset, f"unknown entity {ref.name!r}", hint)


def entity_error_name(name: str) -> str:
    """The `RuleError.rule` used for a problem in entity `name` (not a rule of its own)."""
    return f"entity:{name}"


def compile_entities(
    entities: Mapping[str, Sequence[str]],
) -> tuple[Gazetteer, list[RuleError]]:
    """Tokenise every alias; bad aliases are reported (offset within the alias), not dropped."""
    entries: dict[str, tuple[Phrase, ...]] = {}
    errors: list[RuleError] = []
    for name, aliases in entities.items():
        phrases: list[Phrase] = []
        if not aliases:
            errors.append(
                RuleError(
                    entity_error_name(name),
                    0,
                    f"entity {name!r} has no aliases",
                    "list at least one alias phrase",
                )
            )
        for alias in aliases:
            try:
                phrases.append(phrase_of(alias, alias, 0, quoted=False))
            except _SyntaxError as exc:
                errors.append(
                    RuleError(
                        entity_error_name(name),
                        exc.offset,
                        f"alias {alias!r}: {exc.message}",
                        exc.hint,
                    )
                )
        entries[name] = tuple(phrases)
    return Gazetteer(entries), errors

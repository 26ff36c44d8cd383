"""Human explanations of a rule against an article: why it matched, or why not.

Owns the text `RuleSet.explain` returns: the rule's query as a tree, each node marked as
satisfied (✓) or not (✗), each leaf with where it was found (field, character span, the
text) or where it was looked for, and for NEAR the closest the two sides came.
"""

from __future__ import annotations

from monitor.rules.evaluate import (
    Doc,
    EntityLeaf,
    EvalNode,
    NearNode,
    NotNode,
    OrNode,
    PhraseLeaf,
    RegexLeaf,
    Span,
    gap,
    hit_span,
)

_MAX_SHOWN = 5


def explain_rule(name: str, root: EvalNode, doc: Doc) -> str:
    """The explanation of rule `name` (compiled to `root`) on `doc`."""
    matched = root.ev(doc) is not None
    lines = [f"rule {name!r}: {'matched' if matched else 'did not match'}"]
    _explain(root, doc, 1, lines)
    return "\n".join(lines)


def _explain(node: EvalNode, doc: Doc, depth: int, lines: list[str]) -> None:
    spans = node.ev(doc)
    mark = "✓" if spans is not None else "✗"
    pad = "  " * depth
    lines.append(f"{pad}{mark} {node.label}{_detail(node, spans, doc)}")
    if isinstance(node, PhraseLeaf | RegexLeaf | EntityLeaf):
        return
    missed: list[EvalNode] = []
    for child in node.children:
        # Leaves of an OR that are absent say little one by one: one line lists them all.
        if isinstance(node, OrNode) and _is_leaf(child) and child.ev(doc) is None:
            missed.append(child)
        else:
            _explain(child, doc, depth + 1, lines)
    if len(missed) == 1:
        _explain(missed[0], doc, depth + 1, lines)
    elif missed:
        names = ", ".join(m.label for m in missed)
        gave_up = "; ".join(f"{m.label} {r}" for m in missed if (r := _gave_up(m, doc)))
        lines.append(
            f"{pad}  ✗ {names} — none found in {_scope(missed[0])}"
            + (f" ({gave_up})" if gave_up else "")
        )


def _is_leaf(node: EvalNode) -> bool:
    return isinstance(node, PhraseLeaf | RegexLeaf | EntityLeaf)


def _detail(node: EvalNode, spans: list[Span] | None, doc: Doc) -> str:
    if isinstance(node, PhraseLeaf | RegexLeaf | EntityLeaf):
        if spans is None:
            gave_up = _gave_up(node, doc)
            return f" — not found in {_scope(node)}" + (f" ({gave_up})" if gave_up else "")
        return " — found " + _places(spans, doc)
    if isinstance(node, NotNode):
        inner = node.child.ev(doc)
        if inner is None:
            return " — absent, as required"
        return " — but present: " + _places(inner, doc)
    if isinstance(node, NearNode):
        if spans is not None:
            return f" — {len(spans)} pair(s) within {node.distance} token(s): " + _places(
                spans, doc
            )
        left, right = node.left.ev(doc), node.right.ev(doc)
        if not left or not right:
            if not left and not right:
                return " — neither side is satisfied"
            return f" — its {'left' if not left else 'right'} side is not satisfied"
        closest = _closest(left, right, node.ordered)
        order = " in order" if node.ordered else ""
        if closest is None:
            return f" — both sides occur but never{order} in the same field"
        return (
            f" — both sides occur but the closest{order} are {closest} token(s) apart "
            f"(allowed: {node.distance})"
        )
    return ""


def _gave_up(node: EvalNode, doc: Doc) -> str:
    """Where a regex counted as not matched because it ran out of time, and why."""
    if not isinstance(node, RegexLeaf):
        return ""
    reasons = [
        f"{name}: {doc.budget.abandoned[id(node), name]}"
        for name in node.fields
        if (id(node), name) in doc.budget.abandoned
    ]
    return "; ".join(reasons)


def _scope(node: EvalNode) -> str:
    if isinstance(node, EntityLeaf):
        return ", ".join(node.aliases[0].fields) if node.aliases else "any field"
    assert isinstance(node, PhraseLeaf | RegexLeaf)
    return ", ".join(node.fields)


def _closest(left: list[Span], right: list[Span], ordered: bool) -> int | None:
    best: int | None = None
    for a in left:
        for b in right:
            if a[0] == b[0]:
                g = gap(a, b, ordered)
                if g is not None and (best is None or g < best):
                    best = g
    return best


def _places(spans: list[Span], doc: Doc) -> str:
    hits = sorted({hit_span(doc, h) for span in spans for h in span[3]})
    shown = []
    for field, start, end, _leaf in hits[:_MAX_SHOWN]:
        text = (doc.fields.get(field) or "")[start:end].replace("\n", " ")
        shown.append(f"{field}[{start}:{end}] {text!r}")
    more = f" and {len(hits) - _MAX_SHOWN} more" if len(hits) > _MAX_SHOWN else ""
    return ", ".join(shown) + more

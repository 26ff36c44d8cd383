"""The rule query language: lexer, parser and syntax tree, and the errors a user can act on.

Owns the grammar (precedence NOT > NEAR > AND > OR, adjacent terms are ANDed)::

    or    := and (OR and)*
    and   := near ([AND] near)*
    near  := unary ((NEAR/n | ONEAR/n) unary)*
    unary := NOT unary | primary
    primary := "(" or ")" | field ":" primary | entity:name | "phrase" | /regex/flags | word

and `RuleError`, which names the character offset in the query, says what is wrong and hints
at the fix. Resolution of entity names and regex compilation happen in `compile.py`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from monitor.errors import MonitorError
from monitor.rules.text import Tokens, tokenize

#: Field scopes a query may name. `text` is title + summary + body (the default scope).
FIELD_NAMES = ("title", "summary", "body", "text", "author", "tags", "url", "feed")
TEXT_SCOPE = ("title", "summary", "body")
MIN_PREFIX = 2


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in one rule: where in its query (character offset), what, and how to fix."""

    rule: str
    offset: int
    message: str
    hint: str | None = None

    def render(self, query: str) -> str:
        """The query line holding `offset`, a caret under that character, and the hint."""
        offset = max(0, min(self.offset, len(query)))
        line_start = query.rfind("\n", 0, offset) + 1
        line_end = query.find("\n", offset)
        line = query[line_start : line_end if line_end != -1 else len(query)]
        # Keep tabs so the caret lines up however the terminal expands them.
        pad = "".join("\t" if c == "\t" else " " for c in query[line_start:offset])
        out = f"  {line}\n  {pad}^"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out

    def __str__(self) -> str:
        return f"rule {self.rule!r}, offset {self.offset}: {self.message}"


class RuleCompileError(MonitorError):
    """Some rules cannot be compiled; `errors` lists every broken rule (none is dropped)."""

    kind = "rules"

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str | None:
    """A `did you mean 'x'?` hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


class _SyntaxError(Exception):
    def __init__(self, offset: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message
        self.hint = hint


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class Word:
    """One token of a term or phrase; `prefix` for a trailing `*`."""

    norm: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Phrase:
    """Consecutive tokens (a single word is a one-word phrase). `source` is the query text."""

    words: tuple[Word, ...]
    source: str
    offset: int
    alternatives: tuple[tuple[Word, ...], ...] = ()  # e.g. `email` for the rule word `e-mail`


@dataclass(frozen=True, slots=True)
class EntityRef:
    name: str
    source: str
    offset: int


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str
    flags: str
    source: str
    offset: int  # of the opening slash


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    offset: int


@dataclass(frozen=True, slots=True)
class Near:
    left: Node
    right: Node
    distance: int
    ordered: bool
    offset: int  # of the operator


@dataclass(frozen=True, slots=True)
class Scope:
    fields: tuple[str, ...]
    name: str
    child: Node
    offset: int


Node = Phrase | EntityRef | Regex | And | Or | Not | Near | Scope


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # WORD PHRASE REGEX ENTITY FIELD LPAREN RPAREN AND OR NOT NEAR
    text: str
    offset: int
    value: str = ""
    number: int = 0
    ordered: bool = False


_NEAR_RE = re.compile(r"(O?NEAR)(/(.*))?", re.IGNORECASE)
_FIELD_RE = re.compile(r"([A-Za-z_]+):")
_LOWER_OPS = {"and", "or", "not"}


def _lex(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok("LPAREN" if c == "(" else "RPAREN", c, i))
            i += 1
        elif c in '"\u201c\u201d':
            toks.append(_quote_token(query, i))
            i += len(toks[-1].text)
        elif c == "/":
            toks.append(_regex_token(query, i))
            i += len(toks[-1].text)
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in '()"\u201c\u201d':
                j += 1
            word = query[i:j]
            toks.append(_word_token(word, i, query))
            if toks[-1].kind == "FIELD":
                j = i + len(toks[-1].text)
            i = j
    return toks


def _quote_token(query: str, i: int) -> _Tok:
    """The quoted phrase that starts at `i`, up to and with its closing quote."""
    close = re.compile('["\u201c\u201d]').search(query, i + 1)
    if close is None:
        raise _SyntaxError(i, "unterminated quote", 'close the phrase with "')
    return _Tok("PHRASE", query[i : close.end()], i, query[i + 1 : close.start()])


def _regex_token(query: str, i: int) -> _Tok:
    """The /regex/flags that starts at `i`; its value is the pattern, NUL, the flags."""
    n = len(query)
    j = i + 1
    while j < n and query[j] != "/":
        j += 2 if query[j] == "\\" else 1
    if j >= n:
        raise _SyntaxError(
            i,
            "unterminated regex",
            "close the regex with / (write \\/ for a slash inside it)",
        )
    k = j + 1
    while k < n and query[k].isalpha():
        k += 1
    flags = query[j + 1 : k]
    bad = set(flags) - set("imsx")
    if bad:
        raise _SyntaxError(
            j + 1,
            f"unknown regex flag {sorted(bad)[0]!r}",
            "regex flags are i (ignore case), m, s and x",
        )
    return _Tok("REGEX", query[i:k], i, query[i + 1 : j] + "\0" + flags)


def _word_token(word: str, offset: int, query: str) -> _Tok:
    if word in ("AND", "OR", "NOT"):
        return _Tok(word, word, offset)
    m = _NEAR_RE.fullmatch(word)
    if m and (m.group(2) is not None or m.group(1).isupper()):
        return _near_token(word, offset, m)
    if word.lower() in _LOWER_OPS:
        raise _SyntaxError(
            offset,
            f"{word!r} looks like an operator but operators are upper case",
            f'write {word.upper()}, or "{word}" to search for the word',
        )
    fm = _FIELD_RE.match(word)
    if fm:
        return _field_token(word, offset, query, fm)
    return _Tok("WORD", word, offset, word)


def _near_token(word: str, offset: int, m: re.Match[str]) -> _Tok:
    """NEAR/n or ONEAR/n (`m` is `_NEAR_RE` matched on `word`)."""
    op = m.group(1)
    if op.upper() != op:
        raise _SyntaxError(
            offset,
            f"operators are upper case: write {op.upper()}",
            f'to search for the word, quote it: "{word}"',
        )
    if m.group(3) is None or not m.group(3).isdigit():
        raise _SyntaxError(
            offset, f"{op}/ needs a number", f"write e.g. {op}/5 for 'within 5 words'"
        )
    return _Tok("NEAR", word, offset, number=int(m.group(3)), ordered=op == "ONEAR")


def _field_token(word: str, offset: int, query: str, fm: re.Match[str]) -> _Tok:
    """entity:NAME, or a field prefix such as title: (`fm` is `_FIELD_RE` matched on `word`)."""
    name = fm.group(1)
    if name.lower() == "entity":
        entity = word[fm.end() :]
        if not entity:
            raise _SyntaxError(
                offset,
                "entity: needs a name",
                "write entity:NAME with a name defined under entities:",
            )
        return _Tok("ENTITY", word, offset, entity)
    if name.lower() not in FIELD_NAMES:
        hint = did_you_mean(name.lower(), FIELD_NAMES) or ("fields are " + ", ".join(FIELD_NAMES))
        raise _SyntaxError(offset, f"unknown field {name!r}", hint)
    if fm.end() == len(word) and (
        offset + len(word) >= len(query) or query[offset + len(word)].isspace()
    ):
        raise _SyntaxError(
            offset,
            f"{name}: needs a term right after it",
            f'write {name}:word, {name}:"a phrase" or {name}:(...)',
        )
    return _Tok("FIELD", word[: fm.end()], offset, name.lower())


# --------------------------------------------------------------------------- parser


def parse(query: str, rule: str = "") -> Node:
    """Parse `query` into its syntax tree. Raises `RuleCompileError` with one `RuleError`."""
    try:
        if not query.strip():
            raise _SyntaxError(0, "empty query", "write at least one word, e.g. attack*")
        return _Parser(query, _lex(query)).parse()
    except _SyntaxError as exc:
        raise RuleCompileError([RuleError(rule, exc.offset, exc.message, exc.hint)]) from None


class _Parser:
    def __init__(self, query: str, toks: list[_Tok]) -> None:
        self.query = query
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            if tok.kind == "RPAREN":
                raise _SyntaxError(
                    tok.offset,
                    "unbalanced parenthesis: ')' has no matching '('",
                    "remove it or add '(' before it",
                )
            raise _SyntaxError(tok.offset, f"unexpected {tok.text!r}")
        return node

    def or_expr(self) -> Node:
        first = self.peek()
        children = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            self._need_operand(tok)
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children), _off(first))

    def and_expr(self) -> Node:
        first = self.peek()
        children = [self.near_expr()]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", "RPAREN"):
            if tok.kind == "AND":
                self.take()
                self._need_operand(tok)
            elif tok.kind == "NEAR":
                raise _SyntaxError(tok.offset, f"{tok.text} needs a term before it")
            children.append(self.near_expr())
        return children[0] if len(children) == 1 else And(tuple(children), _off(first))

    def near_expr(self) -> Node:
        left = self.unary()
        while (tok := self.peek()) is not None and tok.kind == "NEAR":
            self.take()
            self._need_operand(tok)
            right = self.unary()
            for side in (left, right):
                if isinstance(side, Not):
                    raise _SyntaxError(
                        side.offset,
                        "NOT cannot be a NEAR operand",
                        "NEAR needs something that occurs; write (a NEAR/5 b) NOT c instead",
                    )
            left = Near(left, right, tok.number, tok.ordered, tok.offset)
        return left

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "NOT":
            self.take()
            self._need_operand(tok)
            return Not(self.unary(), tok.offset)
        return self.primary()

    def _need_operand(self, op: _Tok) -> None:
        nxt = self.peek()
        if nxt is None or nxt.kind in ("OR", "AND", "RPAREN", "NEAR"):
            where = nxt.offset if nxt is not None and nxt.kind != "RPAREN" else op.offset
            raise _SyntaxError(
                where,
                f"dangling operator: {op.text} needs a term after it",
                f"remove {op.text} or add a term after it",
            )

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise _SyntaxError(len(self.query), "the query ends where a term was expected")
        if tok.kind in ("AND", "OR", "NEAR"):
            raise _SyntaxError(
                tok.offset,
                f"dangling operator: {tok.text} needs a term before it",
                f"remove {tok.text} or add a term before it",
            )
        if tok.kind == "RPAREN":
            raise _SyntaxError(
                tok.offset,
                "unbalanced parenthesis: ')' has no matching '('",
                "remove it or add '(' before it",
            )
        self.take()
        if tok.kind == "LPAREN":
            nxt = self.peek()
            if nxt is not None and nxt.kind == "RPAREN":
                raise _SyntaxError(tok.offset, "empty parentheses", "put a term inside ( )")
            node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != "RPAREN":
                raise _SyntaxError(
                    tok.offset,
                    "unbalanced parenthesis: '(' is never closed",
                    "add ')' where the group ends",
                )
            self.take()
            return node
        if tok.kind == "FIELD":
            fields = TEXT_SCOPE if tok.value == "text" else (tok.value,)
            child = self.primary()
            return Scope(fields, tok.value, child, tok.offset)
        if tok.kind == "ENTITY":
            return EntityRef(tok.value, tok.text, tok.offset)
        if tok.kind == "REGEX":
            pattern, flags = tok.value.split("\0")
            if not pattern:
                raise _SyntaxError(tok.offset, "empty regex", "write /pattern/")
            return Regex(pattern, flags, tok.text, tok.offset)
        if tok.kind == "PHRASE":
            return phrase_of(tok.value, tok.text, tok.offset, quoted=True)
        return phrase_of(tok.value, tok.text, tok.offset, quoted=False)


def _off(tok: _Tok | None) -> int:
    return tok.offset if tok is not None else 0


def phrase_of(content: str, source: str, offset: int, *, quoted: bool) -> Phrase:
    """A phrase from raw text with `*` wildcards, tokenised like article text.

    `offset` is where `source` starts in the query (for errors); a quoted phrase's content
    starts one character later.
    """
    base = offset + 1 if quoted else offset
    words: list[Word] = []
    alternatives: list[tuple[Word, ...]] = []
    for m in re.finditer(r"\S+", content):
        chunk = m.group()
        prefix = chunk.endswith("*")
        toks = _chunk_tokens(chunk, base + m.start(), quoted)
        if toks is None:
            continue
        new = [Word(t) for t in toks.norms]
        if prefix:
            new[-1] = Word(new[-1].norm, True)
        if (
            not quoted
            and toks.aliases
            and len(toks.aliases) == 1
            and m.start() == 0
            and m.end() == len(content)
        ):
            # A bare hyphenated word also matches its joined form (`e-mail` finds `email`).
            alternatives.append((Word("".join(t.norm for t in new), prefix),))
        words.extend(new)
    if not words:
        if quoted:
            raise _SyntaxError(offset, "empty phrase", "write a word between the quotes")
        raise _SyntaxError(
            offset,
            f"{source!r} has no letters or digits",
            "a term needs a letter or digit; quote punctuation-only text or use a /regex/",
        )
    return Phrase(tuple(words), source, offset, tuple(alternatives))


def _chunk_tokens(chunk: str, at: int, quoted: bool) -> Tokens | None:
    """The tokens of one whitespace-separated chunk of a phrase (starting at `at` in the
    query), its wildcard checked; None for a bare chunk without letters or digits."""
    star = chunk.find("*")
    if star != -1 and star != len(chunk.rstrip("*")):
        raise _SyntaxError(
            at + star,
            "a wildcard * is only allowed at the end of a word",
            "write attack* (prefix), not at*ack",
        )
    prefix = chunk.endswith("*")
    toks = tokenize(chunk.rstrip("*"))
    if not toks.norms:
        if prefix or quoted:
            raise _SyntaxError(
                at,
                f"{chunk!r} has no letters or digits",
                "a wildcard needs a word before it, e.g. attack*",
            )
        return None
    if prefix and len(toks.norms[-1]) < MIN_PREFIX:
        raise _SyntaxError(
            at,
            f"prefix {chunk!r} is too short",
            f"a prefix needs at least {MIN_PREFIX} letters; a shorter "
            "one matches almost every article",
        )
    return toks

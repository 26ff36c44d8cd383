"""Labelled articles for measuring and training rules: a JSON-lines labels file, with rows of a
CSV by reference, a rule's `examples:`, and stored feedback verdicts.

Owns the labels format (docs/evaluation.md, "Labels files"). One JSON object a line; blank
lines and lines starting with `#` are skipped:

- an article written out: `{"id": "a1", "title": "...", "summary": "...", "body": "...",
  "url": "...", "label": true}` (`text` is accepted for `body`; `label` is true/false, 1/0 or
  "relevant"/"irrelevant"; optional `rule` limits the label to one rule, `note` is shown
  with a miss);
- a row of a CSV file: `{"csv": "train_subset.csv", "row": 12, "label": 1}` (`row` 0-based,
  header excluded; the path is relative to the labels file);
- a line with `csv` and no `label` sets the CSV of the lines after it, so a file of
  `{"row": N, "label": L}` lines (the AG News dev labels) needs one such line, or `--csv`.

CSV columns are taken from its header: `title`; `summary` or `description`; `body`, `text` or
`content`; `url` or `link`; `id`; others are ignored. A CSV without a header needs `columns`
(`{"csv": "test.csv", "columns": ["class_index", "title", "description"]}`), except the AG
News layout (three columns, the first a class number), which is recognised as such.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import MonitorError

#: CSV column name -> article field.
CSV_COLUMNS = {
    "title": "title",
    "summary": "summary",
    "description": "summary",
    "body": "body",
    "text": "body",
    "content": "body",
    "url": "url",
    "link": "url",
    "id": "id",
}
_AG_NEWS = ("class_index", "title", "description")
_TEXT_FIELDS = ("title", "summary", "body")
_TRUE = (True, 1, "1", "true", "relevant", "yes")
_FALSE = (False, 0, "0", "false", "irrelevant", "no")


class LabelsError(MonitorError):
    """A labels file (or a CSV it refers to) cannot be read. The message names file and line."""

    kind = "labels"


@dataclass(frozen=True, slots=True)
class LabelledDoc:
    """One labelled article: where it comes from (`file:line`, `example match[2]`,
    `feedback alert 12`), its fields, its label, and the rule it is limited to (if any)."""

    source: str
    ident: str
    fields: Mapping[str, str]
    label: bool
    rule: str | None = None
    note: str = ""

    def text(self) -> str:
        return "\n".join(self.fields.get(f, "") for f in _TEXT_FIELDS)


def parse_label(value: Any) -> bool:
    """A label value: true/false, 1/0 or relevant/irrelevant. ValueError otherwise."""
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, bool | int | str):
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise ValueError(f"label must be true/false, 1/0 or relevant/irrelevant, not {value!r}")


@dataclass(slots=True)
class _CsvFile:
    path: Path
    rows: list[dict[str, str]] = field(default_factory=list)


class _Reader:
    """Reads one labels file; CSVs are loaded once each."""

    def __init__(self, path: Path, default_csv: Path | None) -> None:
        self.path = path
        self.csv_path = default_csv
        self.columns: list[str] | None = None
        self.cache: dict[tuple[Path, tuple[str, ...] | None], _CsvFile] = {}

    def where(self, lineno: int) -> str:
        return f"{self.path}:{lineno}"

    def read(self) -> list[LabelledDoc]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise LabelsError(f"{self.path}: cannot read the labels file: {exc}") from None
        out: list[LabelledDoc] = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelsError(f"{self.where(lineno)}: not a JSON object: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise LabelsError(f"{self.where(lineno)}: each line must be a JSON object")
            doc = self._line(obj, lineno)
            if doc is not None:
                out.append(doc)
        return out

    def _line(self, obj: dict[str, Any], lineno: int) -> LabelledDoc | None:
        where = self.where(lineno)
        if "label" not in obj:
            if "csv" in obj and "row" not in obj:  # sets the CSV of the lines that follow
                self.csv_path = self._csv_path(obj["csv"], where)
                self.columns = _columns(obj.get("columns"), where)
                return None
            raise LabelsError(f"{where}: missing 'label' (true/false or 1/0)")
        try:
            label = parse_label(obj["label"])
        except ValueError as exc:
            raise LabelsError(f"{where}: {exc}") from None
        rule = obj.get("rule")
        if rule is not None and not isinstance(rule, str):
            raise LabelsError(f"{where}: 'rule' must be a rule name")
        note = str(obj.get("note") or "")
        if "row" in obj:
            fields, ident = self._row(obj, where)
        else:
            fields, ident = _inline(obj, where, lineno)
        return LabelledDoc(where, ident, fields, label, rule, note)

    def _csv_path(self, value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value:
            raise LabelsError(f"{where}: 'csv' must be a file path")
        return (self.path.parent / value).resolve()

    def _row(self, obj: dict[str, Any], where: str) -> tuple[dict[str, str], str]:
        row = obj["row"]
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise LabelsError(f"{where}: 'row' must be a row number (0 = first data row)")
        if "csv" in obj:
            path, columns = self._csv_path(obj["csv"], where), _columns(obj.get("columns"), where)
        elif self.csv_path is not None:
            path, columns = self.csv_path, self.columns
        else:
            raise LabelsError(
                f"{where}: a 'row' needs a CSV: give 'csv' on the line, a line "
                '{"csv": "file.csv"} before it, or --csv'
            )
        table = self._load(path, columns, where)
        if row >= len(table.rows):
            raise LabelsError(
                f"{where}: row {row} is past the end of {path} ({len(table.rows)} data rows)"
            )
        fields = dict(table.rows[row])
        ident = fields.pop("id", "") or f"{path.name}#{row}"
        return fields, ident

    def _load(self, path: Path, columns: list[str] | None, where: str) -> _CsvFile:
        key = (path, tuple(columns) if columns else None)
        table = self.cache.get(key)
        if table is None:
            table = self.cache[key] = _read_csv(path, columns, where)
        return table


def _columns(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise LabelsError(f"{where}: 'columns' must be a list of column names")
    return [c.lower() for c in value]


def _inline(obj: dict[str, Any], where: str, lineno: int) -> tuple[dict[str, str], str]:
    fields: dict[str, str] = {}
    for name in ("title", "summary", "body", "url"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise LabelsError(f"{where}: '{name}' must be a string")
        fields[name] = value or ""
    text = obj.get("text")
    if isinstance(text, str) and not fields["body"]:
        fields["body"] = text
    if not any(fields[f] for f in _TEXT_FIELDS):
        raise LabelsError(f"{where}: no text: give title, summary, body (or text), or csv and row")
    return fields, str(obj.get("id") or f"line {lineno}")


def _read_csv(path: Path, columns: list[str] | None, where: str) -> _CsvFile:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{where}: cannot read {path}: {exc}") from None
    if not rows:
        raise LabelsError(f"{where}: {path} is empty")
    columns, rows = _csv_columns(path, columns, rows, where)
    mapping = [(i, CSV_COLUMNS[c]) for i, c in enumerate(columns) if c in CSV_COLUMNS]
    if not any(name in _TEXT_FIELDS for _, name in mapping):
        raise LabelsError(f"{where}: {path}: no text column among {columns}")
    table = _CsvFile(path)
    for row in rows:
        fields = {"title": "", "summary": "", "body": "", "url": ""}
        for i, name in mapping:
            if i < len(row):
                fields[name] = f"{fields[name]} {row[i]}" if fields.get(name) else row[i]
        table.rows.append(fields)
    return table


def _csv_columns(
    path: Path, columns: list[str] | None, rows: list[list[str]], where: str
) -> tuple[list[str], list[list[str]]]:
    """The CSV's columns (given, else its header, else AG News's) and its data rows."""
    header = [c.strip().lower() for c in rows[0]]
    if columns is None and any(c in CSV_COLUMNS for c in header):
        columns, rows = header, rows[1:]
    elif columns is None and len(header) == 3 and header[0].isdigit():
        columns = list(_AG_NEWS)
    elif columns is None:
        raise LabelsError(
            f"{where}: {path} has no header naming its columns (title, description, text, ...):"
            ' give them, e.g. {"csv": "...", "columns": ["class_index", "title", "description"]}'
        )
    return columns, rows


def read_labels(path: str | Path, *, csv_path: str | Path | None = None) -> list[LabelledDoc]:
    """Every labelled article of a labels file. Raises `LabelsError` naming file and line."""
    default = Path(csv_path).resolve() if csv_path is not None else None
    return _Reader(Path(path), default).read()


def example_docs(
    rule: str, examples: Iterable[tuple[str, int, Mapping[str, str]]]
) -> list[LabelledDoc]:
    """A rule's examples as labelled articles: (`match` or `no_match`, index, fields)."""
    return [
        LabelledDoc(f"example {kind}[{i}]", f"{kind}[{i}]", fields, kind == "match", rule)
        for kind, i, fields in examples
    ]


def data_hash(docs: Sequence[LabelledDoc]) -> str:
    """SHA-256 of the labelled articles' text and labels, in order: a model's training data."""
    h = hashlib.sha256()
    for doc in docs:
        payload = [doc.label, *(doc.fields.get(f, "") for f in (*_TEXT_FIELDS, "url"))]
        h.update(json.dumps(payload, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()

"""Source metadata on its way to people: links, spreadsheet cells and text.

- Links: only `http`/`https` URLs are ever links (`safe_href`); anything else (`javascript:`,
  `data:`, a URL with spaces or quotes) is shown as text, and a record whose work URL is not one
  is excluded (`url_unsafe`) before anything publishes it.
- Spreadsheet cells (`cell` / `uncell`): a CSV cell that begins with `=`, `+`, `-`, `@`, a tab or
  a carriage return would run as a formula in a spreadsheet; it is written with a leading `'`
  (the usual neutralisation, which spreadsheets show as text). So that programs can read the
  exact value back, a cell that begins with `'` followed by one of those characters or another
  `'` gets one too. Reading: drop one leading `'` when the next character is one of
  `= + - @ TAB CR '` (`uncell`).
- Text (`clean`): lone surrogates (invalid Unicode) become U+FFFD, control characters other
  than tab and newline and the bidirectional embedding/override/isolate marks are removed, and
  very long values are cut; what was done is returned so the record's evidence can say it.
"""
from __future__ import annotations

import re

_TRIGGERS = "=+-@\t\r"
_HREF = re.compile(r"^https?://[^\s\"'<>\\`\x00-\x1f\x7f]+$", re.IGNORECASE)
# C0 and C1 controls except tab and newline; the bidi embeddings, overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_href(url: object) -> str | None:
    """`url` when it is an http(s) URL safe to put in an href, else None."""
    s = str(url or "")
    return s if _HREF.match(s) else None


def encode_url(url: str) -> str:
    """An http(s) URL with characters a URL may not hold raw (whitespace, quotes, angle brackets,
    backslash, controls) percent-encoded; existing escapes are kept."""
    from urllib.parse import quote

    return quote(url, safe=":/?#[]@!$&()*+,;=%~")


def cell(value: object) -> object:
    if not isinstance(value, str) or not value:
        return value
    if value[0] in _TRIGGERS or (value[0] == "'" and len(value) > 1 and value[1] in _TRIGGERS + "'"):
        return "'" + value
    return value


def uncell(value: str) -> str:
    if len(value) > 1 and value[0] == "'" and value[1] in _TRIGGERS + "'":
        return value[1:]
    return value


def row(values) -> list:
    return [cell(v) for v in values]


def clean(value: str, limit: int) -> tuple[str, list[str]]:
    """The text with invalid Unicode replaced, control and bidi-override characters removed and
    at most `limit` characters; and what was done (empty when nothing)."""
    done = []
    if _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
        done.append("invalid unicode replaced")
    if _CONTROL.search(value):
        value = _CONTROL.sub("", value)
        done.append("control or bidi characters removed")
    if len(value) > limit:
        done.append(f"cut from {len(value)} to {limit} characters")
        value = value[:limit]
    return value, done


# Longest value kept of each text field (characters); a tag longer than TAG is cut, and at
# most TAGS tags are kept.
LIMITS = {"title": 1000, "author": 500, "description": 20_000}
TAG, TAGS = 200, 200


def clean_fields(values: dict) -> tuple[dict, dict]:
    """`values` (title, author, description: text; tags, genres: lists of text) cleaned
    (see `clean`), and {field: what was done} for the evidence (empty when nothing)."""
    out, done = dict(values), {}
    for k, v in values.items():
        if isinstance(v, list):
            items, what = [], []
            for t in v[:TAGS]:
                c, d = clean(str(t), TAG)
                items.append(c)
                what += [x for x in d if x not in what]
            if len(v) > TAGS:
                what.append(f"{len(v) - TAGS} of {len(v)} values dropped")
            out[k] = items
        else:
            out[k], what = clean(str(v), LIMITS.get(k, 2000))
        if what:
            done[k] = what
    return out, done

"""Normalising track metadata for copyright matching: case, accents, punctuation, `&`,
featured-artist credits and version suffixes ("(Remastered 2011)", "- Radio Edit",
"(Live at ...)"). Matching itself is in `metadata_match`, audio identification in `audio_id`."""
from __future__ import annotations

import re
from functools import lru_cache
import unicodedata
from dataclasses import dataclass, field

# Words that mark a version of a recording rather than another work.
_VERSION_WORDS = (
    r"remaster(?:ed)?|live|edit|version|mix|remix|mono|stereo|demo|acoustic|radio|explicit|clean|"
    r"instrumental|bonus|deluxe|single|original|extended|re-?recorded|session|take|unplugged|"
    r"feat\.?|ft\.?|featuring|with|from|"
    # the same words in the catalogue's other big languages
    r"vivo|en\s+vivo|ao\s+vivo|directo|remasterizad[oa]|remasteris[ée]e?|versi[oó]n|vers[aã]o|"
    r"ac[uú]stic[oa]|ao\s+vivo|live-version|remasterizada"
)
_BRACKET = re.compile(r"\s*[\(\[]([^\)\]]*)[\)\]]")
_DASH_SUFFIX = re.compile(r"\s+-\s+(.*)$")
_FEAT = re.compile(r"\s+(?:feat\.?|ft\.?|featuring)\s+(.*)$", re.I)
_ARTIST_SPLIT = re.compile(r"\s*(?:;|,|/|\s&\s|\sand\s|\sx\s|\sfeat\.?\s|\sft\.?\s|\sfeaturing\s|\swith\s|\svs\.?\s)\s*", re.I)


def close_brackets(text: str) -> str:
    """The text with any bracket that never closes closed at the end ("Jofe Collective (feat.
    Lomal Corfe" reads as "... (feat. Lomal Corfe)"), so it splits as the closed one does."""
    t = str(text or "")
    depth = []
    for c in t:
        if c in "([":
            depth.append(")" if c == "(" else "]")
        elif c in ")]" and depth and depth[-1] == c:
            depth.pop()
    return t + "".join(reversed(depth)) if depth else t


@lru_cache(maxsize=1 << 18)
def fold(text: str) -> str:
    """Lower case, accents stripped, `&` spelled `and`, punctuation to spaces."""
    t = unicodedata.normalize("NFKD", str(text))
    t = "".join(c for c in t if not unicodedata.combining(c)).casefold()
    t = t.replace("&", " and ").replace("'", "").replace("\u2019", "")
    t = re.sub(r"[^\w\s]|_", " ", t)
    return re.sub(r"\s+", " ", t).strip()


@dataclass
class NormalTitle:
    text: str
    applied: list[str] = field(default_factory=list)
    featured: list[str] = field(default_factory=list)


def normalize_title(title: str) -> NormalTitle:
    t = close_brackets(title)
    applied: list[str] = []
    featured: list[str] = []
    version_re = re.compile(rf"\b(?:{_VERSION_WORDS})\b|\b(?:19|20)\d\d\b", re.I)

    def drop_bracket(m: re.Match) -> str:
        inner = m.group(1)
        f = re.match(r"\s*(?:feat\.?|ft\.?|featuring|with)\s+(.*)", inner, re.I)
        if f:
            featured.extend(split_artists(f.group(1)))
            applied.append("featured_artist")
            return ""
        if version_re.search(inner):
            applied.append("version_suffix")
            return ""
        return m.group(0)

    t2 = _BRACKET.sub(drop_bracket, t)
    m = _DASH_SUFFIX.search(t2)
    if m and version_re.search(m.group(1)):
        t2 = t2[: m.start()]
        applied.append("version_suffix")
    f = _FEAT.search(t2)
    if f:
        featured.extend(split_artists(f.group(1)))
        t2 = t2[: f.start()]
        applied.append("featured_artist")
    folded = fold(t2)
    if "&" in t2:
        applied.append("ampersand")
    if folded != t2.lower().strip():
        applied.append("case_accents_punctuation")
    if not folded:  # a title that is only a version marker: keep what there was
        folded = fold(t)
    return NormalTitle(folded, sorted(set(applied)), featured)


_FEAT_BRACKET = re.compile(r"\s*[\(\[]\s*((?:feat\.?|ft\.?|featuring|with)\s+[^\)\]]*)[\)\]]", re.I)


def split_artists(artists: str) -> list[str]:
    # "A (feat. B)" and "A [ft. B" (a bracket never closed) credit A and B
    credit = _FEAT_BRACKET.sub(r" \1 ", close_brackets(artists))
    parts = _ARTIST_SPLIT.split(credit)
    out = []
    for p in parts:
        f = fold(p)
        if f and f not in out:
            out.append(f)
    return out

"""Copyright checks: FMA metadata against the Spotify tracks table, Freesound music
through an audio identification backend. Suspected matches wait for human review."""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from rapidfuzz import fuzz

from .records import Record

SPOTIFY_COLUMNS = ("track_id", "artists", "album_name", "track_name")

# Words that mark a version of a recording rather than another work.
_VERSION_WORDS = (
    r"remaster(?:ed)?|live|edit|version|mix|remix|mono|stereo|demo|acoustic|radio|explicit|clean|"
    r"instrumental|bonus|deluxe|single|original|extended|re-?recorded|session|take|unplugged|"
    r"feat\.?|ft\.?|featuring|with|from"
)
_BRACKET = re.compile(r"\s*[\(\[]([^\)\]]*)[\)\]]")
_DASH_SUFFIX = re.compile(r"\s+-\s+(.*)$")
_FEAT = re.compile(r"\s+(?:feat\.?|ft\.?|featuring)\s+(.*)$", re.I)
_ARTIST_SPLIT = re.compile(r"\s*(?:;|,|/|\s&\s|\sand\s|\sx\s|\sfeat\.?\s|\sft\.?\s|\sfeaturing\s|\swith\s|\svs\.?\s)\s*", re.I)


def fold(text: str) -> str:
    """Lower case, accents stripped, `&` spelled `and`, punctuation to spaces."""
    t = unicodedata.normalize("NFKD", str(text))
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = t.replace("&", " and ").replace("'", "").replace("\u2019", "")
    t = re.sub(r"[^\w\s]|_", " ", t)
    return re.sub(r"\s+", " ", t).strip()


@dataclass
class NormalTitle:
    text: str
    applied: list[str] = field(default_factory=list)
    featured: list[str] = field(default_factory=list)


def normalize_title(title: str) -> NormalTitle:
    t = str(title or "")
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


def split_artists(artists: str) -> list[str]:
    parts = _ARTIST_SPLIT.split(str(artists or ""))
    out = []
    for p in parts:
        f = fold(p)
        if f and f not in out:
            out.append(f)
    return out


@dataclass
class Match:
    flagged: bool
    score: float
    title_score: float = 0.0
    artist_score: float = 0.0
    candidate: dict[str, Any] = field(default_factory=dict)
    normalizations: list[str] = field(default_factory=list)
    candidates_considered: int = 0

    def evidence(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "score": round(self.score, 2),
            "title_score": round(self.title_score, 2),
            "artist_score": round(self.artist_score, 2),
            "candidate": self.candidate,
            "normalizations": self.normalizations,
            "candidates_considered": self.candidates_considered,
        }


class SpotifyIndex:
    """The Spotify tracks table, normalised and indexed by title and artist tokens."""

    def __init__(self, df: pd.DataFrame, title_threshold: float = 85.0, artist_threshold: float = 85.0):
        missing = [c for c in SPOTIFY_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"Spotify tracks table lacks column(s): {', '.join(missing)}")
        self.df = df.reset_index(drop=True)
        self.title_threshold = title_threshold
        self.artist_threshold = artist_threshold
        self.titles: list[str] = []
        self.artists: list[list[str]] = []
        self.by_token: dict[str, list[int]] = defaultdict(list)
        self.by_artist: dict[str, list[int]] = defaultdict(list)
        for i, (tn, ar) in enumerate(zip(self.df["track_name"].fillna(""), self.df["artists"].fillna(""))):
            nt = normalize_title(tn).text
            na = split_artists(ar.replace(";", ";"))
            self.titles.append(nt)
            self.artists.append(na)
            for tok in set(nt.split()):
                self.by_token[tok].append(i)
            for a in na:
                self.by_artist[a].append(i)
                for tok in set(a.split()):
                    if len(tok) >= 3:
                        self.by_token["@" + tok].append(i)

    @classmethod
    def from_csv(cls, path: Path, **kw) -> "SpotifyIndex":
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c in SPOTIFY_COLUMNS)
        return cls(df, **kw)

    def _candidates(self, title: str, artists: list[str]) -> set[int]:
        cands: set[int] = set()
        for a in artists:
            cands.update(self.by_artist.get(a, ()))
            for tok in a.split():
                if len(tok) >= 3:
                    cands.update(self.by_token.get("@" + tok, ()))
        toks = title.split()
        if toks:
            # The rarest title token blocks; common words alone would pull in everything.
            lists = sorted((self.by_token.get(t, []) for t in toks), key=len)
            if lists[0] and len(lists[0]) < 5000:
                cands.update(lists[0])
        return cands

    def match(self, title: str, artist: str) -> Match:
        nt = normalize_title(title)
        artists = split_artists(artist) + [a for a in nt.featured if a not in split_artists(artist)]
        norms = list(nt.applied)
        if len(split_artists(artist)) > 1:
            norms.append("multiple_artists")
        cands = self._candidates(nt.text, artists)
        best = Match(False, 0.0, normalizations=norms, candidates_considered=len(cands))
        for i in sorted(cands):
            ts = fuzz.ratio(nt.text, self.titles[i])
            if ts < self.title_threshold - 15:
                continue
            a_s = max((fuzz.token_sort_ratio(a, b) for a in artists for b in self.artists[i]), default=0.0)
            # A strong match on one field lowers the bar for the other.
            t_bar = self.title_threshold - (10 if a_s >= 95 else 0)
            a_bar = self.artist_threshold - (10 if ts >= 97 else 0)
            flagged = ts >= t_bar and a_s >= a_bar
            score = (ts + a_s) / 2
            if (flagged, score) > (best.flagged, best.score):
                row = self.df.iloc[i]
                best = Match(
                    flagged, score, ts, a_s,
                    {c: str(row[c]) for c in SPOTIFY_COLUMNS},
                    norms, len(cands),
                )
        return best


# --------------------------------------------------------------------------- audio identification


@dataclass
class IdResult:
    status: str  # "clear" | "review"
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class AudioIdBackend(Protocol):
    name: str

    def identify(self, record: Record) -> IdResult: ...


class ReviewBackend:
    """Every recording detected as music waits for a human."""

    name = "review"

    def identify(self, record: Record) -> IdResult:
        return IdResult("review", "copyright_audio_review", {"backend": self.name})


def make_backend(name: str) -> AudioIdBackend:
    if name == "review":
        return ReviewBackend()
    raise ValueError(f"unknown audio identification backend {name!r}")

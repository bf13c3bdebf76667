"""Matching track metadata (title, artists) against a copyright catalogue (the Spotify
tracks table), at corpus scale.

No loop over all pairs. Both sides are normalised once per distinct string; candidate
pairs come from blocking on keys (a normalised artist key, a normalised title) and on
their one-deletion neighbourhoods, which any single typo, insertion, deletion or
transposition shares; the candidates are then scored in bulk with rapidfuzz. A strong
match on one field lowers the bar for the other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from .catalogue import CATALOGUE_COLUMNS, read_catalogue
from .normalize import fold, normalize_title, split_artists

_STOP = {"the", "and", "feat", "ft", "featuring", "with", "x", "vs", "a"}
# A title shared by more catalogue rows than this ("intro") blocks nothing on its own.
MAX_TITLE_BLOCK = 3000


@dataclass(frozen=True)
class MatchSettings:
    title: float = 86.0  # both fields at least this ...
    artist: float = 86.0
    strong: float = 95.0  # ... or one field this strong ...
    relaxed: float = 72.0  # ... and the other at least this
    top_candidates: int = 3


def artist_key(name: str) -> str:
    toks = [t for t in fold(name).split() if t not in _STOP]
    return " ".join(sorted(toks))


def artist_keys(artists: str) -> list[str]:
    """Keys of the whole credit and of each artist in it: "Beatles, The" is one artist,
    "Kimiko, The Band" two; both readings are kept."""
    keys = []
    for k in [artist_key(artists)] + [artist_key(a) for a in split_artists(artists)]:
        if k and k not in keys:
            keys.append(k)
    return keys


def deletions(key: str) -> list[str]:
    """The key and its one-character deletions (for keys of 3 characters or more)."""
    if len(key) < 3 or len(key) > 40:
        return [key]
    return [key] + [key[:i] + key[i + 1 :] for i in range(len(key))]


def _variant_table(keys: pd.Series, name: str) -> pd.DataFrame:
    """(variant, key id) for every distinct key."""
    uniq = keys.drop_duplicates().reset_index(drop=True)
    rows = [(v, i) for i, k in enumerate(uniq) for v in set(deletions(k))]
    return pd.DataFrame(rows, columns=["variant", name]), uniq


@dataclass
class Prepared:
    frame: pd.DataFrame  # one row per input: title_norm, artist_full, applied
    keys: pd.DataFrame  # (row, artist key)


def _prepare(titles: pd.Series, artists: pd.Series) -> Prepared:
    titles = titles.fillna("").astype(str)
    artists = artists.fillna("").astype(str)
    nt = {t: normalize_title(t) for t in pd.unique(titles)}
    ak = {a: artist_keys(a) for a in pd.unique(artists)}
    frame = pd.DataFrame({
        "title_norm": [nt[t].text for t in titles],
        "featured": [nt[t].featured for t in titles],
        "applied": [nt[t].applied for t in titles],
        "artist_keys": [ak[a] for a in artists],
    })
    # featured artists in a title ("... (feat. X)") count as credits
    keys = [(i, k) for i, (ks, feat) in enumerate(zip(frame["artist_keys"], frame["featured"]))
            for k in ks + [artist_key(f) for f in feat]]
    frame["artist_full"] = [" ".join(sorted({t for k in ks for t in k.split()})) for ks in frame["artist_keys"]]
    return Prepared(frame, pd.DataFrame(keys, columns=["row", "key"]).drop_duplicates())


class CatalogueMatcher:
    def __init__(self, catalogue: pd.DataFrame, settings: MatchSettings | None = None):
        missing = [c for c in CATALOGUE_COLUMNS if c not in catalogue.columns]
        if missing:
            raise ValueError(f"the catalogue lacks column(s): {', '.join(missing)} (expected the Spotify schema)")
        self.settings = settings or MatchSettings()
        self.cat = catalogue.reset_index(drop=True)[list(CATALOGUE_COLUMNS)].fillna("").astype(str)
        self.prep = _prepare(self.cat["track_name"], self.cat["artists"])
        f = self.prep.frame
        # artist blocking: catalogue key variants -> rows
        self.artist_var, self.artist_uniq = _variant_table(self.prep.keys["key"], "akey")
        key_id = pd.Series(range(len(self.artist_uniq)), index=self.artist_uniq)
        self.key_rows = pd.DataFrame({"akey": key_id[self.prep.keys["key"]].to_numpy(),
                                      "crow": self.prep.keys["row"].to_numpy()})
        # title blocking: catalogue title variants -> rows, skipping titles too common to block on
        tcount = f["title_norm"].value_counts()
        blockable = f["title_norm"][f["title_norm"].map(tcount) <= MAX_TITLE_BLOCK]
        self.title_var, self.title_uniq = _variant_table(blockable[blockable != ""], "tkey")
        tid = pd.Series(range(len(self.title_uniq)), index=self.title_uniq)
        ok = f["title_norm"].isin(tid.index)
        self.title_rows = pd.DataFrame({"tkey": tid[f.loc[ok, "title_norm"]].to_numpy(),
                                        "crow": np.flatnonzero(ok.to_numpy())})

    @classmethod
    def from_csv(cls, path: Path, settings: MatchSettings | None = None) -> "CatalogueMatcher":
        df, _notes = read_catalogue(path)
        return cls(df, settings)

    def _pairs(self, q: Prepared) -> pd.DataFrame:
        # artist route
        qa_var, qa_uniq = _variant_table(q.keys["key"], "qkey")
        a = qa_var.merge(self.artist_var, on="variant")[["qkey", "akey"]].drop_duplicates()
        qkey_id = pd.Series(range(len(qa_uniq)), index=qa_uniq)
        qk = pd.DataFrame({"qkey": qkey_id[q.keys["key"]].to_numpy(), "qrow": q.keys["row"].to_numpy()})
        by_artist = qk.merge(a, on="qkey").merge(self.key_rows, on="akey")[["qrow", "crow"]]
        # title route
        titles = q.frame["title_norm"]
        qt_var, qt_uniq = _variant_table(titles[titles != ""], "qtkey")
        t = qt_var.merge(self.title_var, on="variant")[["qtkey", "tkey"]].drop_duplicates()
        qt_id = pd.Series(range(len(qt_uniq)), index=qt_uniq)
        has = titles != ""
        qt = pd.DataFrame({"qtkey": qt_id[titles[has]].to_numpy(), "qrow": np.flatnonzero(has.to_numpy())})
        by_title = qt.merge(t, on="qtkey").merge(self.title_rows, on="tkey")[["qrow", "crow"]]
        return pd.concat([by_artist, by_title], ignore_index=True).drop_duplicates()

    def match(self, titles, artists) -> pd.DataFrame:
        """One row per query (in order): flagged, score, title_score, artist_score, candidate
        row index (-1: none), the top candidates and the normalisations applied."""
        titles = pd.Series(list(titles), dtype=object)
        artists = pd.Series(list(artists), dtype=object)
        q = _prepare(titles, artists)
        pairs = self._pairs(q)
        s = self.settings
        n = len(q.frame)
        out = pd.DataFrame({"flagged": np.zeros(n, bool), "score": np.zeros(n), "title_score": np.zeros(n),
                            "artist_score": np.zeros(n), "crow": np.full(n, -1), "candidates": [[] for _ in range(n)],
                            "candidates_considered": np.zeros(n, int)})
        out["normalizations"] = [sorted(set(ap) | ({"multiple_artists"} if len(split_artists(a)) > 1 else set()))
                                 for ap, a in zip(q.frame["applied"], artists)]
        if pairs.empty:
            return out
        qr, cr = pairs["qrow"].to_numpy(), pairs["crow"].to_numpy()
        qt = q.frame["title_norm"].to_numpy()[qr]
        ct = self.prep.frame["title_norm"].to_numpy()[cr]
        ts = process.cpdist(qt, ct, scorer=fuzz.ratio, workers=-1)
        qa = q.frame["artist_full"].to_numpy()[qr]
        ca = self.prep.frame["artist_full"].to_numpy()[cr]
        # the strings hold sorted tokens, so this is never below their plain ratio
        as_ = process.cpdist(qa, ca, scorer=fuzz.token_set_ratio, workers=-1)
        # empty fields score nothing, whatever the scorer says
        ts = np.where((qt == "") | (ct == ""), 0.0, ts)
        as_ = np.where((qa == "") | (ca == ""), 0.0, as_)
        flagged = ((ts >= s.title) & (as_ >= s.artist)) | ((as_ >= s.strong) & (ts >= s.relaxed)) | (
            (ts >= s.strong) & (as_ >= s.relaxed))
        score = (ts + as_) / 2
        scored = pd.DataFrame({"qrow": qr, "crow": cr, "ts": ts, "as": as_, "flagged": flagged, "score": score})
        scored = scored.sort_values(["qrow", "flagged", "score", "crow"], ascending=[True, False, False, True])
        considered = scored.groupby("qrow").size()
        out.loc[considered.index, "candidates_considered"] = considered.to_numpy()
        top = scored.groupby("qrow").head(s.top_candidates)
        best = top.groupby("qrow").head(1).set_index("qrow")
        out.loc[best.index, "flagged"] = best["flagged"].to_numpy()
        out.loc[best.index, "score"] = best["score"].to_numpy()
        out.loc[best.index, "title_score"] = best["ts"].to_numpy()
        out.loc[best.index, "artist_score"] = best["as"].to_numpy()
        out.loc[best.index, "crow"] = best["crow"].to_numpy()
        flagged_q = best.index[best["flagged"].to_numpy()]
        ev = top[top["qrow"].isin(flagged_q)]
        cols = {c: self.cat[c].to_numpy() for c in CATALOGUE_COLUMNS}
        cands = out["candidates"].to_numpy()
        for qrow, crow, t_s, a_s, fl in zip(ev["qrow"].to_numpy(), ev["crow"].to_numpy(), ev["ts"].to_numpy(),
                                           ev["as"].to_numpy(), ev["flagged"].to_numpy()):
            cands[qrow].append({**{c: cols[c][crow] for c in CATALOGUE_COLUMNS}, "title_score": round(float(t_s), 2),
                                "artist_score": round(float(a_s), 2), "flagged": bool(fl)})
        return out

    def candidate(self, crow: int) -> dict:
        return {c: self.cat.at[crow, c] for c in CATALOGUE_COLUMNS} if crow >= 0 else {}

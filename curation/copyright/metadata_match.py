"""Matching track metadata (title, artists) against a copyright catalogue (the Spotify
tracks table), at corpus scale.

An artist is identified by its rare words. Each credited artist (and the whole credit, for
"Beatles, The") becomes a set of tokens weighted by how rare they are among the
catalogue's artists (inverse document frequency), so "Collective", "Band", "Orchestra" or
"Lil" weigh little and a name's own words weigh much. Two artists are as similar as the
weighted Jaccard overlap of their tokens; a query token that is not in the catalogue's
vocabulary but one typo away from a word of it (4 letters or more) counts as that word.
Credits are compared artist by artist, and the best pair counts, so one shared word in a
long credit is not a match.

Candidates come from joining on tokens (no pair of rows is compared unless their artists
share a word that is not among the very commonest); titles are then compared in bulk
(rapidfuzz OSA distance over the candidate pairs): equal after normalisation, or within a
typo (1 edit from 4 characters, 2 from 10) with the same numbers. A title that many
catalogue artists use ("Intro", "Love", "Track 1"), or a short one, needs stronger artist
evidence than a long rare one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import OSA

from .catalogue import CATALOGUE_COLUMNS, read_catalogue
from .normalize import fold, normalize_title, split_artists

_STOP = {"the", "and", "feat", "ft", "featuring", "with", "x", "vs", "a", "&"}
_SLIPPABLE = ("the", "and", "feat", "with")
_STEM_CUT = re.compile(r"\s+-\s+|\s*[\(\[]")
_DIGITS = re.compile(r"\d+")
# Tokens used by more than this share of catalogue artists are not joined on (they would
# pair everyone); they still weigh (a little) in the similarity.
BLOCK_MAX_SHARE = 0.001
# A word read through a typo is weaker evidence than the word itself ("Prévoir" may be
# "Revoir" misspelt, or another name): it counts this much of its weight.
TYPO_CREDIT = 0.9


@dataclass(frozen=True)
class MatchSettings:
    artist_min: float = 0.75  # weighted token overlap of the best artist pair, for a rare title ...
    artist_common_title: float = 0.9  # ... and for a common or short one
    common_title_artists: int = 3  # a title used by this many catalogue artists is common
    short_title_chars: int = 5  # a title this short (normalised) is common whatever its count
    top_candidates: int = 3

    @property
    def artist_floor(self) -> float:
        """The least artist overlap that can flag anything."""
        return min(self.artist_min, self.artist_common_title)


def title_edits_allowed(n: np.ndarray) -> np.ndarray:
    """One typo in a title of 4 characters or more (the longer of the two: "Sty" for
    "Stay"). Two would let in the artist's other songs that differ by one short word
    ("Sagen Tür Lieb" / "Sagen Zug Lieb")."""
    return np.where(n >= 4, 1, 0)


def artist_key(name: str) -> str:
    toks = [t for t in fold(name).split() if t not in _STOP]
    return " ".join(dict.fromkeys(toks))


def artist_keys(artists: str, featured: list[str] = ()) -> list[str]:
    """Keys of the whole credit and of each artist in it: "Beatles, The" is one artist,
    "Kimiko, The Band" two; both readings are kept."""
    keys = []
    for k in [artist_key(artists)] + [artist_key(a) for a in split_artists(artists)] + [artist_key(f) for f in featured]:
        if k and k not in keys:
            keys.append(k)
    return keys


def deletions(word: str) -> list[str]:
    """The word and its one-character deletions: two words one typo apart share one."""
    return [word] + [word[:i] + word[i + 1 :] for i in range(len(word))]


def _variants(keys: pd.Series) -> pd.DataFrame:
    """(variant, id) for keys (by position): the key and, from 3 to 40 characters, its
    one-character deletions."""
    var = keys.reset_index(drop=True).map(lambda k: deletions(k) if 3 <= len(k) <= 40 else [k]).explode()
    return pd.DataFrame({"variant": var.to_numpy(), "id": var.index.to_numpy()}).drop_duplicates()


@dataclass
class Prepared:
    frame: pd.DataFrame  # one row per input: title_norm, tlen, digits, stem, slen, stem_digits, applied
    keys: pd.DataFrame  # (row, key): the artist keys of each row


def _numbers(texts: pd.Series) -> list[str]:
    return [" ".join(_DIGITS.findall(t)) for t in texts]


def _prepare(titles: pd.Series, artists: pd.Series, featured: bool) -> Prepared:
    titles = titles.fillna("").astype(str)
    artists = artists.fillna("").astype(str)
    nt = {t: normalize_title(t) for t in pd.unique(titles)}
    frame = pd.DataFrame({
        "title_norm": [nt[t].text for t in titles],
        "applied": [nt[t].applied for t in titles],
    })
    frame["digits"] = _numbers(frame["title_norm"])
    frame["tlen"] = frame["title_norm"].str.len()
    # the title before any bracket or " - " part, whatever it says ("Pretty Fly (For A White
    # Guy)", "Kitchen - Reastered"): a weaker reading, used with stronger artist evidence
    stems = {t: fold(_STEM_CUT.split(t, maxsplit=1)[0]) for t in pd.unique(titles)}
    frame["stem"] = [stems[t] or nt[t].text for t in titles]
    frame["slen"] = frame["stem"].str.len()
    frame["stem_digits"] = _numbers(frame["stem"])
    # featured artists in a query's title ("... (feat. X)") count as its credits
    pairs = pd.DataFrame({"artists": artists.to_numpy(),
                          "feat": [tuple(nt[t].featured) if featured else () for t in titles]})
    uniq = pairs.drop_duplicates().reset_index(drop=True)
    uniq["keys"] = [artist_keys(a, f) for a, f in zip(uniq["artists"], uniq["feat"])]
    row_u = pairs.merge(uniq.reset_index(), on=["artists", "feat"], how="left")["index"].to_numpy()
    ex = uniq["keys"].explode().dropna()
    per_u = pd.DataFrame({"u": ex.index.to_numpy(), "key": ex.to_numpy()})
    rows = pd.DataFrame({"row": np.arange(len(frame)), "u": row_u}).merge(per_u, on="u")[["row", "key"]]
    return Prepared(frame, rows)


def _tokens(keys: pd.Series) -> pd.DataFrame:
    """(key, token) for distinct keys."""
    keys = keys.reset_index(drop=True)
    tok = keys.str.split(" ").explode()
    return pd.DataFrame({"key": keys.to_numpy()[tok.index.to_numpy()], "tok": tok.to_numpy()}).drop_duplicates()


class CatalogueMatcher:
    def __init__(self, catalogue: pd.DataFrame, settings: MatchSettings | None = None):
        missing = [c for c in CATALOGUE_COLUMNS if c not in catalogue.columns]
        if missing:
            raise ValueError(f"the catalogue lacks column(s): {', '.join(missing)} (expected the Spotify schema)")
        self.settings = settings or MatchSettings()
        self.cat = catalogue.reset_index(drop=True)[list(CATALOGUE_COLUMNS)].fillna("").astype(str)
        if self.cat.empty:  # a well-formed table with no rows: it matches nothing
            return
        self.prep = _prepare(self.cat["track_name"], self.cat["artists"], featured=False)
        f = self.prep.frame
        # how many catalogue artists (credits) use each title
        credits = pd.DataFrame({"t": f["title_norm"], "a": self.cat["artists"].str.lower()})
        self.title_artists = credits[credits["t"] != ""].groupby("t")["a"].nunique()
        # word weights over distinct catalogue artist keys; words as integer ids
        self.ckeys = pd.Series(self.prep.keys["key"].drop_duplicates().to_numpy())
        ctok = _tokens(self.ckeys)
        self.vocab = pd.Index(ctok["tok"].unique())
        ctok["tid"] = self.vocab.get_indexer(ctok["tok"])
        df = np.bincount(ctok["tid"].to_numpy(), minlength=len(self.vocab))
        n = len(self.ckeys)
        self.idf = np.log((n + 1) / (df + 0.5))
        self.unseen_idf = float(np.log((n + 1) / 0.5))
        self.blockable = df <= max(5, BLOCK_MAX_SHARE * n)
        ctok["w"] = self.idf[ctok["tid"].to_numpy()]
        ctok["ck"] = pd.Index(self.ckeys).get_indexer(ctok["key"])
        self.ctok = ctok[["ck", "tid", "w"]].reset_index(drop=True)
        self.ck_weight = np.bincount(ctok["ck"], weights=ctok["w"], minlength=n)
        self.ck_loose = np.bincount(ctok["ck"], weights=ctok["w"] * ~self.blockable[ctok["tid"]], minlength=n)
        self.key_rows = pd.DataFrame({"ck": pd.Index(self.ckeys).get_indexer(self.prep.keys["key"]),
                                      "crow": self.prep.keys["row"].to_numpy()})
        self.key_var = _variants(self.ckeys).rename(columns={"id": "ck"})

    @classmethod
    def from_csv(cls, path: Path, settings: MatchSettings | None = None) -> "CatalogueMatcher":
        df, _notes = read_catalogue(path)
        return cls(df, settings)

    def _query_tokens(self, qkeys: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
        """(qk, tid, w): the query keys' words with the catalogue's weights (an unseen word
        weighs as the rarest, with an id past the vocabulary's), and all the words."""
        qtok = _tokens(qkeys)
        qtok["qk"] = pd.Index(qkeys).get_indexer(qtok["key"])
        tid = self.vocab.get_indexer(qtok["tok"])
        unseen = pd.Index(qtok["tok"].to_numpy()[tid < 0]).unique()
        tid[tid < 0] = len(self.vocab) + unseen.get_indexer(qtok["tok"].to_numpy()[tid < 0])
        qtok["tid"] = tid
        w = np.where(tid < len(self.vocab), self.idf[np.minimum(tid, len(self.vocab) - 1)], self.unseen_idf)
        # an unseen word one typo from a word that never counts ("Teh", "Tha") weighs nothing
        # (and so does an unseen initial: "D Luciano" for "DJ Luciano")
        slip = unseen[[len(u) <= 2 or (len(u) <= 5 and any(OSA.distance(u, st) <= 1 for st in _SLIPPABLE))
                       for u in unseen]]
        w[qtok["tok"].isin(slip).to_numpy()] = 0.0
        qtok["w"] = w
        words = np.concatenate([self.vocab.to_numpy(), unseen.to_numpy()]).astype(object)
        return qtok[["qk", "tid", "w"]].reset_index(drop=True), words

    def _artist_pairs(self, qkeys: pd.Series) -> pd.DataFrame:
        """(qk, ck, sim, typo) for query and catalogue artist keys one typo apart or sharing a
        rare word: sim is their weighted word overlap, typo whether a word matched by typo."""
        s = self.settings
        qtok, words = self._query_tokens(qkeys)
        nq = len(qkeys)
        qw = np.bincount(qtok["qk"], weights=qtok["w"], minlength=nq)
        nv = len(self.vocab)
        q_block = np.zeros(len(qtok), bool)
        known = qtok["tid"].to_numpy() < nv
        q_block[known] = self.blockable[qtok["tid"].to_numpy()[known]]
        q_loose = np.bincount(qtok["qk"], weights=qtok["w"] * ~q_block, minlength=nq)
        # candidates: keys one typo apart (they share a one-deletion variant) ...
        qv = _variants(qkeys).rename(columns={"id": "qk"})
        by_key = qv.merge(self.key_var, on="variant")[["qk", "ck"]].drop_duplicates()
        # ... and keys sharing a rare word ("Kimiko" / "Kimiko Band"), kept when the words
        # they share could make them similar enough
        cb = self.ctok[self.blockable[self.ctok["tid"].to_numpy()]]
        j = qtok[q_block].merge(cb[["ck", "tid"]], on="tid")
        by_word = j.groupby(["qk", "ck"], sort=False)["w"].sum().reset_index()
        qk_, ck_ = by_word["qk"].to_numpy(), by_word["ck"].to_numpy()
        upper = (by_word["w"].to_numpy() + np.minimum(q_loose[qk_], self.ck_loose[ck_])) / np.maximum(
            np.maximum(qw[qk_], self.ck_weight[ck_]), 1e-9)
        by_word = by_word.loc[upper >= s.artist_floor - 1e-9, ["qk", "ck"]]
        pairs = pd.concat([by_key, by_word], ignore_index=True).drop_duplicates().reset_index(drop=True)
        if pairs.empty:
            return pd.DataFrame({"qk": [], "ck": [], "sim": [], "typo": []})
        pairs["p"] = np.arange(len(pairs))
        # the shared weight over every word the two keys have in common ...
        qside = pairs.merge(qtok, on="qk")
        cside = pairs.merge(self.ctok, on="ck")
        both = qside.merge(cside[["p", "tid"]], on=["p", "tid"], how="left", indicator=True)
        matched = (both["_merge"] == "both").to_numpy()
        inter = np.bincount(both["p"].to_numpy()[matched], weights=both["w"].to_numpy()[matched],
                            minlength=len(pairs))
        # ... and the words left over on both sides that are one typo apart ("Kra"/"Kara",
        # "Memo"/"Momo"), which count as shared, at TYPO_CREDIT of the catalogue word's weight
        q_left = both.loc[~matched, ["p", "tid", "w"]]
        c_in_q = cside[["p", "tid"]].merge(qside[["p", "tid"]], on=["p", "tid"], how="left", indicator=True)
        c_left = cside.loc[(c_in_q["_merge"] == "left_only").to_numpy(), ["p", "tid", "w"]]
        extra_inter = np.zeros(len(pairs))
        extra_union = np.zeros(len(pairs))
        tp = q_left.merge(c_left, on="p", suffixes=("_q", "_c"))
        if len(tp):
            tq, tc = words[tp["tid_q"].to_numpy()], words[tp["tid_c"].to_numpy()]
            d = process.cpdist(tq, tc, scorer=OSA.distance, workers=-1)
            lq = np.fromiter(map(len, tq), int, len(tq))
            lc = np.fromiter(map(len, tc), int, len(tc))
            # a slip in a frequent word ("D"/"DJ", "Li"/"Lil") costs little either way
            frequent = ~self.blockable[tp["tid_c"].to_numpy()]
            tp = tp[(d <= 1) & (((np.maximum(lq, lc) >= 4) & (np.minimum(lq, lc) >= 3)) | frequent)]
            tp = tp.drop_duplicates(["p", "tid_q"]).drop_duplicates(["p", "tid_c"])
            extra_inter = np.bincount(tp["p"], weights=TYPO_CREDIT * tp["w_c"], minlength=len(pairs))
            extra_union = np.bincount(tp["p"], weights=tp["w_q"], minlength=len(pairs))  # one word, not two
        qk_, ck_ = pairs["qk"].to_numpy(), pairs["ck"].to_numpy()
        union = qw[qk_] + self.ck_weight[ck_] - inter - extra_union
        pairs["sim"] = np.where(union > 0, np.minimum((inter + extra_inter) / np.maximum(union, 1e-9), 1.0), 0.0)
        pairs["typo"] = extra_inter > 0
        return pairs[["qk", "ck", "sim", "typo"]]

    def match(self, titles, artists) -> pd.DataFrame:
        """One row per query (in order): flagged, score, title_score, artist_score, candidate
        row index (-1: none), the top candidates and the normalisations applied."""
        s = self.settings
        titles = pd.Series(list(titles), dtype=object)
        artists = pd.Series(list(artists), dtype=object)
        q = _prepare(titles, artists, featured=True)
        n = len(q.frame)
        out = pd.DataFrame({"flagged": np.zeros(n, bool), "score": np.zeros(n), "title_score": np.zeros(n),
                            "artist_score": np.zeros(n), "crow": np.full(n, -1), "candidates": [[] for _ in range(n)],
                            "candidates_considered": np.zeros(n, int)})
        out["normalizations"] = [sorted(set(ap) | ({"multiple_artists"} if len(split_artists(a)) > 1 else set()))
                                 for ap, a in zip(q.frame["applied"], artists)]
        if self.cat.empty:
            return out
        qkeys = pd.Series(q.keys["key"].drop_duplicates().to_numpy())
        kp = self._artist_pairs(qkeys)
        kp = kp[kp["sim"] >= s.artist_floor]
        if kp.empty:
            return out
        qk_rows = pd.DataFrame({"qk": pd.Index(qkeys).get_indexer(q.keys["key"]), "qrow": q.keys["row"].to_numpy()})
        pairs = kp.merge(qk_rows, on="qk").merge(self.key_rows, on="ck")
        pairs = pairs.sort_values("sim", ascending=False).drop_duplicates(["qrow", "crow"])
        qr, cr = pairs["qrow"].to_numpy(), pairs["crow"].to_numpy()
        qt = q.frame["title_norm"].to_numpy()[qr]
        ct = self.prep.frame["title_norm"].to_numpy()[cr]
        edits = process.cpdist(qt, ct, scorer=OSA.distance, workers=-1)
        ql, cl = q.frame["tlen"].to_numpy()[qr], self.prep.frame["tlen"].to_numpy()[cr]
        longest, shortest = np.maximum(ql, cl), np.minimum(ql, cl)
        same_numbers = q.frame["digits"].to_numpy()[qr] == self.prep.frame["digits"].to_numpy()[cr]
        title_ok = (shortest > 0) & same_numbers & (edits <= title_edits_allowed(longest))
        # either title's stem against the other title (or stem)
        qs, cs = q.frame["stem"].to_numpy()[qr], self.prep.frame["stem"].to_numpy()[cr]
        stem_edits = np.minimum.reduce([process.cpdist(qs, ct, scorer=OSA.distance, workers=-1),
                                        process.cpdist(qt, cs, scorer=OSA.distance, workers=-1),
                                        process.cpdist(qs, cs, scorer=OSA.distance, workers=-1)])
        qsl, csl = q.frame["slen"].to_numpy()[qr], self.prep.frame["slen"].to_numpy()[cr]
        stem_numbers = q.frame["stem_digits"].to_numpy()[qr] == self.prep.frame["stem_digits"].to_numpy()[cr]
        stem_ok = ~title_ok & stem_numbers
        stem_ok &= (np.minimum(qsl, csl) > 0) & (stem_edits <= title_edits_allowed(np.maximum(qsl, csl)))
        t_score = np.where(longest > 0, 100.0 * (1 - edits / np.maximum(longest, 1)), 0.0)
        users = self.title_artists.reindex(ct).fillna(0).to_numpy()
        common = (users >= s.common_title_artists) | (shortest <= s.short_title_chars) | stem_ok
        a_sim = pairs["sim"].to_numpy()
        flagged = (title_ok | stem_ok) & (a_sim >= np.where(common, s.artist_common_title, s.artist_min) - 1e-9)
        a_score = 100.0 * a_sim
        scored = pd.DataFrame({"qrow": qr, "crow": cr, "ts": t_score, "as": a_score, "flagged": flagged,
                               "score": (t_score + a_score) / 2, "common": common, "users": users,
                               "typo": pairs["typo"].to_numpy() | (edits > 0)})
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
        norms = out["normalizations"].to_numpy()
        for qrow in best.index[(best["flagged"] & best["typo"]).to_numpy()]:
            norms[qrow] = sorted(set(norms[qrow]) | {"typo"})
        flagged_q = best.index[best["flagged"].to_numpy()]
        ev = top[top["qrow"].isin(flagged_q)]
        cols = {c: self.cat[c].to_numpy() for c in CATALOGUE_COLUMNS}
        cands = out["candidates"].to_numpy()
        for qrow, crow, t_s, a_s, fl, cm, us in zip(ev["qrow"].to_numpy(), ev["crow"].to_numpy(), ev["ts"].to_numpy(),
                                                   ev["as"].to_numpy(), ev["flagged"].to_numpy(),
                                                   ev["common"].to_numpy(), ev["users"].to_numpy()):
            cands[qrow].append({**{c: cols[c][crow] for c in CATALOGUE_COLUMNS}, "title_score": round(float(t_s), 2),
                                "artist_score": round(float(a_s), 2), "flagged": bool(fl),
                                "title_common": bool(cm), "title_catalogue_artists": int(us)})
        return out

    def candidate(self, crow: int) -> dict:
        return {c: self.cat.at[crow, c] for c in CATALOGUE_COLUMNS} if crow >= 0 else {}

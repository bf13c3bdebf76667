"""Which prints hold the same audio: an in-memory landmark index and the pairs it finds.

Every indexed hash is one 8-byte row (hash, print, frame), sorted by hash. A print is looked up by
joining its hashes with the index: the same audio in another print shows as many hashes that
agree on one time offset (within a frame either way). For each other print, the best offset's
count is the score; the agreeing hashes' first and last frames give the seconds the two share
and where. Hashes found in more than `max_refs` prints say nothing about any one of them and
are left out, which also keeps the work per lookup flat however large the index grows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..copyright.fingerprint import DT_MAX, FRAME_SECONDS
from .prints import Print

MAX_REFS = 32  # a hash in more prints than this is too common to count (benchmarks/duplicates.py: the lookup stays flat)
MIN_SCORE = 10  # agreeing hashes, at least
#: ... and at least this share of the query's hashes in the part the two share: two unrelated
#: recordings agree on a few hashes at some offset; a copy keeps a good part of them (in
#: benchmarks/duplicates.py, at least 0.15 of a copy against its original, 0.11 between two
#: lossy copies of one original, 32 kbit/s mp3 and low-quality Ogg included).
MIN_AGREE = 0.1
PAIR_SPAN_PAD = DT_MAX * FRAME_SECONDS / 2  # a landmark spans half its zone on average


@dataclass
class Hit:
    """Print `other` holds the audio of the query from `offset_seconds` of `other` on."""

    other: int
    score: int
    offset_seconds: float  # where the shared part starts in `other`, minus where it starts in the query
    start_seconds: float  # where the shared part starts in the query
    shared_seconds: float
    agree: float  # score / the query's hashes in the shared part


#: The index is one sorted uint64 array: hash (23 bits) | print (20 bits) | frame (20 bits),
#: 8 bytes a landmark, sorted in place. Hence at most 2**20 prints (about a million distinct
#: recordings) and the first 2**20 frames (4.6 hours) of each.
R_BITS = T_BITS = 20
MAX_PRINTS = 1 << R_BITS
MAX_FRAME = (1 << T_BITS) - 1
BLOCK = 1 << 22  # landmarks handled at once while the index is built


class IndexFull(ValueError):
    pass


class Index:
    def __init__(self, prints: list[Print], max_refs: int = MAX_REFS):
        if len(prints) > MAX_PRINTS:
            raise IndexFull(f"{len(prints)} prints: the duplicates index holds at most {MAX_PRINTS}")
        total = sum(p.count for p in prints)
        packed = np.empty(total, np.uint64)
        at = 0
        for i, p in enumerate(prints):  # each print's landmarks read once (from the cache, for a light one)
            hashes, frames = p.arrays()
            keep = frames <= MAX_FRAME
            h, t = hashes[keep].astype(np.uint64), frames[keep].astype(np.uint64)
            packed[at:at + len(h)] = (h << np.uint64(R_BITS + T_BITS)) | (np.uint64(i) << np.uint64(T_BITS)) | t
            at += len(h)
        if at < total:  # landmarks past MAX_FRAME: left out
            packed = packed[:at].copy()
        packed.sort()
        # how many prints hold each hash (a print's own repeats count once), in blocks: no
        # temporary as large as the index
        shift_h = np.uint64(R_BITS + T_BITS)
        refs = np.zeros(1 << 24, np.int32)
        prev = None
        for lo in range(0, len(packed), BLOCK):
            hr = packed[lo:lo + BLOCK] >> np.uint64(T_BITS)
            first = np.ones(len(hr), bool)
            first[1:] = hr[1:] != hr[:-1]
            if prev is not None and len(hr):
                first[0] = hr[0] != prev
            if len(hr):
                prev = hr[-1]
            np.add.at(refs, (hr[first] >> np.uint64(R_BITS)).astype(np.int64), 1)
        common = np.flatnonzero(refs > max_refs).astype(np.int64)
        if len(common):  # dropped in place, block by block (what is kept moves forward)
            is_common = refs > max_refs
            w = 0
            for lo in range(0, len(packed), BLOCK):
                block = packed[lo:lo + BLOCK]
                kept = block[~is_common[(block >> shift_h).astype(np.int64)]]
                packed[w:w + len(kept)] = kept
                w += len(kept)
            packed.resize(w, refcheck=False)
        self.packed = packed
        self.common = common
        self.is_common = refs > max_refs  # by hash value: a lookup's test is one gather
        self.size = len(prints)

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes)

    def __len__(self) -> int:
        return len(self.packed)

    def indexed(self, p: Print) -> tuple[np.ndarray, np.ndarray]:
        """The print's hashes (and frames) that the index counts."""
        hashes, frames = p.arrays()
        keep = ~self.is_common[hashes] & (frames <= MAX_FRAME)
        return hashes[keep], frames[keep]

    def lookup(self, p: Print, exclude: int = -1, min_score: int = MIN_SCORE, min_agree: float = MIN_AGREE) -> list[Hit]:
        qh, qt = self.indexed(p)
        if len(qh) < min_score:
            return []
        shift = np.uint64(R_BITS + T_BITS)
        lo = np.searchsorted(self.packed, qh.astype(np.uint64) << shift, "left")
        hi = np.searchsorted(self.packed, (qh.astype(np.uint64) + np.uint64(1)) << shift, "left")
        n = hi - lo
        total = int(n.sum())
        if total == 0:
            return []
        q = np.repeat(np.arange(len(qh)), n)
        pos = np.repeat(lo, n) + (np.arange(total) - np.repeat(np.cumsum(n) - n, n))
        got = self.packed[pos]
        other = ((got >> np.uint64(T_BITS)) & np.uint64(MAX_PRINTS - 1)).astype(np.int64)
        dt = (got & np.uint64(MAX_FRAME)).astype(np.int64) - qt[q]
        tq = qt[q]
        mine = other != exclude
        other, dt, tq = other[mine], dt[mine], tq[mine]
        if len(other) < min_score:
            return []
        key = (other.astype(np.int64) << 32) + (dt + (1 << 31))
        order = np.argsort(key, kind="stable")
        ks, tqs = key[order], tq[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        uk, cnt = ks[starts], np.diff(np.r_[starts, len(ks)])
        # a frame either way (a trim that is not a whole frame, a resampler's delay)
        smooth = cnt.copy()
        for d in (-1, 1):
            j = np.searchsorted(uk, uk + d)
            ok = (j < len(uk)) & (uk[np.minimum(j, len(uk) - 1)] == uk + d)
            smooth[ok] += cnt[j[ok]]
        owner = uk >> 32
        cand = smooth >= min_score
        if not cand.any():
            return []
        uk, smooth, owner = uk[cand], smooth[cand], owner[cand]
        pick = np.lexsort((-smooth, owner))
        uk, smooth, owner = uk[pick], smooth[pick], owner[pick]
        best = np.ones(len(owner), bool)
        best[1:] = owner[1:] != owner[:-1]
        kb, sb, ob = uk[best], smooth[best], owner[best]
        # the agreeing hashes of each best offset (and a frame either way) lie together in the
        # sorted keys: their first and last query frames, for every candidate at once
        lo = np.searchsorted(ks, kb - 1, "left")
        hi = np.searchsorted(ks, kb + 1, "right")
        bounds = np.stack([lo, hi], axis=1).ravel()
        padded = np.r_[tqs, 0]
        f0 = np.minimum.reduceat(padded, bounds)[::2]
        f1 = np.maximum.reduceat(padded, bounds)[::2]
        sq = np.sort(qt)
        inside = np.searchsorted(sq, f1, "right") - np.searchsorted(sq, f0, "left")
        agree = sb / np.maximum(inside, 1)
        hits = []
        for k, s, o, a, b, g in zip(kb, sb, ob, f0, f1, agree):
            if g < min_agree:
                continue
            d = int(k - (int(o) << 32) - (1 << 31))
            span = min((int(b) - int(a)) * FRAME_SECONDS + PAIR_SPAN_PAD, p.seconds)
            hits.append(Hit(int(o), int(s), round(d * FRAME_SECONDS, 3), round(int(a) * FRAME_SECONDS, 3),
                            round(span, 2), round(min(float(g), 1.0), 3)))
        return hits

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

from ..copyright.fingerprint import DT_MAX, FRAME_SECONDS, IDENTITY, transformed_peak_hashes
from .prints import FAN_OUT, Print

MAX_REFS = 32  # a hash in more prints than this is too common to count (benchmarks/duplicates.py: the lookup stays flat)
MIN_SCORE = 10  # agreeing hashes, at least
#: ... and at least this share of the query's hashes in the part the two share: two unrelated
#: recordings agree on a few hashes at some offset; a copy keeps a good part of them (in
#: benchmarks/duplicates.py, at least 0.15 of a copy against its original, 0.11 between two
#: lossy copies of one original, 32 kbit/s mp3 and low-quality Ogg included).
MIN_AGREE = 0.1
#: ... and a copy found only under a transform, this share: every transform tried is one more
#: chance for chance. In benchmarks/duplicates.py two parts of one looped soundtrack that
#: repeat a passage with changes agree on up to 0.21 of their hashes under some transform,
#: over 5-10 s; a stretched copy keeps 0.31-0.41 against its original.
MIN_AGREE_DERIVED = 0.25
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
    speed: float = 1.0  # the query plays this many times as fast as `other` (a derived copy)
    pitch: float = 0.0  # ... and this many semitones higher


#: The index is one sorted uint64 array: hash (23 bits) | print (20 bits) | frame (20 bits),
#: 8 bytes a landmark, sorted in place. Hence at most 2**20 prints (about a million distinct
#: recordings) and the first 2**20 frames (4.6 hours) of each.
R_BITS = T_BITS = 20
MAX_PRINTS = 1 << R_BITS
MAX_FRAME = (1 << T_BITS) - 1
H_SIZE = 1 << 23  # landmark hashes are below this (copyright.fingerprint.peak_hashes: 8 + 9 + 6 bits)
G_BITS, D_BITS = 6, 22  # a lookup's keys: print | transform | offset (+- 2**21 frames)
#: The changes a derived copy is looked for under (speed of the query against the other, pitch
#: in semitones): tape-like speed (time and pitch together) and tempo in steps of 1%, key in
#: steps of 1/6 semitone, each up to 5% or one semitone (the copyright fingerprint's
#: `TRANSFORMS`, with tempo in the steps of speed). A copy between two steps drifts from one
#: offset by at most half a step, which the lookup follows (`_follow`).
_STEPS = (0.95, 0.96, 0.97, 0.98, 0.99, 1.01, 1.02, 1.03, 1.04, 1.05)
DERIVED: tuple[tuple[float, float], ...] = (
    *((s, round(12 * float(np.log2(s)), 4)) for s in _STEPS),
    *((s, 0.0) for s in _STEPS),
    *((1.0, round(k / 6, 4)) for k in (-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)),
)
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
            keep = (frames <= MAX_FRAME) & (hashes >= 0) & (hashes < H_SIZE)
            h, t = hashes[keep].astype(np.uint64), frames[keep].astype(np.uint64)
            packed[at:at + len(h)] = (h << np.uint64(R_BITS + T_BITS)) | (np.uint64(i) << np.uint64(T_BITS)) | t
            at += len(h)
        if at < total:  # landmarks past MAX_FRAME: left out
            packed = packed[:at].copy()
        packed.sort()
        # how many prints hold each hash (a print's own repeats count once), in blocks: no
        # temporary as large as the index
        shift_h = np.uint64(R_BITS + T_BITS)
        refs = np.zeros(H_SIZE, np.int32)
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
        # where each hash's rows start: a lookup gathers them instead of searching the index
        counts = np.zeros(H_SIZE, np.int64)
        for lo in range(0, len(packed), BLOCK):
            counts += np.bincount((packed[lo:lo + BLOCK] >> shift_h).astype(np.int64), minlength=H_SIZE)
        self.starts = np.r_[0, np.cumsum(counts)]
        del counts
        self.common = common
        self.is_common = refs > max_refs  # by hash value: a lookup's test is one gather
        self.size = len(prints)

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes + self.starts.nbytes + self.is_common.nbytes)

    def __len__(self) -> int:
        return len(self.packed)

    def indexed(self, p: Print) -> tuple[np.ndarray, np.ndarray]:
        """The print's hashes (and frames) that the index counts."""
        hashes, frames = p.arrays()
        ok = (hashes >= 0) & (hashes < H_SIZE)
        hashes, frames = hashes[ok], frames[ok]
        keep = ~self.is_common[hashes] & (frames <= MAX_FRAME)
        return hashes[keep], frames[keep]

    def lookup(self, p: Print, exclude: int = -1, min_score: int = MIN_SCORE, min_agree: float = MIN_AGREE,
               transforms: tuple = ()) -> list[Hit]:
        """The prints holding the query's audio, best offset each. With `transforms` ((speed,
        pitch in semitones) pairs, `copyright.fingerprint.TRANSFORMS` less the identity), also
        those holding it played faster or slower, stretched or in another key: the query's
        refined peaks are moved as each transform would move them and hashed again
        (`transformed_peak_hashes`), and a print matched under the identity is reported as it
        is, one matched better under a transform with that transform's speed and pitch."""
        qh, qt = self.indexed(p)
        qg = np.zeros(len(qh), np.int64)
        base = np.ones(len(qh), bool)
        table = [IDENTITY]
        transforms = tuple(tuple(x) for x in transforms if tuple(x) != IDENTITY)
        if transforms:
            tf, ff = p.refined()
            if len(tf):
                h, t, g, b = transformed_peak_hashes(np.rint(tf).astype(np.int64), np.rint(ff).astype(np.int64),
                                                     tf, ff, transforms, FAN_OUT, variants=VARIANTS)
                keep = (h >= 0) & (h < H_SIZE) & (t >= 0) & (t <= MAX_FRAME)
                h, t, g, b = h[keep], t[keep], g[keep], b[keep]
                keep = ~self.is_common[h]
                qh = np.r_[qh, h[keep]]
                qt = np.r_[qt, t[keep]]
                qg = np.r_[qg, g[keep].astype(np.int64) + 1]
                base = np.r_[base, b[keep]]
                table += list(transforms)
        if int(base.sum()) < min_score:
            return []
        return self._hits(p, qh.astype(np.int64), qt.astype(np.int64), qg, base, table, exclude, min_score, min_agree)

    def _hits(self, p: Print, qh, qt, qg, base, table, exclude, min_score, min_agree) -> list[Hit]:
        lo = self.starts[qh]
        n = self.starts[qh + 1] - lo
        total = int(n.sum())
        if total == 0:
            return []
        q = np.repeat(np.arange(len(qh)), n)
        pos = np.repeat(lo, n) + (np.arange(total) - np.repeat(np.cumsum(n) - n, n))
        got = self.packed[pos]
        other = ((got >> np.uint64(T_BITS)) & np.uint64(MAX_PRINTS - 1)).astype(np.int64)
        dt = (got & np.uint64(MAX_FRAME)).astype(np.int64) - qt[q]
        tq = qt[q]
        g = qg[q]
        mine = other != exclude
        other, dt, tq, g = other[mine], dt[mine], tq[mine], g[mine]
        if len(other) < min_score:
            return []
        # one key per (print, transform, offset)
        key = (other << (G_BITS + D_BITS)) | (g << D_BITS) | (dt + (1 << (D_BITS - 1)))
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
        cand = smooth >= min_score
        if not cand.any():
            return []
        uk, smooth = uk[cand], smooth[cand]
        owner = uk >> D_BITS  # (print, transform)
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
        # the query's own hashes (as made, under that transform) in the part the two share
        gsel = ob & ((1 << G_BITS) - 1)
        sq = np.sort((qg[base] << T_BITS) | qt[base])
        inside = (np.searchsorted(sq, (gsel << T_BITS) | f1, "right") - np.searchsorted(sq, (gsel << T_BITS) | f0, "left"))
        agree = sb / np.maximum(inside, 1)
        ok = agree >= np.where(gsel == 0, min_agree, max(min_agree, MIN_AGREE_DERIVED))
        kb, sb, ob, f0, f1, agree, gsel = kb[ok], sb[ok], ob[ok], f0[ok], f1[ok], agree[ok], gsel[ok]
        # per print: the transform with the most agreeing hashes, as it is on a tie (a part of
        # a stretched copy may agree as it is, on a few seconds)
        pr = ob >> G_BITS
        pick = np.lexsort((gsel != 0, -sb, pr))
        first = np.ones(len(pick), bool)
        first[1:] = pr[pick][1:] != pr[pick][:-1]
        hits = []
        inside_of = lambda g, a, b: int(np.searchsorted(sq, (g << T_BITS) | b, "right") - np.searchsorted(sq, (g << T_BITS) | a, "left"))
        for i in pick[first]:
            g = int(gsel[i])
            speed, pitch = table[g]
            d = int(kb[i] & ((1 << D_BITS) - 1)) - (1 << (D_BITS - 1))
            a, b = int(f0[i]), int(f1[i])  # frames on the other print's time scale
            score, ag, drift, at = int(sb[i]), float(agree[i]), 0.0, float(a + d)
            if g:  # a copy between two of the transforms' steps drifts off any one offset: follow it
                got = _follow(ks[np.searchsorted(ks, int(ob[i]) << D_BITS):np.searchsorted(ks, (int(ob[i]) + 1) << D_BITS)],
                              tqs[np.searchsorted(ks, int(ob[i]) << D_BITS):np.searchsorted(ks, (int(ob[i]) + 1) << D_BITS)], d)
                if got is not None and got[0] > score and got[0] / max(inside_of(g, got[1], got[2]), 1) >= MIN_AGREE_DERIVED:
                    score, a, b, drift, icpt = got
                    ag = score / max(inside_of(g, a, b), 1)
                    at = a + icpt + drift * a
            span = min((b - a) * FRAME_SECONDS / speed + PAIR_SPAN_PAD, p.seconds)
            start = a * FRAME_SECONDS / speed
            hits.append(Hit(int(pr[i]), score, round(at * FRAME_SECONDS - start, 3), round(start, 3),
                            round(span, 2), round(min(ag, 1.0), 3), round(float(speed) * (1 + drift), 4), float(pitch)))
        return hits


#: Moved hashes are not also asked with their time gap a frame either way (as the copyright
#: fingerprint asks them): that finds 1.6x the agreeing hashes of a stretched copy, and 1.6x
#: of chance's, for 3x the rows to sort per lookup.
VARIANTS = False
FOLLOW_FRAMES = 48  # offsets this far from the best one are followed (0.8 s)
MAX_DRIFT = 0.006  # ... for a speed up to this far between two transforms' steps


def _follow(keys: np.ndarray, tq: np.ndarray, d: int):
    """(agreeing hashes, first and last frame, drift, intercept) of the hashes of one (print,
    transform) whose offset moves steadily with time from the best offset `d` (the copy plays
    at a speed between two of the steps tried): a line through them, fitted three times, the
    hashes within 1.5 frames of it counted; None where there is nothing to follow."""
    dt = (keys & ((1 << D_BITS) - 1)).astype(np.int64) - (1 << (D_BITS - 1))
    near = np.abs(dt - d) <= FOLLOW_FRAMES
    x, y = tq[near].astype(float), dt[near].astype(float)
    inl = np.abs(y - d) <= 1
    slope, icpt = 0.0, float(d)
    for _ in range(3):
        if inl.sum() < 3 or np.ptp(x[inl]) <= 0:
            return None
        slope, icpt = np.polyfit(x[inl], y[inl], 1)
        slope = float(np.clip(slope, -MAX_DRIFT, MAX_DRIFT))
        icpt = float(np.mean(y[inl] - slope * x[inl]))
        inl = np.abs(y - (icpt + slope * x)) <= 1.5
    if not inl.any():
        return None
    return int(inl.sum()), int(x[inl].min()), int(x[inl].max()), slope, icpt

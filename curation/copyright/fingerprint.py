"""A landmark audio fingerprint index (spectral-peak pairs), on disk in DuckDB.

Audio is resampled to 8 kHz mono; spectrogram peaks are paired with later peaks in a
target zone, and each pair hashes (anchor frequency, paired frequency, time gap) into 24
bits stored with the anchor's time. A query's hashes are joined with the index; a
reference excerpt inside the query shows as many hashes agreeing on one time offset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 8000
N_FFT = 512
HOP = 128
FRAME_SECONDS = HOP / SR  # 16 ms
PEAKS_PER_SECOND = 30
FAN_OUT = 6
DT_MAX = 63  # frames (about 1 s)
DF_MAX = 80  # bins


# A match must be this unlikely by chance (see FingerprintIndex.query_audio), come from at
# least this many agreeing hashes, spread over at least this many seconds of the query. The
# estimate is far too sure of itself on real audio (benchmarks/fingerprint_calibration.py: of
# 988 real negative queries, 28 were estimated at most 1e-6 and 1 at most 1e-9); the limit is the
# largest decade under which none of them fell.
MAX_FALSE_MATCH = 1e-10
MIN_SCORE = 6
MIN_SPREAD_S = 3
# The reference's n-th best offset sets its background level (see query_audio): a reference
# may repeat the excerpt up to n - 1 times without raising its own background.
BACKGROUND_RANK = 30
# The other references' n-th best sets the query's background (see query_audio): up to n - 1
# references may hold the same recording without hiding each other.
OTHER_RANK = 5
# Only hashes found in at most this share of the references, or in at most SPECIFIC_MIN_REFS
# of them, are counted. (A floor of one reference dropped two thirds of every track's hashes
# in a small index of real music, whose peaks gather in few bins: most hashes are in two tracks.)
SPECIFIC_SHARE = 0.01
SPECIFIC_MIN_REFS = 10


def _level_for(score, tries, expected: float = 0.5) -> np.ndarray:
    """The Poisson levels at which `tries` offsets give a score of `score` or more `expected`
    times by chance (0.5: a best score that is unremarkable): bisection, element-wise."""
    score = np.asarray(score, float)
    tries = np.asarray(tries, float)
    lo, hi = np.full(score.shape, 1e-6), np.maximum(1.0, score)
    for _ in range(40):
        mid = (lo + hi) / 2
        below = poisson_sf(score, mid) * tries < expected
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return hi


class FingerprintError(RuntimeError):
    pass


def load_audio(path: Path) -> np.ndarray:
    """The whole file as 8 kHz mono (references and candidates are minutes, not hours)."""
    from ..audio import load_mono

    return load_mono(path, SR)


def _spectrum(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import stft

    _, _, z = stft(audio, fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    return np.log(np.abs(z[1:, :]) + 1e-6).T  # (frames, bins), DC dropped


def _pick(spec: np.ndarray, per_second: int = PEAKS_PER_SECOND) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import maximum_filter

    local = maximum_filter(spec, size=(21, 15), mode="constant", cval=-np.inf)
    is_peak = (spec == local) & (spec > np.median(spec) + 2.0)
    t, f = np.nonzero(is_peak)
    if len(t) == 0:
        return t, f
    # keep the strongest peaks in each one-second window
    strength = spec[t, f]
    sec = t // int(1 / FRAME_SECONDS)
    order = np.lexsort((-strength, sec))
    t, f, sec = t[order], f[order], sec[order]
    rank = np.arange(len(t)) - np.searchsorted(sec, sec, side="left")
    keep = rank < per_second
    t, f = t[keep], f[keep]
    order = np.lexsort((f, t))
    return t[order], f[order]


def peaks(audio: np.ndarray, per_second: int = PEAKS_PER_SECOND) -> tuple[np.ndarray, np.ndarray]:
    """(frame, bin) of local maxima of the log spectrogram, the strongest `per_second` per second."""
    if len(audio) < N_FFT:
        return np.zeros(0, int), np.zeros(0, int)
    return _pick(_spectrum(audio), per_second)


def precise_peaks(audio: np.ndarray, per_second: int = PEAKS_PER_SECOND) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The peaks of `peaks`, and their frame and bin refined between grid points (a parabola
    through each peak and its neighbours, in time and in frequency): where a peak lies once the
    audio is played faster, stretched or shifted in pitch is computed from these."""
    if len(audio) < N_FFT:
        z = np.zeros(0, int)
        return z, z, z.astype(float), z.astype(float)
    spec = _spectrum(audio)
    t, f = _pick(spec, per_second)

    def vertex(a, b, c):
        den = a - 2 * b + c
        return np.where(np.abs(den) > 1e-9, 0.5 * (a - c) / np.where(np.abs(den) > 1e-9, den, 1.0), 0.0).clip(-0.5, 0.5)

    nt, nf = spec.shape
    b = spec[t, f]
    tf = t + vertex(spec[np.maximum(t - 1, 0), f], b, spec[np.minimum(t + 1, nt - 1), f])
    ff = f + vertex(spec[t, np.maximum(f - 1, 0)], b, spec[t, np.minimum(f + 1, nf - 1)])
    return t, f, tf, ff


def hashes(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hash, anchor frame) pairs, as int32 arrays: each peak paired with up to FAN_OUT of
    the next peaks in its target zone (at most DT_MAX frames later, DF_MAX bins apart)."""
    return peak_hashes(*peaks(audio))


def peak_hashes(t: np.ndarray, f: np.ndarray, fan_out: int = FAN_OUT) -> tuple[np.ndarray, np.ndarray]:
    """`hashes` of peaks given as (frame, bin), sorted by frame then bin, each anchor paired
    with up to `fan_out` partners."""
    n = len(t)
    anchors, hs = [], []
    for k in range(1, fan_out * 4):
        if k >= n:
            break
        dt = t[k:] - t[:-k]
        df = f[k:] - f[:-k]
        a = np.flatnonzero((dt > 0) & (dt <= DT_MAX) & (np.abs(df) <= DF_MAX))
        anchors.append(a)
        hs.append((f[a].astype(np.int64) << 15) | (f[a + k].astype(np.int64) << 6) | dt[a])
    if not hs or not sum(len(a) for a in anchors):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    anchor = np.concatenate(anchors)
    h = np.concatenate(hs)
    order = np.argsort(anchor, kind="stable")  # within an anchor, nearest partner first
    anchor, h = anchor[order], h[order]
    rank = np.arange(len(anchor)) - np.searchsorted(anchor, anchor, side="left")
    keep = rank < fan_out
    return h[keep].astype(np.int32), t[anchor[keep]].astype(np.int32)


#: How a copy may differ from its reference, searched at query time: (speed, pitch in
#: semitones) of the candidate against the reference. Tape-like speed changes move time and
#: pitch together (pitch = 12 log2 speed), a time stretch moves time only, a pitch shift
#: pitch only. The identity comes first. A landmark bears a residual of about half a percent
#: in frequency (half a bin at 1.5 kHz) and one in time, so speed and pitch are searched in
#: steps of 1% and 1/6 semitone, tempo in steps of 2%, each up to 5% or one semitone.
IDENTITY = (1.0, 0.0)
TRANSFORMS: tuple[tuple[float, float], ...] = (
    IDENTITY,
    *((s, round(12 * float(np.log2(s)), 4)) for s in (0.95, 0.96, 0.97, 0.98, 0.99, 1.01, 1.02, 1.03, 1.04, 1.05)),
    *((s, 0.0) for s in (0.95, 0.97, 0.99, 1.01, 1.03, 1.05)),
    *((1.0, round(k / 6, 4)) for k in (-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)),
)


def transformed_hashes(audio: np.ndarray, transforms=TRANSFORMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, anchor frame in the candidate, transform index) for the candidate as the
    reference would sound under each transform undone: a copy played `speed` times faster
    has its peak at frame t where the reference has it at t * speed, and at bin f where the
    reference has f / 2 ** (pitch / 12). The identity's hashes are `hashes(audio)` exactly;
    the others are made from the refined peak positions, rounded to the reference's grid, and
    each is also asked with its time gap one frame shorter and longer (measured on phase-vocoder
    stretches and shifts: about three times the agreeing hashes)."""
    h, t, g, _ = transformed_peak_hashes(*precise_peaks(audio), transforms)
    return h, t, g


def transformed_peak_hashes(t: np.ndarray, f: np.ndarray, tf: np.ndarray, ff: np.ndarray, transforms=TRANSFORMS,
                            fan_out: int = FAN_OUT, variants: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`transformed_hashes` of peaks given as (frame, bin) and their refined positions (`precise_peaks`),
    each anchor with up to `fan_out` partners (and, with `variants`, each moved hash also with its
    time gap a frame either way); also whether each hash is one as made (not one of the time
    gap's neighbours)."""
    n_bins = N_FFT // 2
    transforms = [tuple(x) for x in transforms]
    speed = np.array([x[0] for x in transforms], float)[:, None]
    shift = 2 ** (np.array([x[1] for x in transforms], float) / 12)[:, None]
    ut = np.rint(np.asarray(tf, float)[None, :] * speed).astype(np.int64)
    uf = np.rint(np.asarray(ff, float)[None, :] / shift).astype(np.int64)
    ident = np.array([x == IDENTITY for x in transforms])
    ut[ident], uf[ident] = np.asarray(t, np.int64), np.asarray(f, np.int64)  # the identity's hashes are `hashes`' own
    # every transform's peaks in one list, each transform's far enough in time from the next
    # that no landmark pairs across two: one pass of `peak_hashes` for all of them
    gap = int(ut.max(initial=0)) + DT_MAX + 1
    g = np.broadcast_to(np.arange(len(transforms))[:, None], ut.shape)
    ok = (uf >= 0) & (uf < n_bins)
    ut, uf, g = (ut + g * gap)[ok], uf[ok], g[ok]
    order = np.lexsort((uf, ut))
    h, tr = peak_hashes(ut[order], uf[order], fan_out)
    tr = tr.astype(np.int64)
    gi = tr // gap
    tr = tr - gi * gap  # frames on the reference's time scale
    # a stretch or a shift is never exact (a phase vocoder moves peaks by its hop): the time gap
    # one frame either way too
    dt = h & 63
    moved = ~ident[gi] & variants
    lo, hi = moved & (dt > 1), moved & (dt < DT_MAX)
    base = np.r_[np.ones(len(h), bool), np.zeros(int(lo.sum() + hi.sum()), bool)]
    h = np.concatenate([h, h[lo] - 1, h[hi] + 1])
    tr = np.concatenate([tr, tr[lo], tr[hi]])
    gi = np.concatenate([gi, gi[lo], gi[hi]])
    return h, tr.astype(np.int32), gi.astype(np.int16), base


@dataclass
class Match:
    reference: str
    offset_seconds: float  # where the reference's start falls in the candidate (may be negative)
    candidate_start: float  # first matched time in the candidate, seconds
    reference_start: float  # first matched time in the reference, seconds
    score: int  # hashes agreeing on the offset (one frame of jitter either way)
    query_hashes: int
    # the chance that a recording holding none of this reference scores this high against
    # the index (Poisson tail at this query's background level, times the offsets tried)
    false_match_probability: float = 1.0
    background: float = 0.0  # expected agreeing hashes at an offset where nothing matches
    spread_seconds: int = 0  # distinct seconds of the candidate the agreeing hashes fall in
    # how the candidate differs from the reference: played `speed` times as fast (a tempo
    # factor), pitch moved by `pitch_semitones` (tape-like speed: both, 12 log2 speed)
    speed: float = 1.0
    pitch_semitones: float = 0.0


def poisson_sf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(X >= k) for X ~ Poisson(lam)."""
    from scipy.stats import poisson

    return poisson.sf(np.asarray(k) - 1, np.maximum(np.asarray(lam, float), 1e-9))


def false_match_probability(score, background, tries) -> np.ndarray:
    return np.minimum(1.0, poisson_sf(score, background) * np.maximum(tries, 1))


class FingerprintIndex:
    """References and their hashes in `INDEX_DIR/index.duckdb`."""

    def __init__(self, index_dir: Path, read_only: bool = False):
        import duckdb

        self.dir = Path(index_dir)
        db = self.dir / "index.duckdb"
        if read_only and not db.exists():
            raise FingerprintError(f"no fingerprint index in {self.dir} (build it with `curate fingerprint index`)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(db), read_only=read_only)
        if not read_only:
            self.con.execute("CREATE TABLE IF NOT EXISTS refs (ref_id INTEGER PRIMARY KEY, name VARCHAR, "
                             "sha256 VARCHAR UNIQUE, seconds DOUBLE, n_hashes INTEGER)")
            self.con.execute("CREATE TABLE IF NOT EXISTS hashes (hash INTEGER, ref_id INTEGER, t INTEGER)")

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self) -> int:
        return self.con.execute("SELECT count(*) FROM refs").fetchone()[0]

    def add(self, path: Path, name: str | None = None) -> bool:
        """Index one reference; False when the same audio is already in."""
        import pyarrow as pa

        from ..audio import file_sha256

        path = Path(path)
        sha = file_sha256(path)
        if self.con.execute("SELECT 1 FROM refs WHERE sha256 = ?", [sha]).fetchone():
            return False
        audio = load_audio(path)
        h, t = hashes(audio)
        ref_id = self.con.execute("SELECT coalesce(max(ref_id), 0) + 1 FROM refs").fetchone()[0]
        tbl = pa.table({"hash": h, "ref_id": np.full(len(h), ref_id, np.int32), "t": t})
        self.con.execute("BEGIN")
        self.con.execute("INSERT INTO hashes SELECT * FROM tbl")
        self.con.execute("INSERT INTO refs VALUES (?, ?, ?, ?, ?)",
                         [ref_id, name or path.name, sha, len(audio) / SR, len(h)])
        self.con.execute("COMMIT")
        return True

    def query_audio(self, audio: np.ndarray, max_false_match: float = MAX_FALSE_MATCH, min_score: int = MIN_SCORE,
                    min_spread_s: int = MIN_SPREAD_S, transforms=TRANSFORMS) -> list[Match]:
        """References whose excerpt the audio holds, best first, as it is or under one of
        `transforms` (faster or slower, stretched, shifted in pitch: `transformed_hashes`).
        A reference matches when the hashes agreeing on its best offset under one transform
        (counting only hashes specific to a few references: SPECIFIC_SHARE) stand far enough
        above this query's background that a recording without it would score so only with
        probability `max_false_match` (every transform tried is one more chance), and when
        they are spread over `min_spread_s` seconds of the query. The background is the
        larger of three estimates: the query's hits with the reference spread evenly over all
        offsets, the level at which the best offset of the *other* references would be
        unremarkable (music like the reference, not the reference, raises it), and the level
        at which the reference's n-th best offset is what chance gives n times."""
        import pyarrow as pa

        transforms = tuple(transforms) or (IDENTITY,)
        as_is = np.array([tuple(x) == IDENTITY for x in transforms])
        h, t, g = transformed_hashes(audio, transforms)
        if len(h) == 0:
            return []
        q = pa.table({"hash": h, "tq": t, "g": g})  # noqa: F841 (DuckDB reads it by name)
        n_refs = self.count()
        # hits per (reference, transform, offset); neighbouring offsets (one frame of jitter) count
        # together. The index is read once, for the query's distinct hashes; only (reference,
        # transform) pairs with two hits on one offset can reach a score of 4 or more, so only
        # they are smoothed and ranked (the others' best is at most 3: counted, not ranked).
        rows = self.con.execute(
            """
            WITH qd AS (SELECT DISTINCT hash FROM q
            ), found AS MATERIALIZED (  -- one pass over the index: every row of every hash the query holds
                SELECT hash, ref_id, t FROM qd JOIN hashes USING (hash)
            ), specific AS (  -- hashes found in few references: a shared drum hit says little
                SELECT hash FROM found GROUP BY hash HAVING count(DISTINCT ref_id) <= ?
            ), per_off AS MATERIALIZED (
                SELECT f.ref_id, q.g, f.t - q.tq AS off, count(*) AS n
                FROM found f SEMI JOIN specific USING (hash) JOIN q USING (hash) GROUP BY ALL
            ), per_ref AS (
                SELECT ref_id, g, sum(n) AS total, max(n) AS top FROM per_off GROUP BY ALL
            ), cand AS (
                SELECT ref_id, g, total FROM per_ref WHERE top >= 2 OR ? <= 3
            ), off_c AS MATERIALIZED (
                SELECT p.* FROM per_off p SEMI JOIN cand USING (ref_id, g)
            ), smooth AS (
                SELECT a.ref_id, a.g, a.off, a.n + coalesce(b.n, 0) + coalesce(c.n, 0) AS score
                FROM off_c a
                LEFT JOIN off_c b ON b.ref_id = a.ref_id AND b.g = a.g AND b.off = a.off - 1
                LEFT JOIN off_c c ON c.ref_id = a.ref_id AND c.g = a.g AND c.off = a.off + 1
            ), best AS (
                SELECT * FROM smooth QUALIFY row_number() OVER (PARTITION BY ref_id, g ORDER BY score DESC, off) = 1
            ), nth AS (  -- the n-th best single offset: how clumpy the background is
                SELECT ref_id, g, n FROM off_c
                QUALIFY row_number() OVER (PARTITION BY ref_id, g ORDER BY n DESC) = ?
            ), strong AS MATERIALIZED (SELECT ref_id, g, off FROM best WHERE score >= ?
            ), aligned AS (  -- the query frames of the hits agreeing on a strong best offset
                SELECT b.ref_id, b.g, list(q.tq) AS tq, min(f.t) AS t0
                FROM strong b JOIN found f ON f.ref_id = b.ref_id JOIN q ON q.hash = f.hash AND q.g = b.g
                WHERE f.t - q.tq BETWEEN b.off - 1 AND b.off + 1 AND f.hash IN (SELECT hash FROM specific)
                GROUP BY ALL
            )
            SELECT best.ref_id, refs.name, best.off, best.score, cand.total, refs.seconds, coalesce(nth.n, 0), best.g,
                   aligned.tq, aligned.t0, (SELECT count(*) FROM per_ref WHERE top < 2 AND ? > 3) AS weak
            FROM best JOIN refs USING (ref_id) JOIN cand USING (ref_id, g) LEFT JOIN nth USING (ref_id, g)
            LEFT JOIN aligned USING (ref_id, g)
            ORDER BY score DESC, refs.name, best.g
            """, [max(SPECIFIC_MIN_REFS, int(np.ceil(SPECIFIC_SHARE * n_refs))), min_score, BACKGROUND_RANK, min_score,
                  min_score]).fetchall()
        if not rows:
            return []
        q_frames = len(audio) / SR / FRAME_SECONDS
        score = np.array([r[3] for r in rows], float)
        total = np.array([r[4] for r in rows], float)
        ref_ids = np.array([r[0] for r in rows])
        speeds = np.array([transforms[r[7]][0] for r in rows], float)
        offsets = np.array([r[5] for r in rows], float) / FRAME_SECONDS + q_frames * speeds  # offsets allowed
        # background 1: this reference's hits spread evenly (a smoothed bin spans 3 offsets)
        lam = 3.0 * total / offsets
        # background 2: the level at which the OTHER_RANK-th best of the other references is
        # what chance gives OTHER_RANK times (the best of each reference over its transforms; a
        # reference never ranked scored at most 3). Not the best of them: references that hold
        # the same recording (an album track and its compilation, a medley) would hide each other.
        weak = 3.0 if rows[0][10] else 0.0
        _, first = np.unique(ref_ids, return_index=True)  # rows come best first: each reference's best row
        tops = first[np.argsort(-score[first], kind="stable")][: OTHER_RANK + 1]
        in_top = np.isin(ref_ids, ref_ids[tops[:OTHER_RANK]])
        # the OTHER_RANK-th best of the others: one further down where the row's own reference is above it
        pick = np.where(in_top, OTHER_RANK, OTHER_RANK - 1)
        have = pick < len(tops)
        kth = tops[np.minimum(pick, len(tops) - 1)]
        k_score = np.maximum(np.where(have, score[kth], 0.0), weak)
        k_off = np.where(have, offsets[kth], offsets)
        lam_other = np.where(k_score > 0, _level_for(np.maximum(k_score, 1.0), k_off * n_refs * len(transforms),
                                                     expected=float(OTHER_RANK)), 0.0)
        # background 3: the level at which this reference's n-th best offset is what chance
        # gives n times: music that shares a drum pattern with the reference agrees with it
        # at many offsets, an excerpt of it at one (or at a few, where the reference repeats)
        nth = np.array([r[6] for r in rows], float)
        lam_self = np.where(nth > 0, 3.0 * _level_for(nth, offsets, expected=float(BACKGROUND_RANK)), 0.0)
        background = np.maximum.reduce([lam, lam_other, lam_self])
        fmp = false_match_probability(score, background, offsets * n_refs * len(transforms))
        keep = (fmp <= max_false_match) & (score >= min_score)
        found: dict[int, list] = {}
        for i in np.flatnonzero(keep):
            ref_id, name, off, gi = rows[i][0], rows[i][1], rows[i][2], rows[i][7]
            speed, pitch = transforms[gi]
            cand = np.asarray(rows[i][8], float) / speed  # frames of the candidate itself
            spread = len(np.unique((cand // int(round(1 / FRAME_SECONDS))).astype(int)))
            if spread < min_spread_s:
                continue
            start = max(0.0, float(cand.min()) * FRAME_SECONDS)  # a refined peak may sit half a frame early
            m = Match(name, round(-off * FRAME_SECONDS / speed, 2), round(start, 2),
                      round(int(rows[i][9]) * FRAME_SECONDS, 2), int(score[i]), int(as_is[g].sum()),
                      float(f"{fmp[i]:.3g}"), round(float(background[i]), 3), int(spread), speed, pitch)
            found.setdefault(ref_id, []).append((bool(as_is[gi]), m))
        out = []
        for ms in found.values():
            # the recording as it is comes first: where it matches, a transform near it that
            # scores higher (its probed time gaps catch the same alignment) says nothing more,
            # unless the transform holds together over a much longer part of the recording (a
            # stretched copy agrees with itself as it is over a few seconds only)
            plain = [m for a, m in ms if a]
            other = min((m for a, m in ms if not a), key=lambda m: (m.false_match_probability, -m.score), default=None)
            if plain and (other is None or other.spread_seconds < max(1.5 * plain[0].spread_seconds,
                                                                      plain[0].spread_seconds + 2)):
                out.append(plain[0])
            else:
                out.append(other)
        return sorted(out, key=lambda m: (m.false_match_probability, -m.score, m.reference))

    def query(self, path: Path, **kw) -> list[Match]:
        return self.query_audio(load_audio(path), **kw)

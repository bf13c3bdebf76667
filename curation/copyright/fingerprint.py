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


class FingerprintError(RuntimeError):
    pass


def load_audio(path: Path) -> np.ndarray:
    """The whole file as 8 kHz mono (references and candidates are minutes, not hours)."""
    from ..audio import audio_blocks

    blocks = list(audio_blocks(Path(path), [], SR, 1))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def peaks(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame, bin) of local maxima of the log spectrogram, the strongest few per second."""
    from scipy.ndimage import maximum_filter
    from scipy.signal import stft

    if len(audio) < N_FFT:
        return np.zeros(0, int), np.zeros(0, int)
    _, _, z = stft(audio, fs=SR, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    spec = np.log(np.abs(z[1:, :]) + 1e-6).T  # (frames, bins), DC dropped
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
    keep = rank < PEAKS_PER_SECOND
    t, f = t[keep], f[keep]
    order = np.lexsort((f, t))
    return t[order], f[order]


def hashes(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hash, anchor frame) pairs, as int32 arrays: each peak paired with up to FAN_OUT of
    the next peaks in its target zone (at most DT_MAX frames later, DF_MAX bins apart)."""
    t, f = peaks(audio)
    n = len(t)
    anchors, hs = [], []
    for k in range(1, FAN_OUT * 4):
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
    keep = rank < FAN_OUT
    return h[keep].astype(np.int32), t[anchor[keep]].astype(np.int32)


@dataclass
class Match:
    reference: str
    offset_seconds: float  # where the reference's start falls in the candidate (may be negative)
    candidate_start: float  # first matched time in the candidate, seconds
    reference_start: float  # first matched time in the reference, seconds
    score: int  # hashes agreeing on the offset
    query_hashes: int


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

    def query_audio(self, audio: np.ndarray, min_score: int = 15, min_ratio: float = 0.03) -> list[Match]:
        import pyarrow as pa

        h, t = hashes(audio)
        if len(h) == 0:
            return []
        q = pa.table({"hash": h, "tq": t})  # noqa: F841 (DuckDB reads it by name)
        # hashes agreeing on an offset; neighbouring offsets (one frame of jitter) count together
        rows = self.con.execute(
            """
            WITH hits AS (
                SELECT r.ref_id, r.t - q.tq AS off, q.tq, r.t
                FROM q JOIN hashes r USING (hash)
            ), per_off AS (
                SELECT ref_id, off, count(*) AS n, min(tq) AS tq0, min(t) AS tr0 FROM hits GROUP BY ref_id, off
            ), smooth AS (
                SELECT a.ref_id, a.off, a.tq0, a.tr0,
                       a.n + coalesce(b.n, 0) + coalesce(c.n, 0) AS score
                FROM per_off a
                LEFT JOIN per_off b ON b.ref_id = a.ref_id AND b.off = a.off - 1
                LEFT JOIN per_off c ON c.ref_id = a.ref_id AND c.off = a.off + 1
            ), best AS (
                SELECT *, row_number() OVER (PARTITION BY ref_id ORDER BY score DESC, off) AS rk FROM smooth
            )
            SELECT refs.name, best.off, best.tq0, best.tr0, best.score
            FROM best JOIN refs USING (ref_id)
            WHERE rk = 1 AND score >= ?
            ORDER BY score DESC, refs.name
            """,
            [min_score],
        ).fetchall()
        out = []
        for name, off, tq0, tr0, score in rows:
            if score < min_ratio * len(h):
                continue
            out.append(Match(name, round(-off * FRAME_SECONDS, 2), round(tq0 * FRAME_SECONDS, 2),
                             round(tr0 * FRAME_SECONDS, 2), int(score), int(len(h))))
        return out

    def query(self, path: Path, **kw) -> list[Match]:
        return self.query_audio(load_audio(path), **kw)

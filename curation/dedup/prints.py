"""Compact audio fingerprints for finding the same audio twice, kept by content between runs.

A print is made from one 8 kHz mono decode of the file (`audio.load_mono`, the decoder the
rest of the pipeline uses): the SHA-256 of that decode quantised to 16 bits (two files that
decode to the same audio share it, whatever their container or codec), its length, and
spectral-peak landmarks (`copyright.fingerprint`: a peak paired with the next few peaks, hashed
with their time gap) at a low density, enough to find a recording inside another one and small
enough to hold hundreds of thousands in memory. Gain does not move the peaks (they are picked
against the spectrum's own median), resampling does not move them in time or frequency, and
lossy coding keeps most of the strong ones.
"""
from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np

from ..copyright.fingerprint import FRAME_SECONDS, SR, peak_hashes, precise_peaks

VERSION = 2  # 2: the peaks' refined positions kept, for copies played faster, slower or in another key
PER_SECOND = 8  # peaks kept per second
FAN_OUT = 3  # partners per peak
MAX_REPEAT = 4  # occurrences of one hash within a recording that are indexed (a loop repeats)
#: A print with fewer distinct hashes, or fewer distinct pairs of peak frequencies, holds too
#: little to tell it from another (silence, a steady tone, a click: a 440 Hz sine has one
#: pair): it is never grouped, not even by its digest.
MIN_DISTINCT = 24
MIN_PAIRS = 12


class Print:
    """A recording's print: its digest and length, what is known of its landmarks (how many,
    from when to when, whether they tell it apart), and the landmarks themselves, held or
    read again from the cache when asked for (`arrays`), so that hundreds of thousands of prints
    need not all be in memory while the index is built and looked up."""

    __slots__ = ("digest", "seconds", "count", "span_seconds", "usable", "_hashes", "_frames", "_peaks", "_load")

    def __init__(self, digest: str, seconds: float, hashes: np.ndarray | None = None,
                 frames: np.ndarray | None = None, load=None, meta: tuple | None = None,
                 peaks: tuple[np.ndarray, np.ndarray] | None = None):
        self.digest, self.seconds = digest, float(seconds)
        self._hashes, self._frames, self._load = hashes, frames, load
        self._peaks = peaks
        if meta is None:
            h, t = self.arrays()
            span = float(t.max() - t.min()) * FRAME_SECONDS if len(t) else 0.0
            usable = len(np.unique(h)) >= MIN_DISTINCT and len(np.unique(h >> 6)) >= MIN_PAIRS
            meta = (len(h), span, usable)
        self.count, self.span_seconds, self.usable = int(meta[0]), float(meta[1]), bool(meta[2])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, frames): int32 landmark hashes in frame order, and each one's anchor frame
        (FRAME_SECONDS each)."""
        if self._hashes is not None:
            return self._hashes, self._frames
        return tuple(self._load()[:2])

    def refined(self) -> tuple[np.ndarray, np.ndarray]:
        """(frame, bin) of each spectral peak, refined between grid points (float32; empty for a
        print made without them): where the peaks of a copy played faster, slower or in
        another key lie on this one's grid is computed from these."""
        got = self._peaks if self._hashes is not None else tuple(self._load()[2:4])
        if not got:
            z = np.zeros(0, np.float32)
            return z, z
        return got

    @property
    def hashes(self) -> np.ndarray:
        return self.arrays()[0]

    @property
    def frames(self) -> np.ndarray:
        return self.arrays()[1]

    def light(self, load) -> "Print":
        """The same print, its landmarks read again by `load` when asked for."""
        return Print(self.digest, self.seconds, load=load, meta=(self.count, self.span_seconds, self.usable))


def make_print(audio: np.ndarray) -> Print:
    audio = np.asarray(audio, np.float32)
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    t, f, tf, ff = precise_peaks(audio, PER_SECOND)
    h, fr = peak_hashes(t, f, FAN_OUT)
    if len(h):
        # at most MAX_REPEAT occurrences of each hash (the earliest)
        order = np.lexsort((fr, h))
        hs = h[order]
        rank = np.arange(len(hs)) - np.searchsorted(hs, hs, side="left")
        keep = np.sort(order[rank < MAX_REPEAT])
        h, fr = h[keep], fr[keep]
    return Print(hashlib.sha256(pcm.tobytes()).hexdigest(), len(audio) / SR, h.astype(np.int32), fr.astype(np.int32),
                 peaks=(tf.astype(np.float32), ff.astype(np.float32)))


def print_file(path) -> Print:
    """The print of one file, a path or an object store URL (raises AudioError for a file that
    does not decode)."""
    from ..audio import load_mono

    return make_print(load_mono(path, SR))


class PrintCache:
    """Prints on disk by the audio file's SHA-256 and the print's version: a rerun, or a run
    with ten new sounds, decodes only what it has not seen."""

    def __init__(self, root):
        from .. import storage

        self.root = storage.as_path(root)  # a folder, or a prefix on an object store

    def _path(self, sha: str):
        return self.root / sha[:2] / f"{sha}-v{VERSION}.npz"

    def get(self, sha: str) -> Print | None:
        try:
            with self._path(sha).open("rb") as fh, np.load(io.BytesIO(fh.read()), allow_pickle=False) as z:
                return Print(str(z["digest"]), float(z["seconds"]), z["hashes"].astype(np.int32),
                             z["frames"].astype(np.int32), peaks=(z["peak_frames"].astype(np.float32),
                                                                  z["peak_bins"].astype(np.float32)))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # absent or damaged: made again

    def get_light(self, sha: str) -> Print | None:
        """The print without its landmarks in memory: they are read again when asked for."""
        p = self.get(sha)
        return None if p is None else p.light(lambda: self._arrays(sha))

    def _arrays(self, sha: str) -> tuple[np.ndarray, ...]:
        p = self.get(sha)
        if p is None:
            raise OSError(f"the print of {sha} left the cache ({self.root}) during the run")
        return (*p.arrays(), *p.refined())

    def put(self, sha: str, p: Print) -> None:
        from .. import storage

        with storage.writing(self._path(sha)) as tmp, open(tmp, "wb") as fh:
            pf, pb = p.refined()
            np.savez(fh, digest=np.array(p.digest), seconds=np.array(p.seconds), hashes=p.hashes, frames=p.frames,
                     peak_frames=pf, peak_bins=pb)


def _job(path: str):  # a path or an object store URL
    from ..audio import AudioError

    try:
        return print_file(path), None
    except AudioError as e:
        return None, f"{e.reason}: {e.detail}"
    except Exception as e:  # a decoder's failure on one file is that file's, never the run's
        return None, f"{type(e).__name__}: {e}"


def prints_for(files: dict, cache: PrintCache, workers: int = 1) -> tuple[dict[str, Print], dict[str, str], int]:
    """{sha256: print} for {sha256: file}, from the cache or made (in `workers` processes),
    their landmarks left in the cache until asked for; also {sha256: why} for files that did
    not decode, and how many were made (those that did not decode are not counted)."""
    out: dict[str, Print] = {}
    errors: dict[str, str] = {}
    todo = []
    for sha, path in files.items():
        p = cache.get_light(sha)
        if p is None:
            todo.append((sha, path))
        else:
            out[sha] = p
    if not todo:
        return out, errors, 0
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(_job, [str(p) for _, p in todo], chunksize=4))
    else:
        results = [_job(str(p)) for _, p in todo]
    for (sha, path), (p, err) in zip(todo, results):
        if p is None:
            errors[sha] = f"{path}: {err}"
            continue
        cache.put(sha, p)
        out[sha] = p.light(lambda sha=sha: cache._arrays(sha))
    return out, errors, len(todo) - len(errors)

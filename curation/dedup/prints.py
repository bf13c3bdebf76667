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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..copyright.fingerprint import FRAME_SECONDS, SR, peak_hashes, peaks

VERSION = 1
PER_SECOND = 8  # peaks kept per second
FAN_OUT = 3  # partners per peak
MAX_REPEAT = 4  # occurrences of one hash within a recording that are indexed (a loop repeats)
#: A print with fewer distinct hashes, or fewer distinct pairs of peak frequencies, holds too
#: little to tell it from another (silence, a steady tone, a click: a 440 Hz sine has one
#: pair): it is never grouped, not even by its digest.
MIN_DISTINCT = 24
MIN_PAIRS = 12


@dataclass
class Print:
    digest: str  # sha256 of the 8 kHz mono decode, 16-bit
    seconds: float
    hashes: np.ndarray  # int32, in frame order
    frames: np.ndarray  # int32 anchor frame of each hash (FRAME_SECONDS each)

    @property
    def distinct(self) -> int:
        return int(len(np.unique(self.hashes)))

    @property
    def usable(self) -> bool:
        return self.distinct >= MIN_DISTINCT and len(np.unique(self.hashes >> 6)) >= MIN_PAIRS

    @property
    def span_seconds(self) -> float:
        """From the first landmark to the last: the part of the recording that holds anything."""
        return float(self.frames.max() - self.frames.min()) * FRAME_SECONDS if len(self.frames) else 0.0


def make_print(audio: np.ndarray) -> Print:
    audio = np.asarray(audio, np.float32)
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    t, f = peaks(audio, PER_SECOND)
    h, fr = peak_hashes(t, f, FAN_OUT)
    if len(h):
        # at most MAX_REPEAT occurrences of each hash (the earliest)
        order = np.lexsort((fr, h))
        hs = h[order]
        rank = np.arange(len(hs)) - np.searchsorted(hs, hs, side="left")
        keep = np.sort(order[rank < MAX_REPEAT])
        h, fr = h[keep], fr[keep]
    return Print(hashlib.sha256(pcm.tobytes()).hexdigest(), len(audio) / SR, h.astype(np.int32), fr.astype(np.int32))


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
                             z["frames"].astype(np.int32))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # absent or damaged: made again

    def put(self, sha: str, p: Print) -> None:
        from .. import storage

        with storage.writing(self._path(sha)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, digest=np.array(p.digest), seconds=np.array(p.seconds), hashes=p.hashes, frames=p.frames)


def _job(path: str):  # a path or an object store URL
    from ..audio import AudioError

    try:
        return print_file(path), None
    except AudioError as e:
        return None, f"{e.reason}: {e.detail}"
    except Exception as e:  # a decoder's failure on one file is that file's, never the run's
        return None, f"{type(e).__name__}: {e}"


def prints_for(files: dict, cache: PrintCache, workers: int = 1) -> tuple[dict[str, Print], dict[str, str], int]:
    """{sha256: print} for {sha256: file}, from the cache or made (in `workers` processes);
    also {sha256: why} for files that did not decode, and how many were made."""
    out: dict[str, Print] = {}
    errors: dict[str, str] = {}
    todo = []
    for sha, path in files.items():
        p = cache.get(sha)
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
        out[sha] = p
    return out, errors, len(todo)

"""Real, freely licensed audio from Debian's archive, for tests and benchmarks.

Debian ships game soundtracks and effects as packages (`asc-music`, `wesnoth-1.16-music`,
`planetblupi-music-ogg`, `drascula-music`, ...). `apt-get download` fetches one from the
package registry without installing it and `dpkg-deb -x` unpacks it; both are cached, and
nothing of it is ever committed.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

AUDIO_SUFFIXES = (".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audio-curation" / "debian"


def _download(package: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    for attempt in range(2):
        proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
        found = sorted(dest.glob(f"{package}_*.deb"))
        if proc.returncode == 0 and found:
            return found[-1]
        if attempt == 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    raise RuntimeError(f"apt-get download {package} failed: {proc.stderr.strip()[-300:]}")


def package_audio(package: str, cache: Path | None = None) -> list[Path]:
    """The audio files of one Debian package, downloaded and unpacked once into the cache
    (under a lock: tests in parallel processes may ask for the same package at once)."""
    import fcntl

    cache = cache or cache_root()
    out = cache / package
    marker = out / ".unpacked"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f".{package}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                deb = _download(package, cache / "debs")
                out.mkdir(parents=True, exist_ok=True)
                subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True, capture_output=True)
                marker.write_text(deb.name)
    return sorted(p for p in out.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())

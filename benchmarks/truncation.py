"""Truncated downloads against the length the metadata declares (`audio_truncated`).

The tolerance (curation.music.stage.TRUNCATED_MIN_SECONDS / TRUNCATED_MIN_SHARE) is chosen from how far
a whole, real file's decoded length falls short of the length its metadata gives. Three sets,
reported separately:

- real: Debian's asc-music (mp3) and planetblupi-music-ogg (ogg), whole and cut, their
  declared length taken as mutagen reads the container (what Freesound's analysis and FMA's
  `track.duration`, in whole seconds, report for the file that was uploaded);
- ffmpeg: tones and noise encoded by FFmpeg's own encoders (libmp3lame CBR, libvorbis), a
  generator that shares no code with the decoder under test (libsndfile, torchcodec);
- sndfile: noise written by libsndfile (FLAC, Ogg Vorbis, MP3).

Each file is decoded whole and cut to a share of its bytes (0.4, 0.7, 0.9, 0.97). The label
comes from how the file was made: a cut file lost (1 - share) of its bytes, so it is
truncated when that is more than the tolerance allows; a whole file is not. A cut the
decoder refuses outright is counted as caught by the decoder. Every case is listed.

    .venv/bin/python benchmarks/truncation.py [--work DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curation.audio import AudioError, audio_blocks  # noqa: E402
from curation.music.stage import TRUNCATED_MIN_SECONDS, TRUNCATED_MIN_SHARE, declared_shortfall  # noqa: E402
from curation.records import Record  # noqa: E402

SHARES = (0.4, 0.7, 0.9, 0.97)


def decoded_seconds(path: Path) -> tuple[float | None, str]:
    info: list = []
    try:
        for _ in audio_blocks(path, info, 32000, 1):
            pass
    except AudioError as e:
        return None, e.reason
    return info[0].seconds, ""


def declared_of(path: Path) -> float:
    from mutagen import File as MutagenFile

    return float(MutagenFile(str(path)).info.length)


def ffmpeg_set(work: Path) -> list[Path]:
    out = []
    for i, (secs, codec, ext) in enumerate([(45, "libmp3lame", "mp3"), (200, "libmp3lame", "mp3"),
                                             (60, "libvorbis", "ogg"), (240, "libvorbis", "ogg")]):
        p = work / f"ffmpeg_{i}.{ext}"
        if not p.exists():
            src = f"sine=frequency={220 + 110 * i}:duration={secs}"
            noise = f"anoisesrc=d={secs}:c=pink:a=0.05"
            cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-f", "lavfi", "-i", noise,
                   "-filter_complex", "amix=inputs=2,aformat=channel_layouts=stereo", "-ar", "44100",
                   "-c:a", codec] + (["-b:a", "128k"] if ext == "mp3" else ["-q:a", "4"]) + [str(p)]
            subprocess.run(cmd, check=True)
        out.append(p)
    return out


def sndfile_set(work: Path) -> list[Path]:
    import soundfile as sf

    out = []
    for i, (secs, fmt, sub, ext) in enumerate([(50, "FLAC", "PCM_16", "flac"), (120, "OGG", "VORBIS", "ogg"),
                                               (90, "MP3", "MPEG_LAYER_III", "mp3")]):
        p = work / f"sndfile_{i}.{ext}"
        if not p.exists() or p.stat().st_size < 1000:
            x = (np.random.RandomState(i).randn(44100 * secs, 2) * 0.1).astype("float32")
            with sf.SoundFile(str(p), "w", 44100, 2, format=fmt, subtype=sub) as f:
                for k in range(0, len(x), 44100):  # a block at a time (one call of minutes makes a broken Ogg)
                    f.write(x[k:k + 44100])
        out.append(p)
    return out


def run_set(name: str, files: list[Path], work: Path) -> dict:
    print(f"\n== {name}: {len(files)} file(s), tolerance max({TRUNCATED_MIN_SECONDS:g} s, "
          f"{TRUNCATED_MIN_SHARE:.0%} of the declared length)")
    print(f"{'file':28} {'cut':>5} {'declared s':>10} {'decoded s':>9} {'short s':>8} {'label':>9} {'result':>18}")
    tally = {"whole": 0, "whole_flagged": 0, "cut": 0, "cut_caught": 0, "cut_by_decoder": 0, "small": 0,
             "small_caught": 0, "shortfalls": []}
    for f in files:
        declared = declared_of(f)
        data = f.read_bytes()
        for share in (1.0, *SHARES):
            if share == 1.0:
                p = f
            else:
                p = work / f"cut_{share}_{f.name}"
                p.write_bytes(data[: int(len(data) * share)])
            got, err = decoded_seconds(p)
            r = Record(source="fma", id="1")
            r.evidence["declared"] = {"seconds": round(declared, 3), "field": "mutagen"}
            flagged = err == "audio_truncated" or (got is not None and declared_shortfall(r, got) is not None)
            lost = declared * (1 - share)
            over = lost > max(TRUNCATED_MIN_SECONDS, TRUNCATED_MIN_SHARE * declared)
            if share == 1.0:
                label = "whole"
                tally["whole"] += 1
                tally["whole_flagged"] += flagged
                if got is not None:
                    tally["shortfalls"].append(declared - got)
            elif over:  # cut by more than the tolerance: must be caught
                label = "cut"
                tally["cut"] += 1
                tally["cut_caught"] += flagged
                tally["cut_by_decoder"] += err == "audio_truncated"
            else:  # cut by less than the tolerance allows: the length check cannot see it
                label = "cut<tol"
                tally["small"] += 1
                tally["small_caught"] += flagged
            result = (f"decoder: {err}" if err else "truncated" if flagged else "kept")
            short = f"{declared - got:8.2f}" if got is not None else f"{'-':>8}"
            got_s = f"{got:9.2f}" if got is not None else f"{'-':>9}"
            print(f"{f.name[:28]:28} {share:5.2f} {declared:10.2f} {got_s} {short} {label:>9} {result:>18}")
    sf = tally["shortfalls"]
    print(f"-- {name}: whole files flagged {tally['whole_flagged']}/{tally['whole']}; files cut by more than "
          f"the tolerance caught {tally['cut_caught']}/{tally['cut']} ({tally['cut_by_decoder']} by the decoder "
          f"itself); cut by less, caught by the decoder {tally['small_caught']}/{tally['small']}; "
          f"whole-file shortfall min {min(sf):.3f} s, max {max(sf):.3f} s" if sf else "")
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "curation-bench-truncation"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from curation.realaudio import package_audio

    real = package_audio("asc-music") + package_audio("planetblupi-music-ogg")[:4]
    results = {"real": run_set("real (Debian asc-music, planetblupi-music-ogg)", real, work),
               "ffmpeg": run_set("ffmpeg encoders", ffmpeg_set(work), work),
               "sndfile": run_set("libsndfile encoders", sndfile_set(work), work)}
    print("\nsummary")
    for k, t in results.items():
        print(f"  {k:8} whole kept {t['whole'] - t['whole_flagged']}/{t['whole']}, cut over the tolerance caught "
              f"{t['cut_caught']}/{t['cut']} ({t['cut_by_decoder']} by the decoder), cut within it caught "
              f"{t['small_caught']}/{t['small']}; largest whole-file shortfall {max(t['shortfalls']):.3f} s")


if __name__ == "__main__":
    main()

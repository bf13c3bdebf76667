"""The quality stage on real files and on damaged copies: what the defaults exclude and catch.

Good files: real recordings of Debian packages (`apt-get download`, unpacked and cached, never
committed): game soundtracks (wesnoth-1.16-music, planetblupi-music-ogg, asc-music,
drascula-music), desktop sound effects (sound-theme-freedesktop), 8 kHz telephone prompts
(asterisk-core-sounds-en-wav: real low-rate recordings, honest about their rate), the game
sounds of wesnoth-1.16-data (some made at low rates), and each soundtrack cut attenuated by 30 dB
(a quiet take, not silence). Damaged copies, made from soundtrack cuts by two generators that
share no code with the stage or with each other, the sox CLI and the FFmpeg CLI:
- clipped: +20 dB, then clipped to 16 bits;
- low bandwidth: resampled to 8 kHz and back to 44.1 kHz; a 16 kHz mp3 at 32 kbit/s saved as
  44.1 kHz;
- dead channel: one channel zeroed; phase inverted: one channel inverted;
- silence: 2 s of the cut, then 98 s of digital silence;
- DC offset: 0.2 added.
Labels come from how each file was made; every file goes through `measure` and `judged` at the
defaults, none is set aside. Cost: the measures' time in the decode (`audio.Tap`) against the
music detector's time on the same files.

    .venv/bin/python benchmarks/quality.py [--per-package 60] [--cuts 24]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.audio import AudioError, audio_blocks  # noqa: E402
from curation.config import QualityConfig  # noqa: E402
from curation.quality.measure import Meter  # noqa: E402
from curation.quality.stage import findings, judged  # noqa: E402
from benchmarks.duplicates import ff, run  # noqa: E402  (the same CLI helpers)
from curation.realaudio import package_audio  # noqa: E402

MUSIC = ("wesnoth-1.16-music", "planetblupi-music-ogg", "asc-music", "drascula-music")
OTHER = ("sound-theme-freedesktop", "asterisk-core-sounds-en-wav", "wesnoth-1.16-data")
SR = 44100


def sox(*a: str) -> None:  # quieter than the duplicates benchmark's: clipping here is on purpose
    run(["sox", "-V1", *a])


DAMAGE = {  # kind -> {generator: make(input, output)}; every output a 44.1 kHz stereo wav
    "clipped": {"sox": lambda i, o: sox(i, o, "gain", "20"),
                "ffmpeg": lambda i, o: ff("-i", i, "-af", "volume=20dB", "-c:a", "pcm_s16le", o)},
    "low_bandwidth": {"sox": lambda i, o: run(["bash", "-c", f"sox -V1 '{i}' -r 8000 -t wav - | sox -V1 - -r {SR} '{o}'"]),
                      "ffmpeg": lambda i, o: ff("-i", i, "-af", f"aresample=8000,aresample={SR}", o)},
    "low_bandwidth_mp3": {"ffmpeg": lambda i, o: run(["bash", "-c", f"ffmpeg -nostdin -loglevel error -y -i '{i}' -ar 16000 "
                                                               f"-b:a 32k -f mp3 - | ffmpeg -nostdin -loglevel error -y "
                                                               f"-i - -ar {SR} '{o}'"]),
                          "sox": lambda i, o: run(["bash", "-c", f"sox -V1 '{i}' -r 16000 -C 32 -t mp3 - | "
                                                                 f"sox -V1 -t mp3 - -r {SR} '{o}'"])},
    "dead_channel": {"sox": lambda i, o: sox(i, o, "remix", "1", "0"),
                     "ffmpeg": lambda i, o: ff("-i", i, "-af", "pan=stereo|c0=c0|c1=0*c1", o)},
    # the two channels in opposite phase: the cut's mix on one, inverted on the other
    "phase_inverted": {"sox": lambda i, o: sox(i, o, "remix", "1v0.5,2v0.5", "1v-0.5,2v-0.5"),
                       "ffmpeg": lambda i, o: ff("-i", i, "-af", "pan=stereo|c0=0.5*c0+0.5*c1|c1=-0.5*c0-0.5*c1", o)},
    # one channel of the (wide) cut inverted: reported apart, see WIDE
    "one_channel_inverted": {"sox": lambda i, o: sox(i, o, "remix", "1", "2i"),
                             "ffmpeg": lambda i, o: ff("-i", i, "-af", "pan=stereo|c0=c0|c1=-1*c1", o)},
    "silent": {"sox": lambda i, o: sox(i, o, "trim", "0", "2", "pad", "0", "98"),
               "ffmpeg": lambda i, o: ff("-t", "2", "-i", i, "-af", "apad=pad_dur=98", o)},
    "dc_offset": {"sox": lambda i, o: sox(i, o, "vol", "0.7", "dcshift", "0.2"),
                  "ffmpeg": lambda i, o: ff("-i", i, "-af", "volume=0.7,dcshift=0.2", o)},
}
#: What each damage must be found as.
EXPECT = {"clipped": "audio_clipped", "low_bandwidth": "audio_low_bandwidth", "low_bandwidth_mp3": "audio_low_bandwidth",
          "dead_channel": "audio_dead_channel", "phase_inverted": "audio_phase_inverted", "silent": "audio_silent",
          "dc_offset": "audio_dc_offset", "one_channel_inverted": "audio_phase_inverted"}
#: Not in the targets: one channel of a wide mix inverted is itself a plausible wide mix (its
#: channels barely correlated before, and barely anti-correlate after; a mono downmix loses
#: little). Reported by how much the original's channels correlate (numpy, not the stage).
WIDE = {"one_channel_inverted"}


class Timed(Meter):
    spent = 0.0

    def update(self, block, sr):
        t0 = time.perf_counter()
        super().update(block, sr)
        Timed.spent += time.perf_counter() - t0


def _digital_silence(path: Path) -> bool:
    """Whether the FFmpeg CLI (no code of the stage) decodes the file to samples all below 1e-4."""
    import numpy as np

    p = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "f32le", "-"],
                       capture_output=True)
    x = np.frombuffer(p.stdout, np.float32)
    return p.returncode == 0 and len(x) > 0 and float(np.abs(x).max()) < 1e-4


def measure(path: Path) -> dict:
    m = Timed()
    for _ in audio_blocks(path, [], 8000, 1, skip=lambda: True, tap=m.update):
        pass
    return m.result()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-package", type=int, default=60)
    ap.add_argument("--cuts", type=int, default=24)
    ap.add_argument("--music-files", type=int, default=8)
    a = ap.parse_args()
    cfg = QualityConfig()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        good: list[tuple[str, Path]] = []
        for pkg in MUSIC + OTHER:
            files = package_audio(pkg)
            step = max(1, len(files) // a.per_package)
            good += [(pkg, f) for f in files[::step][:a.per_package]]
        cuts = []
        srcs = [f for pkg in MUSIC for f in package_audio(pkg)[:a.cuts // len(MUSIC) + 1]][:a.cuts]
        for k, src in enumerate(srcs):
            c = work / f"cut{k:02d}.wav"
            ff("-ss", "5", "-t", "30", "-i", str(src), "-ar", str(SR), "-ac", "2", str(c))
            cuts.append(c)
            q = work / f"quiet{k:02d}.wav"
            ff("-i", str(c), "-af", "volume=-30dB", str(q))
            good.append(("quiet take (-30 dB)", q))
        damaged: list[tuple[str, str, Path]] = []
        t0 = time.perf_counter()
        for kind, gens in DAMAGE.items():
            for gen, make in gens.items():
                for k, c in enumerate(cuts):
                    o = work / f"{kind}-{gen}-{k:02d}.wav"
                    make(str(c), str(o))
                    damaged.append((kind, gen, o))
        print(f"{len(good)} good files from {len(MUSIC + OTHER)} packages and {len(cuts)} quiet takes; "
              f"{len(damaged)} damaged copies of {len(cuts)} cuts made in {time.perf_counter() - t0:.0f} s")
        # good files: what the defaults exclude and flag
        rows: dict[str, list[int]] = {}
        excluded, flagged, failed = [], {}, []
        audio_s = 0.0
        Timed.spent = 0.0
        aside = []
        for pkg, f in good:
            if _digital_silence(f):  # labelled good by the package it came in, but it holds nothing
                aside.append(f"{pkg}/{f.name}")
                continue
            try:
                q = measure(f)
            except AudioError as e:
                failed.append(f"{f.name}: {e.reason}")
                continue
            audio_s += q.get("seconds") or 0
            reason, ev = judged(q, cfg)
            r = rows.setdefault(pkg, [0, 0, 0])
            r[0] += 1
            r[1] += int(reason is not None)
            r[2] += int(bool(ev["flags"]))
            if reason:
                excluded.append(f"{pkg}/{f.name}: {reason} ({[x for x in ev['found'] if x['reason'] == reason][0]['value']})")
            for fl in ev["flags"]:
                flagged[fl] = flagged.get(fl, 0) + 1
        spent_good = Timed.spent
        n_good = sum(r[0] for r in rows.values())
        n_ex = sum(r[1] for r in rows.values())
        print(f"\ngood files at the defaults: {n_ex} of {n_good} excluded ({100 * n_ex / max(n_good, 1):.2f}%; target <= 0.5%)")
        print(f"{'files':36} {'n':>5} {'excluded':>9} {'flagged':>8}")
        for pkg, (n, ex, fl) in rows.items():
            print(f"{pkg:36} {n:5d} {ex:9d} {fl:8d}")
        print(f"set aside (in a good package, but the FFmpeg CLI decodes it to samples all below 1e-4: digital "
              f"silence shipped as a file): {len(aside)}" + "".join(f"\n  {x}" for x in aside))
        print("flags on good files (kept, noted):", flagged or "none")
        for x in excluded:
            print("  excluded:", x)
        if failed:
            print(f"  {len(failed)} file(s) did not decode (not counted):", "; ".join(failed[:5]))
        # damage: caught (found: flagged or excluded, whatever the action), per kind and generator
        print(f"\n{'damage':18} {'generator':9} {'caught':>7} {'of':>4} {'share':>6}  (excluded at the defaults)")
        ok_all = True
        by: dict[tuple[str, str], list[int]] = {}
        missed = []
        for kind, gen, o in damaged:
            q = measure(o)
            found = {f["reason"] for f in findings(q, cfg)}
            reason, _ = judged(q, cfg)
            r = by.setdefault((kind, gen), [0, 0, 0])
            r[0] += int(EXPECT[kind] in found)
            r[1] += 1
            r[2] += int(reason is not None)
            if EXPECT[kind] not in found:
                key = {"clipped": "clipped_share", "low_bandwidth": "bandwidth_share", "low_bandwidth_mp3": "bandwidth_share",
                       "dead_channel": "channel_rms_dbfs", "phase_inverted": "low_correlation", "silent": "silent_share",
                       "dc_offset": "dc_offset", "one_channel_inverted": "low_correlation"}[kind]
                missed.append(f"{o.name}: {key} = {q.get(key)}")
        for (kind, gen), (c, n, ex) in by.items():
            if kind in WIDE:
                continue
            ok_all &= c / n >= 0.95
            print(f"{kind:18} {gen:9} {c:7d} {n:4d} {c / n:6.3f}  ({ex})")
        print(f"every kind and generator caught at >= 95%: {'yes' if ok_all else 'NO'}")
        # one channel of the cut inverted, by how much the cut's own channels correlate
        import numpy as np

        corr = {}
        for k, c in enumerate(cuts):
            x, _ = sf.read(str(c), dtype="float32", always_2d=True)
            corr[k] = float(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) if x.shape[1] > 1 else 1.0
        for lo, hi, what in ((0.8, 1.01, "nearly mono (r >= 0.8)"), (-1.0, 0.8, "wide (r < 0.8)")):
            sel = [(o, gen) for kind, gen, o in damaged if kind in WIDE and lo <= corr[int(o.stem[-2:])] < hi]
            got = sum(1 for o, _ in sel if "audio_phase_inverted" in {f["reason"] for f in findings(measure(o), cfg)})
            print(f"one channel inverted, originals {what}: {got} of {len(sel)} found (not in the targets)")
        for m in missed[:20]:
            print("  missed:", m)
        # cost: the measures in the decode against the music detector on the same files
        from benchmarks.duplicates import music_seconds

        paths = cuts[:a.music_files]
        t_music, audio_music = music_seconds(paths)
        Timed.spent = 0.0
        for p in paths:
            measure(p)
        print(f"\ncost: the measures take {1000 * spent_good / max(audio_s, 1):.1f} ms per second of audio over the good "
              f"files ({audio_s:.0f} s); on {len(paths)} cuts ({audio_music:.0f} s) {Timed.spent:.2f} s against the music "
              f"detector's {t_music:.1f} s: {100 * Timed.spent / t_music:.1f}% of the music stage's time (target <= 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

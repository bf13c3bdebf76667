"""The duplicates step on real audio: quality by kind and generator, and cost.

Originals: 40 s cuts of Debian's free game soundtracks (wesnoth-1.16-music,
planetblupi-music-ogg; `apt-get download`, unpacked and cached, never committed), one per
track. Copies are made from each original by two generators that share no code with the step
or with each other, the FFmpeg CLI and the sox CLI:
- exact: a lossless re-encode (FLAC / AIFF);
- near: mp3 at 32 and 128 kbit/s, Ogg Vorbis at low quality, resampled (16 / 22.05 kHz),
  gain-changed, downmixed, trimmed by 2 s, padded with 3 s of silence;
- excerpt: a 12 s cut from inside the original;
- derived (`[dedup] derived`, reported apart: the issue sets no target for it): played 3%
  faster (tape-like: time and pitch), stretched in time by 3.5% or 3% (pitch kept), moved by a
  semitone or half of one (tempo kept).
Hard negatives, which must never be grouped: other 20 s parts of the same tracks; two noise
beds ("rain") from numpy and from sox; one melody at two tempos (synthesised here with numpy,
and by ffmpeg's aevalsrc); two different cuts that share one 2 s sample mixed in; silence and
steady tones of several lengths.
Labels come from how each file was made: every file is run through the step (`groups.decide`,
the function the flow's step calls), none is set aside.

Cost: prints made per recording against the music detector's time on the same files (the
real PANNs architecture, randomly initialised: the same arithmetic as the published weights),
and lookup time per recording and peak memory as the index grows from 10,000 to 200,000
prints (copies of the real prints, each hash moved to its own place so that every print is
distinct; held as the step holds them, landmarks out of memory until asked for), and how many
of the pairs among the real prints the lookups still find with that many distractors.

    .venv/bin/python benchmarks/duplicates.py [--tracks 24] [--scale 10000,50000,200000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.dedup.groups import Candidate, decide  # noqa: E402
from curation.dedup.match import DERIVED, H_SIZE, Index  # noqa: E402
from curation.dedup.prints import Print, print_file  # noqa: E402
from curation.realaudio import package_audio  # noqa: E402

MUSIC = ("wesnoth-1.16-music", "planetblupi-music-ogg")
SR = 44100


def run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr.strip()[-400:]}")


def ff(*args: str) -> None:
    run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args])


def sox(*args: str) -> None:
    run(["sox", *args])


FFMPEG = {  # kind, how: out suffix, args (input, output)
    "exact:flac": ("exact", ".flac", lambda i, o: ff("-i", i, "-c:a", "flac", o)),
    "near:mp3-32k": ("near", ".mp3", lambda i, o: ff("-i", i, "-ar", "22050", "-b:a", "32k", o)),
    "near:mp3-128k": ("near", ".mp3", lambda i, o: ff("-i", i, "-b:a", "128k", o)),
    "near:ogg-q1": ("near", ".ogg", lambda i, o: ff("-i", i, "-c:a", "libvorbis", "-q:a", "1", o)),
    "near:resample-16k": ("near", ".wav", lambda i, o: ff("-i", i, "-ar", "16000", o)),
    "near:gain-9dB": ("near", ".wav", lambda i, o: ff("-i", i, "-af", "volume=-9dB", o)),
    "near:mono": ("near", ".wav", lambda i, o: ff("-i", i, "-ac", "1", o)),
    "near:trim-2s": ("near", ".wav", lambda i, o: ff("-ss", "2", "-i", i, o)),
    "near:pad-3s": ("near", ".wav", lambda i, o: ff("-i", i, "-af", "adelay=3000:all=1", o)),
    "excerpt:12s": ("excerpt", ".wav", lambda i, o: ff("-ss", "17", "-t", "12", "-i", i, o)),
    "derived:speed+3%": ("derived", ".wav", lambda i, o: ff("-i", i, "-af", f"asetrate={int(SR * 1.03)},aresample={SR}", o)),
    "derived:tempo+3.5%": ("derived", ".wav", lambda i, o: ff("-i", i, "-af", "atempo=1.035", o)),
    # up a semitone by resampling, then stretched back to the original's length
    "derived:pitch+1st": ("derived", ".wav", lambda i, o: ff("-i", i, "-af", f"asetrate={round(SR * 2 ** (1 / 12))},"
                                                            f"aresample={SR},atempo={2 ** (-1 / 12):.6f}", o)),
}
SOX = {
    "exact:aiff": ("exact", ".aiff", lambda i, o: sox(i, o)),
    "near:mp3-48k": ("near", ".mp3", lambda i, o: sox(i, "-C", "48", o)),
    "near:ogg-q0": ("near", ".ogg", lambda i, o: sox(i, "-C", "0", o)),
    "near:rate-22k": ("near", ".wav", lambda i, o: sox(i, "-r", "22050", o)),
    "near:vol+4dB": ("near", ".wav", lambda i, o: sox(i, o, "gain", "-l", "4")),
    "near:mixdown": ("near", ".wav", lambda i, o: sox(i, o, "remix", "-")),
    "near:trim-1.5s": ("near", ".wav", lambda i, o: sox(i, o, "trim", "1.5")),
    "near:pad-2s": ("near", ".wav", lambda i, o: sox(i, o, "pad", "2", "1")),
    "excerpt:10s": ("excerpt", ".wav", lambda i, o: sox(i, o, "trim", "5", "10")),
    "derived:speed+3%": ("derived", ".wav", lambda i, o: sox(i, o, "speed", "1.03")),
    "derived:tempo-3%": ("derived", ".wav", lambda i, o: sox(i, o, "tempo", "0.97")),
    "derived:pitch-0.5st": ("derived", ".wav", lambda i, o: sox(i, o, "pitch", "-50")),
}


def melody(tempo_bpm: float, seconds: float, sr: int = 16000) -> np.ndarray:
    """A fixed eight-note tune with harmonics, played at `tempo_bpm` (numpy only)."""
    notes = [60, 64, 67, 72, 71, 67, 64, 62]
    beat = 60.0 / tempo_bpm
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    k = (t // beat).astype(int)
    phase = t - k * beat
    f = 440.0 * 2 ** ((np.array(notes)[k % len(notes)] - 69) / 12)
    env = np.exp(-3 * phase / beat)
    for h in (1, 2, 3):
        out += env * np.sin(2 * np.pi * f * h * t) / h
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def brown(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(int(seconds * sr)))
    x -= np.convolve(x, np.ones(400) / 400, mode="same")
    drops = rng.random(len(x)) < 0.002  # rain drops
    x = x / np.abs(x).max() + drops * rng.uniform(-1, 1, len(x))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_sets(work: Path, tracks: int) -> tuple[list[dict], list[dict]]:
    """(records: path, base, kind, generator, how; negatives: path, what), all written here."""
    srcs = sorted(f for p in MUSIC for f in package_audio(p))
    picked = []
    for f in srcs:
        if sf.info(str(f)).duration >= 95:
            picked.append(f)
        if len(picked) == tracks:
            break
    recs: list[dict] = []
    negs: list[dict] = []
    for b, src in enumerate(picked):
        base = work / f"base{b:02d}.wav"
        ff("-ss", "10", "-t", "40", "-i", str(src), "-ar", str(SR), "-ac", "2", str(base))
        recs.append({"path": base, "base": b, "kind": "original", "generator": "", "how": ""})
        for gen, table in (("ffmpeg", FFMPEG), ("sox", SOX)):
            for how, (kind, ext, make) in table.items():
                out = work / f"b{b:02d}-{gen}-{how.replace(':', '_').replace('%', 'pc').replace('+', 'p')}{ext}"
                make(str(base), str(out))
                recs.append({"path": out, "base": b, "kind": kind, "generator": gen, "how": how})
        # other parts of the same track: the same piece, not the same audio
        other = work / f"other{b:02d}.wav"
        ff("-ss", "60", "-t", "20", "-i", str(src), "-ar", str(SR), str(other))
        negs.append({"path": other, "what": "same track, another part", "of": base})
    # noise beds
    for s in range(3):
        p = work / f"rain-numpy{s}.wav"
        sf.write(str(p), brown(30, s), 16000)
        negs.append({"path": p, "what": "noise bed (numpy)"})
        p = work / f"rain-sox{s}.wav"
        sox("-n", "-r", "16000", str(p), "synth", "30", "pinknoise", "vol", "0.3")
        negs.append({"path": p, "what": "noise bed (sox)"})
    # one melody, two tempos (two generators)
    for bpm in (100, 125):
        p = work / f"melody-numpy-{bpm}.wav"
        sf.write(str(p), melody(bpm, 30), 16000)
        negs.append({"path": p, "what": "melody at another tempo (numpy)"})
        p = work / f"melody-ffmpeg-{bpm}.wav"
        beat = 60 / bpm
        expr = ("0.3*sin(2*PI*t*(440*pow(2,(if(lt(mod(floor(t/{b}),4),1),0,if(lt(mod(floor(t/{b}),4),2),4,"
                "if(lt(mod(floor(t/{b}),4),3),7,12)))-9)/12)))*exp(-3*mod(t,{b})/{b})").format(b=beat)
        ff("-f", "lavfi", "-i", f"aevalsrc='{expr}':s=16000:d=30", str(p))
        negs.append({"path": p, "what": "melody at another tempo (ffmpeg)"})
    # two different cuts sharing one 2 s sample
    hit = work / "hit.wav"
    ff("-ss", "30", "-t", "2", "-i", str(picked[0]), "-ar", str(SR), "-ac", "2", str(hit))
    for k, src in enumerate(picked[1:3]):
        cut = work / f"cut{k}.wav"
        ff("-ss", "100" if sf.info(str(src)).duration > 135 else "50", "-t", "30", "-i", str(src), "-ar", str(SR), "-ac", "2", str(cut))
        p = work / f"shared-sample{k}.wav"
        ff("-i", str(cut), "-i", str(hit), "-filter_complex", "[1]adelay=8000:all=1[h];[0][h]amix=inputs=2:duration=first", str(p))
        negs.append({"path": p, "what": "shares a 2 s sample"})
    # silence and tones
    for secs in (10, 20):
        p = work / f"silence-ffmpeg-{secs}.wav"
        ff("-f", "lavfi", "-i", f"anullsrc=r=44100:cl=stereo", "-t", str(secs), str(p))
        negs.append({"path": p, "what": "silence"})
        p = work / f"tone-ffmpeg-{secs}.wav"
        ff("-f", "lavfi", "-i", f"sine=frequency=440:duration={secs}", str(p))
        negs.append({"path": p, "what": "tone"})
        p = work / f"tone-sox-{secs}.wav"
        sox("-n", "-r", "44100", str(p), "synth", str(secs), "sine", "440", "vol", "0.5")
        negs.append({"path": p, "what": "tone"})
    return recs, negs


def literal_repeat(part: Path, base: Path, sr: int = 4000, window_s: float = 5.0) -> float:
    """The best normalised cross-correlation of any 5 s of `part` against `base` (waveforms
    decoded by soundfile, resampled by scipy, no code of the step): near 1 when the track
    repeats some of the part's samples inside the original (game music loops), so that the
    part in fact shares audio with it."""
    from scipy.signal import correlate, resample_poly

    def mono(p):
        x, r = sf.read(str(p), dtype="float32", always_2d=True)
        return resample_poly(x.mean(axis=1), sr, r).astype(np.float64)

    a_all, b = mono(part), mono(base)
    w = int(window_s * sr)
    best = 0.0
    energy = np.convolve(b * b, np.ones(w), mode="valid")
    for lo in range(0, max(len(a_all) - w, 0) + 1, w // 2):
        a = a_all[lo:lo + w]
        if len(a) < w or len(a) > len(b) or not a.any():
            continue
        num = correlate(b, a, mode="valid", method="fft")
        best = max(best, float(np.max(np.abs(num) / np.sqrt(np.maximum(energy, 1e-12) * np.dot(a, a)))))
    return best


def quality(recs: list[dict], negs: list[dict]) -> tuple[dict, list[Print]]:
    aside = []
    for x in negs:
        if "of" in x:
            r = literal_repeat(x["path"], x["of"])
            if r > 0.8:
                aside.append(f"{x['path'].name}: the track repeats 5 s or more of it inside the original (r = {r:.2f})")
    negs = [x for x in negs if not ("of" in x and any(a.startswith(x["path"].name + ":") for a in aside))]
    items = recs + negs
    t0 = time.perf_counter()
    prints = {f"s{i}": print_file(x["path"]) for i, x in enumerate(items)}
    print_s = time.perf_counter() - t0
    cands = [Candidate("freesound", str(i + 1), f"s{i}", author="a", license="cc-by") for i in range(len(items))]
    t1 = time.perf_counter()
    decisions, counts = decide(cands, prints, [])
    counts.pop("known")
    decide_s = time.perf_counter() - t1
    group = {}
    for c in cands:
        d = decisions.get(c.key)
        if d is not None and d.action in ("kept", "duplicate"):
            group[c.key] = d.evidence["group"]
    # precision over pairs grouped together; recall per copy (grouped with its original)
    truth = {c.key: (x.get("base") if "base" in x else None) for c, x in zip(cands, items)}
    by_group: dict[str, list[str]] = {}
    for k, g in group.items():
        by_group.setdefault(g, []).append(k)
    tp = fp = 0
    for members in by_group.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                ta, tb = truth[members[a]], truth[members[b]]
                if ta is not None and ta == tb:
                    tp += 1
                else:
                    fp += 1
    orig = {x["base"]: c.key for c, x in zip(cands, items) if x.get("kind") == "original"}
    rows: dict[tuple[str, str], list[int]] = {}
    missed: list[str] = []
    for c, x in zip(cands, items):
        if x.get("kind") in (None, "original"):
            continue
        ok = c.key in group and group.get(orig[x["base"]]) == group[c.key]
        r = rows.setdefault((x["kind"], x["generator"]), [0, 0])
        r[0] += int(ok)
        r[1] += 1
        if x["kind"] == "derived":
            r = rows.setdefault((x["how"], x["generator"]), [0, 0])
            r[0] += int(ok)
            r[1] += 1
        if not ok:
            missed.append(f"{x['how']} ({x['generator']}) of base {x['base']}")
    neg_rows: dict[str, list[int]] = {}
    wrong: list[str] = []
    for c, x in zip(cands, items):
        if "what" in x:
            r = neg_rows.setdefault(x["what"], [0, 0])
            r[0] += int(c.key in group)
            r[1] += 1
            if c.key in group:
                ev = decisions[c.key].evidence
                corr = f", waveform correlation with its original r = {literal_repeat(x['path'], x['of']):.2f}" if "of" in x else ""
                wrong.append(f"{x['path'].name} ({x['what']}): {decisions[c.key].action}, "
                             f"{ev.get('kind', '')} {ev.get('shared_seconds', '')} s, score {ev.get('score', '')}"
                             f"{', speed ' + str(ev['speed']) + ', pitch ' + str(ev['pitch_semitones']) if 'speed' in ev else ''}{corr}")
    return {"wrong": wrong, "aside": aside, "tp": tp, "fp": fp, "rows": rows, "neg": neg_rows, "missed": missed, "print_s": print_s,
            "decide_s": decide_s, "n": len(items), "counts": counts,
            "audio_s": sum(p.seconds for p in prints.values())}, list(prints.values())


def music_seconds(paths: list[Path]) -> tuple[float, float]:
    """(seconds the music stage's scoring takes over the files, in full, as the stage runs it:
    streaming decode in one worker, Cnn14 on the CPU; their audio seconds)."""
    from curation.data import audioset_labels_csv
    from curation.music.detector import MusicDetector, PannsModel, save_random_checkpoint
    from curation.music.stream import score_files

    labels = audioset_labels_csv()
    with tempfile.TemporaryDirectory() as d:
        ckpt = Path(d) / "cnn14-random.pth"
        save_random_checkpoint(ckpt, labels, seed=0)
        det = MusicDetector(PannsModel(ckpt, labels, "cpu"), labels)
        jobs = [((str(i),), str(p), "full") for i, p in enumerate(paths)]
        t0 = time.perf_counter()
        audio_s = 0.0
        for done in score_files(det, jobs, batch_size=8, workers=1):
            audio_s += float(done.audio.get("seconds") or 0)
        return time.perf_counter() - t0, audio_s


def scale(prints: list[Print], sizes: list[int], queries: int = 200) -> list[dict]:
    """Each size in a fresh process (its peak RSS is the index's and the prints', nothing else)."""
    import json

    real = [p for p in prints if p.usable]
    out = []
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "prints.npz"
        np.savez(f, **{f"h{i}": p.hashes for i, p in enumerate(real)}, **{f"t{i}": p.frames for i, p in enumerate(real)},
                 **{f"pf{i}": p.refined()[0] for i, p in enumerate(real)}, **{f"pb{i}": p.refined()[1] for i, p in enumerate(real)},
                 seconds=np.array([p.seconds for p in real]))
        for n in sizes:
            res = subprocess.run([sys.executable, __file__, "--scale-child", str(n), str(f), str(queries)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(res.stderr[-800:])
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried over from the
    parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scale_child(n: int, f: Path, queries: int) -> dict:
    z = np.load(f)
    k_real = len(z["seconds"])
    real = [Print(f"r{i}", float(z["seconds"][i]), z[f"h{i}"], z[f"t{i}"], peaks=(z[f"pf{i}"], z[f"pb{i}"]))
            for i in range(k_real)]
    rng = np.random.default_rng(3)
    made = []
    for k in range(n):
        p = real[k % len(real)]
        shift = (k // len(real)) * 104729 % H_SIZE
        if shift == 0:
            made.append(p)
            continue
        # a light print, as the step holds them: its landmarks made again when asked for (the
        # step reads them from the print cache)
        made.append(p.light(lambda p=p, shift=shift: (((p.hashes.astype(np.int64) + shift) % H_SIZE).astype(np.int32),
                                                      p.frames)))
    rss0 = vm_hwm_mb()
    t0 = time.perf_counter()
    idx = Index(made)
    build = time.perf_counter() - t0
    pick = rng.choice(n, size=min(queries, n), replace=False)
    t1 = time.perf_counter()
    for k in pick:
        idx.lookup(made[k], exclude=int(k))
    per = (time.perf_counter() - t1) / len(pick)
    # with derived copies looked for too (`[dedup] derived`, the default): the real prints as
    # queries (their peaks are what the transforms move)
    dpick = rng.choice(min(k_real, n), size=min(queries, k_real, n), replace=False)
    t1 = time.perf_counter()
    for k in dpick:
        idx.lookup(made[k], exclude=int(k), transforms=DERIVED)
    per_derived = (time.perf_counter() - t1) / len(dpick)
    # the real prints are the first k_real of the index (moved by 0): the pairs among them it
    # still finds, with n - k_real distractors around them
    pairs = set()
    for k in range(min(k_real, n)):
        for hit in idx.lookup(made[k], exclude=k, transforms=DERIVED):
            if hit.other < k_real:
                pairs.add((min(k, hit.other), max(k, hit.other)))
    rss = vm_hwm_mb()
    out = {"n": n, "real_pairs": len(pairs), "hashes": len(idx), "build_s": build, "lookup_ms": per * 1000, "derived_ms": per_derived * 1000, "peak_rss_mb": rss,
                "rss_before_mb": rss0, "index_mb": idx.nbytes / 2**20}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--scale", default="10000,50000,200000")
    ap.add_argument("--music-files", type=int, default=8)
    ap.add_argument("--scale-child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.scale_child:
        import json

        print(json.dumps(scale_child(int(a.scale_child[0]), Path(a.scale_child[1]), int(a.scale_child[2]))))
        return 0
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t0 = time.perf_counter()
        recs, negs = make_sets(work, a.tracks)
        print(f"made {len(recs)} recordings from {a.tracks} originals and {len(negs)} hard negatives "
              f"in {time.perf_counter() - t0:.0f} s (ffmpeg {subprocess.run(['ffmpeg', '-version'], capture_output=True, text=True).stdout.split()[2]}, "
              f"{subprocess.run(['sox', '--version'], capture_output=True, text=True).stdout.strip()})")
        q, prints = quality(recs, negs)
        prec = q["tp"] / max(q["tp"] + q["fp"], 1)
        print(f"\nquality: {q['n']} files; pairs grouped: {q['tp']} right, {q['fp']} wrong: precision {prec:.4f}")
        print(f"{'kind':10} {'generator':10} {'found':>7} {'of':>5} {'recall':>7}")
        for (kind, gen), (ok, n) in sorted(q["rows"].items()):
            print(f"{kind:10} {gen:10} {ok:7d} {n:5d} {ok / n:7.3f}")
        for kind in ("exact", "near", "excerpt"):
            ok = sum(v[0] for (k, _), v in q["rows"].items() if k == kind)
            n = sum(v[1] for (k, _), v in q["rows"].items() if k == kind)
            print(f"{kind:10} {'both':10} {ok:7d} {n:5d} {ok / max(n, 1):7.3f}")
        print(f"set aside (labelled negative by construction, but some 5 s of it repeat the original's samples, "
              f"by waveform correlation): "
              f"{len(q['aside'])}" + "".join(f"\n  {a}" for a in q["aside"]))
        print("hard negatives (grouped with anything / of):")
        for what, (bad, n) in sorted(q["neg"].items()):
            print(f"  {what:34} {bad} / {n}")
        for w in q["wrong"]:
            print(f"  grouped: {w}")
        if q["missed"]:
            print("missed copies:", "; ".join(q["missed"][:20]))
        print(f"step counts: {q['counts']}")
        per_print = q["print_s"] / q["n"]
        print(f"\ncost: prints {q['print_s']:.1f} s for {q['n']} files ({q['audio_s']:.0f} s of audio): "
              f"{per_print * 1000:.0f} ms per recording, {q['audio_s'] / q['print_s']:.0f}x real time; "
              f"grouping {q['decide_s']:.2f} s")
        paths = [x["path"] for x in recs[: a.music_files * (1 + len(FFMPEG) + len(SOX)):(1 + len(FFMPEG) + len(SOX))]]
        t_music, audio_music = music_seconds(paths)
        t_print = 0.0
        t1 = time.perf_counter()
        for p in paths:
            print_file(p)
        t_print = time.perf_counter() - t1
        music_per = t_music / len(paths) * (q["audio_s"] / q["n"]) / (audio_music / len(paths))  # at the set's mean length
        print(f"same {len(paths)} files ({audio_music:.0f} s): music detector {t_music:.1f} s, prints {t_print:.2f} s: "
              f"prints are {100 * t_print / t_music:.1f}% of the music stage's time (target <= 10%)")
    sizes = [int(x) for x in a.scale.split(",") if x]
    if sizes:
        print("\nlookup as the index grows (copies of the real prints, each moved to its own hashes):")
        print(f"{'prints':>8} {'hashes':>11} {'index MB':>9} {'build s':>8} {'lookup ms':>10} {'+derived ms':>12} "
              f"{'peak RSS MB':>12} {'real pairs':>11}")
        rows = scale(prints, sizes)
        for r in rows:
            print(f"{r['n']:8d} {r['hashes']:11d} {r['index_mb']:9.0f} {r['build_s']:8.1f} {r['lookup_ms']:10.2f} "
                  f"{r['derived_ms']:12.2f} {r['peak_rss_mb']:12.0f} {r['real_pairs']:11d}")
        print("(real pairs: pairs among the real prints, which are in every index, that the lookups still find)")
        if len(rows) > 1:
            print(f"lookup at {rows[-1]['n']} / at {rows[0]['n']}: {rows[-1]['lookup_ms'] / rows[0]['lookup_ms']:.2f}x, "
                  f"with derived {rows[-1]['derived_ms'] / rows[0]['derived_ms']:.2f}x (target <= 1.5x)")
            per = rows[-1]["derived_ms"] / 1000
            stage = per_print + per
            print(f"the step per recording at {rows[-1]['n']} prints: print {per_print * 1000:.0f} ms + lookup with derived "
                  f"{per * 1000:.0f} ms = {100 * stage / music_per:.1f}% of the music stage's {music_per * 1000:.0f} ms (target <= 10%)")
            print(f"for SAO's 486,492 recordings: about {486492 * per / 60:.0f} min of lookups in one process "
                  f"and {486492 * per_print / 3600:.1f} h of prints (one process, {q['audio_s'] / q['n']:.0f} s recordings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Music detection throughput and memory, on this machine, in one run.

    .venv/bin/python benchmarks/music_throughput.py [--corpus-scale 1.0] [--long-minutes 60]
    .venv/bin/python benchmarks/music_throughput.py --decide both   # deciding vs scoring everything

Prints:
  1. model-only throughput (x real time) on fixed random input at the configured batch size;
  2. end-to-end throughput on a generated corpus of mixed lengths (1 s to 10 min) and formats
     (wav, flac, mp3, ogg) through the music stage as the flow runs it;
  3. the same corpus through panns_inference.SoundEventDetection, once per file with
     librosa.load (what a user would write);
  the ratios (2)/(1) and (2)/(3), and the peak RSS of scoring one long (60 min) recording.

The PANNs weights are RANDOMLY INITIALISED (the real checkpoint cannot be fetched offline):
the compute is the real architecture's, so the speed figures hold; the decisions do not.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curation import synth  # noqa: E402
from curation.config import Config  # noqa: E402
from curation.demo import find_labels_csv  # noqa: E402

LENGTHS = [1, 1, 2, 3, 5, 8, 10, 10, 20, 30, 45, 60, 90, 120, 240, 600]
FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("mp3", "MP3", "MPEG_LAYER_III"),
           ("ogg", "OGG", "VORBIS")]


def write_long(path: Path, seconds: float, fmt: str, subtype: str, sr: int = 44100, seed: int = 0) -> None:
    """Music-like audio written a minute at a time, so generating it needs little memory."""
    with sf.SoundFile(str(path), "w", sr, 2, format=fmt, subtype=subtype) as f:
        done, i = 0.0, 0
        while done < seconds:
            piece = min(60.0, seconds - done)
            x = synth.music(piece, sr=sr, seed=seed * 1000 + i) if i % 3 != 2 else synth.field_recording(piece, sr, seed)
            stereo = np.stack([x, x * 0.8], axis=1)
            for j in range(0, len(stereo), sr):  # libsndfile's Vorbis encoder crashes on long writes
                f.write(stereo[j : j + sr])
            done += piece
            i += 1


def make_corpus(root: Path, scale: float) -> list[tuple[Path, float]]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, secs in enumerate(LENGTHS):
        secs = max(1.0, secs * scale)
        ext, fmt, sub = FORMATS[i % len(FORMATS)]
        p = root / f"{i + 1}.{ext}"
        if not p.exists():
            write_long(p, secs, fmt, sub, sr=(44100, 48000, 22050)[i % 3], seed=i)
        out.append((p, sf.info(str(p)).duration))
    return out


def random_checkpoint(path: Path, labels: Path) -> Path:
    """Float32 (panns_inference's wrapper re-downloads any checkpoint under 300 MB)."""
    if path.exists():
        return path
    import torch

    from curation.music.detector import build_cnn14

    torch.manual_seed(0)
    model = build_cnn14(labels)
    torch.save({"model": model.state_dict(), "random_init": True}, path)
    return path


def model_only(ckpt: Path, labels: Path, batch: int, seconds: float, device: str, repeats: int) -> float:
    from curation.music.detector import SAMPLE_RATE, PannsModel

    model = PannsModel(ckpt, labels, device)
    batch = max(1, min(batch, int(args_budget(device) // seconds)))
    x = np.random.default_rng(0).standard_normal((batch, int(seconds * SAMPLE_RATE))).astype(np.float32) * 0.1
    model(x[:1, : SAMPLE_RATE * 2])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(x)
    return batch * seconds * repeats / (time.perf_counter() - t0)


def args_budget(device: str) -> float:
    from curation.music.detector import default_max_batch_seconds, pick_device

    return default_max_batch_seconds(pick_device(device))


def stage_config(work: Path, ckpt: Path, labels: Path, audio_dir: Path, args) -> Config:
    cfg = Config(path=work / "bench.toml", output_dir=work / "out")
    cfg.freesound.pages_dir = audio_dir
    cfg.freesound.audio_dir = audio_dir
    m = cfg.music
    m.checkpoint, m.labels_csv = ckpt, labels
    m.batch_size, m.workers, m.device = args.batch_size, args.workers, args.device
    m.chunk_seconds, m.context_seconds = args.chunk_seconds, args.context_seconds
    m.measure = "full"  # throughput of scoring every second (--decide compares deciding with it)
    m.cache_dir = work / f"cache-{time.time_ns()}"  # empty: everything is scored
    return cfg


def end_to_end(cfg: Config, files: list[tuple[Path, float]]) -> tuple[float, dict, list[str]]:
    from curation.music.stage import audio_and_music, load_detector, model_info
    from curation.records import Record

    info = model_info(cfg)
    load_detector(cfg, info)  # loading the model is not throughput
    records = [Record(source="freesound", id=p.stem) for p, _ in files]
    t0 = time.perf_counter()
    rep = audio_and_music(records, cfg, lambda: load_detector(cfg, info), info.sha256, info.random_init)
    wall = time.perf_counter() - t0
    return sum(d for _, d in files) / wall, rep.counts, rep.notes


def baseline(ckpt: Path, labels: Path, files: list[tuple[Path, float]], device: str) -> float:
    import librosa

    from curation.music.detector import ensure_panns_labels

    ensure_panns_labels(labels)
    from panns_inference import SoundEventDetection

    sed = SoundEventDetection(checkpoint_path=str(ckpt), device=device)
    sed.inference(np.zeros((1, 32000), np.float32))  # warm-up
    t0 = time.perf_counter()
    for p, _ in files:
        audio, _ = librosa.load(str(p), sr=32000, mono=True)
        sed.inference(audio[None, :])
    return sum(d for _, d in files) / (time.perf_counter() - t0)


def long_file_child(args) -> None:
    """Run in a fresh process: score one long file through the stage, print peak RSS."""
    cfg = stage_config(Path(args.work), Path(args.ckpt), Path(args.labels), Path(args.long_dir), args)
    path = next(Path(args.long_dir).iterdir())
    speed, counts, notes = end_to_end(cfg, [(path, sf.info(str(path)).duration)])
    from curation.music.stream import peak_rss_kb

    self_kb = peak_rss_kb()
    worker = max([float(n.split()[-2]) for n in notes if n.startswith("decode worker peak RSS")] or [0.0])
    print(json.dumps({"x_realtime": speed, "peak_rss_main_mb": self_kb / 1024, "peak_rss_worker_mb": worker,
                      "counts": counts}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "music-bench"))
    ap.add_argument("--corpus-scale", type=float, default=1.0, help="multiplies every corpus length")
    ap.add_argument("--long-minutes", type=float, default=60.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-seconds", type=float, default=60.0)
    ap.add_argument("--context-seconds", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--decide", choices=["fma", "sao", "both"],
                    help="instead: deciding vs scoring everything over FMA-like and/or SAO-like corpora "
                         "(real files and two generators), decisions compared record by record")
    ap.add_argument("--fma-tracks", type=int, default=10, help="tracks per FMA-like corpus (--decide)")
    ap.add_argument("--sao-records", type=int, default=120, help="recordings per SAO-like corpus (--decide)")
    ap.add_argument("--long-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--long-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.long_child:
        return long_file_child(args)
    if args.decide:
        from benchmarks import music_decide

        labels = find_labels_csv()
        return music_decide.main(args, labels)

    import torch

    from curation.music.detector import pick_device

    device = pick_device(args.device)
    print("=" * 78)
    print("RANDOMLY INITIALISED PANNs weights (real architecture): speed figures only, no real decisions")
    print(f"device {device}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"batch {args.batch_size}, workers {args.workers}, chunk {args.chunk_seconds:g} s")
    print("=" * 78)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    labels = find_labels_csv()
    ckpt = random_checkpoint(work / "panns_random_f32.pth", labels)
    files = make_corpus(work / "corpus", args.corpus_scale)
    total = sum(d for _, d in files)
    print(f"corpus: {len(files)} files, {total / 60:.1f} min, {min(d for _, d in files):.0f} s to "
          f"{max(d for _, d in files):.0f} s, formats wav/flac/mp3/ogg")

    seg = args.chunk_seconds + 2 * args.context_seconds
    m1 = model_only(ckpt, labels, args.batch_size, seg, device, repeats=2)
    nb = max(1, min(args.batch_size, int(args_budget(device) // seg)))
    print(f"(1) model only            : {m1:7.1f} x real time  (batch {nb} x {seg:g} s random input: batch_size "
          f"{args.batch_size} within the {args_budget(device):g} s per call budget)")
    cfg = stage_config(work, ckpt, labels, work / "corpus", args)
    m2, counts, _ = end_to_end(cfg, files)
    print(f"(2) end to end, the stage : {m2:7.1f} x real time  {counts}")
    if not args.skip_baseline:
        m3 = baseline(ckpt, labels, files, device)
        print(f"(3) SoundEventDetection   : {m3:7.1f} x real time  (librosa.load + one call per file)")
    print(f"ratio (2)/(1) = {m2 / m1:.2f}   (target >= 0.8)")
    if not args.skip_baseline:
        print(f"ratio (2)/(3) = {m2 / m3:.2f}   (target >= 2)")

    long_dir = work / "long"
    long_dir.mkdir(exist_ok=True)
    long_path = long_dir / f"{int(args.long_minutes * 60)}.flac"  # named by id, as the stage finds audio
    if not long_path.exists():
        for old in long_dir.iterdir():
            old.unlink()
        write_long(long_path, args.long_minutes * 60, "FLAC", "PCM_16", seed=99)
    child = subprocess.run(
        [sys.executable, __file__, "--long-child", "--work", str(work), "--ckpt", str(ckpt), "--labels", str(labels),
         "--long-dir", str(long_dir), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
         "--chunk-seconds", str(args.chunk_seconds), "--context-seconds", str(args.context_seconds),
         "--device", args.device],
        capture_output=True, text=True, check=True)
    res = json.loads(child.stdout.strip().splitlines()[-1])
    assert res["counts"].get("scored") == 1, res
    print(f"long recording ({args.long_minutes:g} min flac): {res['x_realtime']:.1f} x real time, peak RSS "
          f"main process {res['peak_rss_main_mb']:.0f} MB (target <= 2048 MB), each decode worker "
          f"{res['peak_rss_worker_mb']:.0f} MB")


if __name__ == "__main__":
    main()

"""Decoding and resampling. Every decoder failure becomes an :class:`AudioError` with a
reason code, so the caller can record it on the record and go on."""
from __future__ import annotations

import hashlib
import re
import subprocess
from typing import Callable, Iterator, Optional
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: What a decoder's message says about the file, in words (first match wins).
_IN_WORDS = (
    (("not finite",), "its decoded samples are not numbers (NaN or infinite): the data is damaged"),
    (("no such file", "not found in the store", "could not find"), "the file is not there"),
    (("permission denied",), "the file cannot be read (permission denied)"),
    (("end of file", "premature", "truncated", "ended early", "unexpected end"),
     "the file is cut off: it ends inside its audio"),
    (("no audio stream", "does not contain any stream", "no stream", "no audio"), "the file holds no audio stream"),
    (("invalid data found", "format not recognised", "unknown format", "error opening", "not a valid",
      "could not open input", "unsupported"),
     "its bytes are not audio that FFmpeg or libsndfile can read: damaged, or another kind of file"),
)


def in_words(detail: str) -> str:
    """A decoder's error message (which may name its own source files and build paths) as what
    is wrong with the file, for a person; the message itself stays in the evidence as detail."""
    low = (detail or "").lower()
    for needles, words in _IN_WORDS:
        if any(n in low for n in needles):
            return words
    if low.startswith("decoded ") and "declares" in low:
        return "the file is shorter than its metadata declares: the download or upload was cut short"
    return "the file could not be decoded"


def local_audio(path) -> Path:
    """A local file to decode: `path` itself, or for an object store URL a cached copy (see
    storage.local_copy). A missing object is `audio_missing`; a store that cannot be reached
    raises as it is (the task fails and a rerun resumes it, rather than the record being
    excluded for the store's trouble)."""
    from . import storage

    p = storage.as_path(path)
    if not storage.is_remote(p):
        return Path(p)
    try:
        return storage.local_copy(p)
    except FileNotFoundError:
        raise AudioError("audio_missing", f"not found in the store: {p.name}") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(local_audio(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- streaming

BLOCK_SECONDS = 10.0
_SNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".mp3", ".au", ".w64", ".caf"}
# libsndfile's parse log when a RIFF/AIFF chunk claims more bytes than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


@dataclass
class StreamInfo:
    sample_rate: int
    channels: int
    format: str
    frames: int = 0  # native frames decoded so far
    # native frames the header gives, where that count is exact (WAV/AIFF chunk sizes, FLAC's
    # STREAMINFO, Ogg's last granule position, an mp3's Xing/Info/VBRI frame count); 0 where
    # it is unknown or only an estimate. A promise, not a fact: the decoded length is checked.
    header_frames: int = 0
    # when the decoded length falls short of what the file's header gives, the shortfall
    # is kept (how long, against which length, what a second decoder found)
    length_check: dict | None = None

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def to_dict(self) -> dict:
        d = {"seconds": round(self.seconds, 3), "sample_rate": self.sample_rate, "channels": self.channels,
             "format": self.format}
        if self.length_check:
            d["length_check"] = self.length_check
        return d


# MP3: how far the decoded length may fall short of the length the file gives before the
# file counts as cut. libsndfile's mpg123 drops a frame it cannot decode (and the frames
# that borrow bits from it through the bit reservoir) and goes on, so a real file with a
# handful of damaged frames ends a few frames short: Debian's asc-music soundtracks end
# 0.25-0.38 s short of their estimate. A frame is 24-72 ms, so 1 s is 14-40 frames: far
# more than a few damaged ones, far less than what an interrupted download loses (a cut
# half-way through, or at any network buffer of tens of kB: several seconds).
MP3_SHORTFALL_S = 1.0

# containers (by content, as libsndfile names them) whose header gives the exact length: chunk
# sizes, FLAC's STREAMINFO, Ogg's last granule position (mp3: see mp3_length)
_EXACT_HEADER_FORMATS = ("WAV", "WAVEX", "AIFF", "FLAC", "OGG")


def mp3_length(path: Path) -> tuple[float, bool]:
    """(seconds, exact): exact when a Xing/Info/VBRI header gives the frame count (what LAME
    and most encoders write); otherwise an estimate from the file's size and bitrate, which
    is no promise (tags, junk and damaged frames all skew it)."""
    from mutagen.mp3 import MP3, BitrateMode

    try:
        info = MP3(str(path)).info
    except Exception:
        return 0.0, False
    # mutagen sets a bitrate mode only from a Xing/Info/VBRI header, whose frame count
    # then gives the length (less LAME's encoder delay and padding, as decoders play it)
    return float(info.length), info.bitrate_mode != BitrateMode.UNKNOWN and not info.sketchy


def _sndfile_count(path: Path) -> tuple[int, str]:
    """Frames libsndfile decodes from the whole file, and its error if it stopped on one."""
    n = 0
    try:
        with sf.SoundFile(str(path)) as f:
            block = max(1, int(BLOCK_SECONDS * f.samplerate))
            buf = np.empty((block, f.channels), dtype=np.float32)
            while True:
                got = f.read(block, dtype="float32", always_2d=True, out=buf)
                n += len(got)
                if len(got) < block:
                    return n, ""
    except Exception as e:
        return n, f"libsndfile: {e}"[:200]


def _ffmpeg_cmd(path: Path) -> list[str]:
    # native rate and channels, as float32: mixing and resampling stay ours, as for libsndfile
    return ["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{path}", "-vn", "-map", "0:a:0", "-f", "f32le", "-"]


def _ffmpeg_count(path: Path, channels: int) -> tuple[int, list[str]]:
    """Frames the FFmpeg command line decodes from the whole file, and what it complained of.
    It skips a damaged frame and decodes on, where libsndfile's mpg123 gives up resyncing
    after 1 kB of damage."""
    proc = subprocess.Popen(_ffmpeg_cmd(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n = 0
    try:
        while chunk := proc.stdout.read(1 << 20):
            n += len(chunk)
        err = proc.stderr.read().decode("utf-8", "replace")
    finally:
        proc.stdout.close()
        proc.stderr.close()
        proc.wait()
    complaints = sorted({re.sub(r" @ 0x[0-9a-f]+", "", ln.strip())[:160] for ln in err.splitlines() if ln.strip()})
    if proc.returncode != 0 and not complaints:
        complaints = [f"ffmpeg exited with {proc.returncode}"]
    return n // (4 * max(1, channels)), complaints[:5]


def plan_mp3(path: Path, sample_rate: int, channels: int, header_frames: int) -> tuple[str, dict | None]:
    """Which decoder reads this mp3 ("sndfile" or "ffmpeg") and what its length check found,
    or AudioError("audio_truncated") when the stream really ends early.

    The file's length is exact when a Xing/Info/VBRI frame count gives it, else an estimate
    from size and bitrate. libsndfile decodes it first; if it ends more than MP3_SHORTFALL_S
    short (or fails), FFmpeg decodes it too: when FFmpeg reaches the length, it reads the
    file (a few damaged frames, which mpg123 could not resync past); when it too ends short
    of the length (for an estimate: its own, which leaves tags out), the file is cut."""
    seconds, exact = mp3_length(path)
    expected = int(round(seconds * sample_rate)) if exact else header_frames
    source = "xing/vbri frame count" if exact else "estimate from size and bitrate"
    n1, err1 = _sndfile_count(path)
    short1 = (expected - n1) / sample_rate
    check = {"decoded_s": round(n1 / sample_rate, 3), "expected_s": round(expected / sample_rate, 3),
             "shortfall_s": round(short1, 3), "expected_from": source}
    if not err1 and short1 <= MP3_SHORTFALL_S:
        return "sndfile", (check if short1 > 0.02 else None)
    if err1:
        check["libsndfile_error"] = err1
    n2, complaints = _ffmpeg_count(path, channels)
    if not exact:
        from torchcodec.decoders import AudioDecoder

        try:
            ff_header = float(AudioDecoder(str(path)).metadata.duration_seconds_from_header or 0.0)
            expected = int(round(ff_header * sample_rate)) or expected
        except Exception:
            pass
    short2 = (expected - n2) / sample_rate
    check["ffmpeg"] = {"decoded_s": round(n2 / sample_rate, 3), "expected_s": round(expected / sample_rate, 3),
                       "shortfall_s": round(short2, 3), "complaints": complaints}
    if n2 > 0 and short2 <= MP3_SHORTFALL_S:
        check["decoder"] = "ffmpeg"
        return "ffmpeg", check
    raise AudioError("audio_truncated", f"decoded {check['decoded_s']} s of the {check['expected_s']} s the file "
                                        f"gives ({source}), and FFmpeg too ends short: {n2 / sample_rate:.2f} s"
                                        + (f" ({'; '.join(complaints)[:120]})" if complaints else "")
                                        + (f"; {err1}" if err1 else ""))


def _ffmpeg_cli_blocks(path: Path, info: StreamInfo, sr_out: int, channels_out: int,
                       skip: "Skip" = None, tap: "Tap" = None) -> Iterator[np.ndarray]:
    """The file through the FFmpeg command line, as float32 blocks like _sndfile_blocks'."""
    proc = subprocess.Popen(_ffmpeg_cmd(path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ch, sr = max(1, info.channels), info.sample_rate
    rs = None if sr == sr_out else soxr.ResampleStream(sr, sr_out, channels_out, dtype="float32", quality="HQ")
    want = max(1, int(BLOCK_SECONDS * sr)) * ch * 4
    try:
        data = b""
        while True:
            chunk = proc.stdout.read(want - len(data))
            data += chunk or b""
            last = not chunk
            if not last and len(data) < want:
                continue
            usable = len(data) - len(data) % (ch * 4)
            x = np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, ch)
            data = b""
            info.frames += len(x)
            if tap is not None and len(x):
                tap(x, sr)
            if skip is not None and skip():
                _checked(x, channels_out)
                if last:
                    break
                continue
            out = _convert(x, channels_out, rs, last)
            if len(out):
                yield out
            if last:
                break
    finally:
        proc.kill()
        proc.stdout.close()
        proc.wait()


def _layout(data: np.ndarray, channels_out: int) -> np.ndarray:
    """(frames, ch) to mono (frames,) or stereo (frames, 2): mono is duplicated, more than
    two channels are downmixed."""
    if channels_out == 1 or data.shape[1] > 2:
        mono = data.mean(axis=1)
        return mono if channels_out == 1 else np.repeat(mono[:, None], 2, axis=1)
    return data if data.shape[1] == 2 else np.repeat(data, 2, axis=1)


def _checked(data: np.ndarray, channels_out: int) -> np.ndarray:
    x = _layout(data, channels_out)
    if not np.isfinite(x).all():
        raise AudioError("audio_unreadable", "decoded samples are not finite")
    return x


def _convert(data: np.ndarray, channels_out: int, rs, last: bool) -> np.ndarray:
    """One decoded block (frames, ch) to the output layout and rate."""
    x = _checked(data, channels_out)
    out = x if rs is None else rs.resample_chunk(np.ascontiguousarray(x), last=last)
    return out.astype(np.float32, copy=False)


Skip = Optional[Callable[[], bool]]
#: Sees every decoded block as it comes, before it is mixed or resampled: (frames, channels)
#: float32 at the file's own rate (FFmpeg's library decoder, which resamples as it decodes:
#: at the output rate), skipped blocks included. The quality measures ride on the music
#: stage's decode this way (`curation/quality/measure.py`).
Tap = Optional[Callable[[np.ndarray, int], None]]


def _sndfile_blocks(path: Path, info_out: list, sr_out: int, channels_out: int,
                    skip: "Skip" = None, tap: "Tap" = None) -> Iterator[np.ndarray]:
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        raise AudioError("audio_unreadable", f"soundfile: {e}"[:300]) from None
    with f:
        m = _SHORT_CHUNK.search(f.extra_info or "")
        if m and int(m.group(1)) > int(m.group(2)) and int(m.group(1)) not in (0xFFFFFFFF, 0x7FFFFFFF):
            raise AudioError("audio_truncated", f"the header promises {m.group(1)} bytes of audio, "
                                                f"the file holds {m.group(2)}")
        info = StreamInfo(int(f.samplerate), int(f.channels), path.suffix.lower().lstrip("."))
        info_out.append(info)
        header_frames = int(f.frames)
        if f.format in _EXACT_HEADER_FORMATS and 0 < header_frames < 2**31:
            info.header_frames = header_frames
        if path.suffix.lower() == ".mp3":
            decoder, info.length_check = plan_mp3(path, info.sample_rate, info.channels, header_frames)
            seconds, exact = mp3_length(path)
            if exact:
                info.header_frames = int(round(seconds * info.sample_rate))
            if decoder == "ffmpeg":
                yield from _ffmpeg_cli_blocks(path, info, sr_out, channels_out, skip, tap)
                return
        rs = None if f.samplerate == sr_out else soxr.ResampleStream(
            f.samplerate, sr_out, channels_out, dtype="float32", quality="HQ")
        block = max(1, int(BLOCK_SECONDS * f.samplerate))
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                # the header was read: the stream itself is cut short or corrupt part way
                raise AudioError("audio_truncated", f"decoding failed after {info.seconds:.1f} s: {e}"[:300]) from None
            last = len(data) < block
            info.frames += len(data)
            if tap is not None and len(data):
                tap(data, int(f.samplerate))
            if skip is not None and skip():
                _checked(data, channels_out)
                if last:
                    break
                continue
            out = _convert(data, channels_out, rs, last)
            if len(out):
                yield out
            if last:
                break
        # FLAC's STREAMINFO gives the exact length: a stream that ends early was cut short
        if path.suffix.lower() == ".flac" and header_frames > 0 and info.frames < header_frames - f.samplerate // 10:
            raise AudioError("audio_truncated", f"decoded {info.frames} of the {header_frames} frames the header gives")


def _ffmpeg_blocks(path: Path, info_out: list, sr_out: int, channels_out: int,
                   skip: "Skip" = None, tap: "Tap" = None) -> Iterator[np.ndarray]:
    from torchcodec.decoders import AudioDecoder

    try:
        native = AudioDecoder(str(path))
        md = native.metadata
        # channels are mixed here, as for libsndfile: FFmpeg's downmix is 3 dB louder than a mean
        dec = AudioDecoder(str(path), sample_rate=sr_out)
    except Exception as e:
        raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
    info = StreamInfo(int(md.sample_rate or 0), int(md.num_channels or 0), path.suffix.lower().lstrip("."))
    info_out.append(info)
    start, got = 0.0, 0
    while True:
        try:
            s = dec.get_samples_played_in_range(start, start + BLOCK_SECONDS)
        except Exception as e:
            if got == 0 and start == 0.0:
                raise AudioError("audio_unreadable", f"ffmpeg: {e}"[:300]) from None
            msg = str(e)
            if "end" in msg.lower() or "range" in msg.lower():
                break
            raise AudioError("audio_truncated", f"decoding failed after {start:.1f} s: {msg}"[:300]) from None
        if s.data.numel() == 0:
            break
        raw = s.data.numpy().T
        if tap is not None and len(raw):
            tap(np.ascontiguousarray(raw, dtype=np.float32), sr_out)
        data = _layout(raw, channels_out).astype(np.float32, copy=False)
        got += len(data)
        info.frames = int(round(got / sr_out * info.sample_rate))
        if skip is not None and skip():  # FFmpeg resamples as it decodes: only the handing over is saved
            if not np.isfinite(data).all():
                raise AudioError("audio_unreadable", "decoded samples are not finite")
        else:
            yield data
        start += BLOCK_SECONDS
    header = md.duration_seconds_from_header
    if header and info.seconds < header - 0.5:
        raise AudioError("audio_truncated", f"decoded {info.seconds:.1f} s of the {header:.1f} s the header gives")


def audio_blocks(path: Path, info_out: list, sr_out: int, channels_out: int = 1,
                 skip: "Skip" = None, tap: "Tap" = None) -> Iterator[np.ndarray]:
    """A file as float32 blocks at `sr_out`, mono (frames,) or stereo (frames, 2), decoded,
    converted and resampled as a stream, so memory does not grow with the file's length.
    `info_out` receives its StreamInfo first. Raises AudioError with a reason code.

    `skip`, asked before each block: while it answers True the rest of the file is still
    decoded and checked exactly as it would be (cut short, damaged, non-finite samples: the
    same errors, and the same length in the StreamInfo) but no block is resampled or handed
    over. For a recording whose decision is already made. `tap` sees every decoded block (`Tap`)."""
    local = local_audio(path)
    if local is path or str(local) == str(path):
        return _audio_blocks(local, info_out, sr_out, channels_out, skip, tap)
    return _naming(path, local, _audio_blocks(local, info_out, sr_out, channels_out, skip, tap))


def _naming(url, local: Path, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Errors about a cached copy name the object it was copied from, not the cache file."""
    try:
        yield from blocks
    except AudioError as e:
        raise AudioError(e.reason, e.detail.replace(str(local), str(url))) from None


def _audio_blocks(path: Path, info_out: list, sr_out: int, channels_out: int,
                  skip: "Skip" = None, tap: "Tap" = None) -> Iterator[np.ndarray]:
    if not path.is_file():
        raise AudioError("audio_missing", f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise AudioError("audio_empty", "file is zero bytes")
    if path.suffix.lower() in _SNDFILE_EXTS:
        try:
            yield from _sndfile_blocks(path, info_out, sr_out, channels_out, skip, tap)
            return
        except AudioError as e:
            if e.reason != "audio_unreadable" or info_out:
                raise
            info_out.clear()  # libsndfile could not open it: FFmpeg may
    yield from _ffmpeg_blocks(path, info_out, sr_out, channels_out, skip, tap)


def load_mono(path: Path, sr: int) -> np.ndarray:
    """The whole file as float32 mono at `sr`, through `audio_blocks` (for clips of minutes,
    not hours: identification samples, fingerprints)."""
    blocks = list(audio_blocks(path, [], sr, 1))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

"""What a recording's samples say about its quality, measured as the music stage decodes it.

`Meter.update` sees every decoded block at the file's own rate and channels (`audio.Tap`: the
music stage's decode, no second one), `Meter.result` gives:
- `loudness_lufs`: integrated loudness, ITU-R BS.1770-4 / EBU R128 (pyloudnorm's K-weighting
  filters, applied as a stream; 400 ms blocks with 75% overlap, gated at -70 LUFS and -10 LU);
- `true_peak_dbtp`: the peak of the signal oversampled 4x (BS.1770 annex 2), and `sample_peak`;
- `clipped_share`: the share of samples at or above 0.999 of full scale in runs of 3 or more;
- `silent_share`: the share of 50 ms frames below -60 dBFS (digital silence, a hiss floor);
- `bandwidth_hz`: the highest frequency whose long-term level is within 50 dB of the
  spectrum's loudest (smoothed) band, and `bandwidth_share` of the file's Nyquist frequency (an
  8 kHz recording saved at 44.1 kHz stops at 4 kHz: 0.18);
- `channel_rms_dbfs` per channel and `channel_correlation` between the first two, and
  `low_correlation` below 150 Hz (a wide mix's channels may barely correlate, but its bass is
  in the centre: a channel inverted shows as bass in opposite phase);
- `dc_offset`: the median over 1 s windows of the largest channel's mean.
"""
from __future__ import annotations

import math

import numpy as np

CLIP_LEVEL = 0.999
CLIP_RUN = 3
SILENT_DBFS = -60.0
FRAME_S = 0.05
FFT = 4096
BANDWIDTH_DB = 50.0
LOW_HZ = 150.0  # the bass of a mix is in its centre: below this, its channels move together
VERSION = 2  # 2: low_correlation, bandwidth within 50 dB


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else -math.inf


class Meter:
    def __init__(self):
        self.sr = 0
        self.ch = 0

    def _start(self, sr: int, ch: int) -> None:
        import pyloudnorm

        self.sr, self.ch = sr, ch
        self.weights = np.full(ch, 1.0 / ch, np.float32)
        meter = pyloudnorm.Meter(sr)
        shelf, hp = meter._filters["high_shelf"], meter._filters["high_pass"]
        # the two stages as one filter (their product), run in one pass
        self.kb, self.ka = np.convolve(shelf.b, hp.b), np.convolve(shelf.a, hp.a)
        self.zi = np.zeros((len(self.ka) - 1, ch))  # at rest, as pyloudnorm starts
        self.sub = max(1, int(round(0.1 * sr)))  # 100 ms sub-blocks of K-weighted energy
        self.sub_acc = np.zeros(0, np.float64)
        self.sub_energy: list[float] = []
        self.n = 0
        self.s1 = np.zeros(ch)
        self.s2 = np.zeros(ch)
        self.sxy = 0.0
        from scipy.signal import butter

        self.low_sos = butter(2, LOW_HZ, btype="low", fs=sr, output="sos")
        self.low_zi = np.zeros((self.low_sos.shape[0], 2, 2))
        self.low = np.zeros(3)  # sum x0^2, x1^2, x0*x1 of the low band
        self.peak = 0.0
        self.true_peak = 0.0
        self.clipped = 0
        self.frame = max(1, int(FRAME_S * sr))
        self.frame_acc = np.zeros(0, np.float32)
        self.frames = 0
        self.silent = 0
        self.spec = np.zeros(FFT // 2 + 1)
        self.spec_n = 0
        self.spec_acc = np.zeros(0, np.float32)
        self.window = np.hanning(FFT).astype(np.float32)
        self.sec_acc = np.zeros((0, ch), np.float32)
        self.dc: list[float] = []

    def update(self, block: np.ndarray, sr: int) -> None:
        from scipy.signal import lfilter, resample_poly

        x = np.asarray(block, np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if not len(x):
            return
        if self.sr == 0:
            self._start(int(sr), x.shape[1])
        if x.shape[1] != self.ch or int(sr) != self.sr:  # a stream that changes layout: measured as it began
            return
        if not np.isfinite(x).all():
            return  # the decoder says what is wrong with such a file
        self.n += len(x)
        w = self.weights
        self.s1 += np.ones(len(x), np.float32) @ x
        sq = x * x
        self.s2 += np.ones(len(x), np.float32) @ sq
        if self.ch > 1:
            self.sxy += float(np.dot(x[:, 0], x[:, 1]))
            from scipy.signal import sosfilt

            lo, self.low_zi = sosfilt(self.low_sos, x[:, :2], axis=0, zi=self.low_zi)
            self.low += [float(np.dot(lo[:, 0], lo[:, 0])), float(np.dot(lo[:, 1], lo[:, 1])),
                         float(np.dot(lo[:, 0], lo[:, 1]))]
        a = np.abs(x)
        amax = a[:, 0] if self.ch == 1 else np.maximum(a[:, 0], a[:, 1]) if self.ch == 2 else a.max(axis=1)

        # true peak, 4x oversampled: an inter-sample peak exceeds its neighbours by at most about
        # 3 dB (more only where the signal is clipped, whose samples are all at the top), so only
        # blocks that reach within 3 dB of the loudest sample so far, and in them the stretches
        # around samples within 3 dB of it, are
        # oversampled (resample_poly's filter reaches 10 samples either way: each stretch keeps
        # 32 samples around its candidates, and only the 12 nearest are read)
        top = float(amax.max())
        loudest = max(self.peak, top)  # the loudest sample so far (this block's included)
        if top >= loudest / 1.42:
            cand = amax >= loudest / 1.42
            cover = np.convolve(cand, np.ones(65), "same") > 0.5
            if cover.mean() > 0.5:
                up = resample_poly(x, 4, 1, axis=0)
                self.true_peak = max(self.true_peak, float(np.abs(up).max()), top)
            else:
                keep = np.flatnonzero(cover)
                inner = (np.convolve(cand, np.ones(25), "same") > 0.5)[keep]
                up = np.abs(resample_poly(x[keep], 4, 1, axis=0))
                self.true_peak = max(self.true_peak, float(up[np.repeat(inner, 4)].max()), top)
        self.peak = loudest
        # clipping: runs of samples at full scale
        hot = a >= CLIP_LEVEL
        if hot.any():
            for c in range(self.ch):
                h = hot[:, c].astype(np.int8)
                if not h.any():
                    continue
                edges = np.diff(np.r_[0, h, 0])
                starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
                runs = ends - starts
                self.clipped += int(runs[runs >= CLIP_RUN].sum())
        # loudness: K-weighted energy in 100 ms sub-blocks
        k, self.zi = lfilter(self.kb, self.ka, x, axis=0, zi=self.zi)
        e = np.r_[self.sub_acc, (k * k) @ np.ones(self.ch)]
        whole = len(e) // self.sub * self.sub
        if whole:
            self.sub_energy += list(e[:whole].reshape(-1, self.sub).mean(axis=1))
        self.sub_acc = e[whole:]
        # silence, by 50 ms frames of the mean of the channels' energy
        m2 = np.r_[self.frame_acc, sq @ w]
        whole = len(m2) // self.frame * self.frame
        if whole:
            rms = m2[:whole].reshape(-1, self.frame).mean(axis=1)
            self.frames += len(rms)
            self.silent += int((rms < 10 ** (SILENT_DBFS / 10)).sum())
        self.frame_acc = m2[whole:]
        # the long-term spectrum of the mix
        mono = np.r_[self.spec_acc, x @ w]
        whole = len(mono) // FFT * FFT
        if whole:
            frames = mono[:whole].reshape(-1, FFT) * self.window
            self.spec += (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
            self.spec_n += len(frames)
        self.spec_acc = mono[whole:]
        # DC, per second
        s = np.r_[self.sec_acc, x]
        whole = len(s) // self.sr * self.sr
        if whole:
            means = s[:whole].reshape(-1, self.sr, self.ch).mean(axis=1)
            self.dc += list(np.abs(means).max(axis=1))
        self.sec_acc = s[whole:]

    def _loudness(self) -> float | None:
        e = np.asarray(self.sub_energy)
        if len(e) < 4:
            return None
        blocks = np.convolve(e, np.ones(4) / 4, mode="valid")  # 400 ms, 75% overlap
        lk = -0.691 + 10 * np.log10(np.maximum(blocks, 1e-20))
        gated = blocks[lk > -70.0]
        if not len(gated):
            return None
        rel = -0.691 + 10 * np.log10(gated.mean()) - 10.0
        final = gated[-0.691 + 10 * np.log10(gated) > rel]
        if not len(final):
            return None
        return round(float(-0.691 + 10 * np.log10(final.mean())), 2)

    def _bandwidth(self) -> float | None:
        if self.spec_n == 0:
            return None
        p = self.spec / self.spec_n
        smooth = np.convolve(p, np.ones(9) / 9, mode="same")
        if smooth.max() <= 1e-20:
            return None
        level = 10 * np.log10(np.maximum(smooth, 1e-30))
        above = np.flatnonzero(level >= level.max() - BANDWIDTH_DB)
        return float(above.max() * self.sr / FFT)

    def result(self) -> dict:
        if self.n == 0:
            return {"version": VERSION, "measured": False}
        rms = [round(_db(v / self.n), 2) if v > 0 else None for v in self.s2]
        corr = None
        if self.ch > 1:
            mx, my = self.s1[0] / self.n, self.s1[1] / self.n
            vx, vy = self.s2[0] / self.n - mx * mx, self.s2[1] / self.n - my * my
            if vx > 1e-12 and vy > 1e-12:
                corr = round(float((self.sxy / self.n - mx * my) / math.sqrt(vx * vy)), 4)
        bw = self._bandwidth()
        return {
            "version": VERSION, "measured": True, "measured_at_hz": self.sr, "channels": self.ch,
            "seconds": round(self.n / self.sr, 3),
            "loudness_lufs": self._loudness(),
            "true_peak_dbtp": round(_db(self.true_peak ** 2), 2) if self.true_peak > 0 else None,
            "sample_peak": round(self.peak, 5),
            "clipped_share": round(self.clipped / (self.n * self.ch), 6),
            "silent_share": round(self.silent / self.frames, 4) if self.frames else 1.0,
            "bandwidth_hz": round(bw, 1) if bw is not None else None,
            "bandwidth_share": round(bw / (self.sr / 2), 4) if bw is not None else None,
            "channel_rms_dbfs": rms,
            "channel_correlation": corr,
            "low_correlation": (round(float(self.low[2] / math.sqrt(self.low[0] * self.low[1])), 4)
                                if self.ch > 1 and self.low[0] > 1e-9 and self.low[1] > 1e-9 else None),
            "dc_offset": round(float(np.median(self.dc)), 5) if self.dc else round(float(np.abs(self.s1 / self.n).max()), 5),
        }


def measure_file(path) -> dict:
    """The measures of one file through its own decode (for a recording the music stage's
    decode did not measure: a music cache from before the quality stage)."""
    from ..audio import audio_blocks

    m = Meter()
    for _ in audio_blocks(path, [], 8000, 1, skip=lambda: True, tap=m.update):
        pass
    return m.result()

"""The quality stage: what the samples say, against `[quality]`'s thresholds.

The measures (`measure.py`) are made in the music stage's decode and kept in the audio
evidence (`audio.quality`, with the music cache); a recording the cache knew before there was a
quality stage is measured here, in a decode of its own (counted: `measured_here`). Each finding
is one of the reasons below; each is set to "exclude", "flag" (kept, and named in the sample
metadata's `quality.flags`) or "off". The evidence (`quality`) keeps every measure, and for each
finding the value, the threshold and what was done.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from ..config import Config, QualityConfig
from ..stage import Stage, StageReport
from .measure import VERSION as MEASURE_VERSION

#: (reason, [quality] key of its action), in the order a recording is excluded by them.
ORDER = (("audio_silent", "silent"), ("audio_dead_channel", "dead_channel"), ("audio_clipped", "clipped"),
         ("audio_low_bandwidth", "low_bandwidth"), ("audio_phase_inverted", "phase_inverted"),
         ("audio_dc_offset", "dc_offset"))
ALIVE_DBFS = -60.0  # a channel this loud, or louder, plays


def findings(q: dict, c: QualityConfig) -> list[dict]:
    """Each threshold the measures cross: reason, measured value, threshold (any action)."""
    out = []
    if not q or not q.get("measured"):
        return out

    def hit(reason, value, threshold):
        out.append({"reason": reason, "value": value, "threshold": threshold})

    silent = q.get("silent_share", 0.0) >= c.silent_min_share
    if silent:
        hit("audio_silent", q.get("silent_share"), c.silent_min_share)
    rms = [(-999.0 if v is None else float(v)) for v in q.get("channel_rms_dbfs") or []]
    alive = len(rms) >= 2 and min(rms) >= ALIVE_DBFS
    if not silent and len(rms) >= 2 and max(rms) >= ALIVE_DBFS and min(rms) < c.dead_channel_dbfs:
        hit("audio_dead_channel", min(rms) if min(rms) > -999 else None, c.dead_channel_dbfs)
    if (q.get("clipped_share") or 0.0) >= c.clipped_min_share:
        hit("audio_clipped", q.get("clipped_share"), c.clipped_min_share)
    bw = q.get("bandwidth_share")
    if not silent and bw is not None and bw < c.min_bandwidth_share:
        hit("audio_low_bandwidth", bw, c.min_bandwidth_share)
    # the whole band, or the bass (which a mix mostly keeps in its centre)
    corrs = [v for v in (q.get("channel_correlation"), q.get("low_correlation")) if v is not None]
    corr = min(corrs) if corrs else None
    if alive and corr is not None and corr <= c.max_correlation:
        hit("audio_phase_inverted", corr, c.max_correlation)
    if not silent and (q.get("dc_offset") or 0.0) >= c.max_dc_offset:
        hit("audio_dc_offset", q.get("dc_offset"), c.max_dc_offset)
    return out


def judged(q: dict, c: QualityConfig) -> tuple[str | None, dict]:
    """(the reason it is excluded for, or None; the evidence)."""
    actions = {reason: getattr(c, key) for reason, key in ORDER}
    found = [{**f, "action": actions[f["reason"]]} for f in findings(q, c) if actions[f["reason"]] != "off"]
    out = None
    for reason, _ in ORDER:
        if any(f["reason"] == reason and f["action"] == "exclude" for f in found):
            out = reason
            break
    ev = {**q, "found": found, "flags": [f["reason"] for f in found if f["action"] == "flag"]}
    return out, ev


def quality_table(table: pa.Table, cfg: Config, rep: StageReport) -> pa.Table:
    if table.num_rows == 0 or "ev_audio" not in table.column_names:
        return table
    pend = rt.pending(table)
    has = pc.and_(pend, pc.is_valid(table.column("ev_audio")))
    if not pc.any(has).as_py():
        return table
    sub = table.filter(has)
    evidence, excluded = [], []
    for row_audio, path in zip(sub.column("ev_audio").to_pylist(), sub.column("audio_path").to_pylist()):
        try:
            audio = json.loads(row_audio or "{}")
        except ValueError:
            audio = {}
        q = audio.get("quality") if isinstance(audio, dict) else None
        if not q or q.get("version") != MEASURE_VERSION:
            q = _measure_here(cfg, path, rep)
        else:
            rep.add("measured_in_decode")
        reason, ev = judged(q, cfg.quality)
        for f in ev["found"]:
            rep.add(f"{f['reason']}:{f['action']}")
        evidence.append(rt.ev_json(ev))
        excluded.append(reason)
    table = rt.put(table, has, {"ev_quality": pa.array(evidence, pa.string())})
    rows = pc.indices_nonzero(has).to_numpy()
    for reason, _ in ORDER:
        picked = [i for i, r in zip(rows, excluded) if r == reason]
        if picked:
            mask = np.zeros(table.num_rows, bool)
            mask[picked] = True
            table = rt.exclude(table, pa.array(mask), reason)
            rep.add(reason, len(picked))
    return table


def _measure_here(cfg: Config, path, rep: StageReport) -> dict:
    from ..audio import AudioError
    from .measure import measure_file

    rep.add("measured_here")
    try:
        return measure_file(cfg.resolve(path)) if path else {"measured": False}
    except (AudioError, OSError) as e:
        rep.add("measure_failed")
        return {"measured": False, "error": str(e)[:200]}


def _setup(cfg, info, progress):
    return lambda t, rep: quality_table(t, cfg, rep)


def explain(row: dict, ev: dict) -> list[str]:
    q = ev.get("quality")
    if not q or not q.get("measured"):
        return []
    bw = q.get("bandwidth_hz")
    out = [f"  quality: {q.get('loudness_lufs')} LUFS, true peak {q.get('true_peak_dbtp')} dBTP, content to "
           f"{'?' if bw is None else f'{bw / 1000:.1f} kHz'} of {q.get('measured_at_hz', 0) / 2000:.1f} kHz, "
           f"{100 * float(q.get('silent_share') or 0):.0f}% silent, clipped {100 * float(q.get('clipped_share') or 0):.2f}%, "
           f"channels {q.get('channel_rms_dbfs')} dBFS (correlation {q.get('channel_correlation')}), DC {q.get('dc_offset')}"]
    for f in q.get("found") or []:
        out.append(f"  quality: {f['reason']} ({f['action']}): measured {f['value']}, threshold {f['threshold']}")
    return out


#: The reasons this stage may set, and what each means.
QUALITY_REASONS = {
    "audio_silent": "the recording is (nearly) all silence or a hiss floor ([quality] silent_min_share)",
    "audio_dead_channel": "one channel is dead while another plays ([quality] dead_channel_dbfs)",
    "audio_clipped": "a share of the samples is clipped at full scale ([quality] clipped_min_share)",
    "audio_low_bandwidth": "the content stops far below the file's Nyquist frequency: a low-rate recording saved "
                           "at a higher rate ([quality] min_bandwidth_share)",
    "audio_phase_inverted": "the channels are in opposite phase ([quality] max_correlation)",
    "audio_dc_offset": "a lasting DC offset ([quality] max_dc_offset)",
}

QUALITY = Stage(
    name="quality",
    version=1,
    reads=("source", "id", "status", "audio_path", "ev_audio"),
    writes=("status", "reason", "ev_quality"),
    reasons=QUALITY_REASONS,
    settings=lambda cfg, info: (json.dumps(asdict(cfg.quality), sort_keys=True), MEASURE_VERSION),
    setup=_setup,
    count_passed=False,  # what it lets by is not decided by it
    explain=explain,
)

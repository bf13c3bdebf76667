"""Why is this recording in, or out? One manifest row, told stage by stage."""
from __future__ import annotations

import json
from pathlib import Path

from curation import storage
from curation.stages import REASONS
from curation.sources.fma import url_was_derived


class NotInManifest(LookupError):
    pass


def find_row(manifest: Path, source: str, rid: str) -> dict:
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest}: run `curate run` first")
    # the filter is pushed into the reader: row groups whose statistics exclude it are not read
    hit = storage.read_parquet(manifest, filters=[("source", "=", source), ("id", "=", str(rid))])
    if hit.num_rows == 0:
        raise NotInManifest(f"{source} {rid} is not in {manifest}")
    return hit.to_pylist()[0]


def explain_lines(row: dict) -> list[str]:
    """Plain-text lines, one fact each, in the order the stages ran."""
    ev = json.loads(row.get("evidence") or "{}")
    out = [f"{row['source']} {row['id']}: {row['status'].upper()}"
           + (f" ({row['reason']}: {REASONS.get(row['reason'], '')})" if row["reason"] else "")]
    out.append(f"  title: {row['title']!r}  author: {row['author']!r}  url: {row['url']}")
    if row.get("seen", 1) and row.get("seen", 1) > 1:
        out.append(f"  ingest: seen {row['seen']} times, kept once")
    if ev.get("versions", 1) > 1:
        out.append(f"  ingest: fetched {ev['versions']} times from the API; the newest version stands")
    for k in ("detail", "conflicting_fields", "licenses_seen", "license_changed_from", "download_error", "text_cleaned"):
        if k in ev:
            out.append(f"  ingest: {k} = {ev[k]}")
    lic = ev.get("license")
    if lic:
        out.append(f"  license: raw {lic['raw']!r} -> {lic['class']} ({'allowed' if lic['allowed'] else 'rejected'})"
                   + (f", license URL from raw_tracks.csv {lic['license_url_raw']!r}" if lic.get("license_url_raw") else "")
                   + (f", deed {lic['license_url']}" if lic.get("license_url") else ""))
    att = ev.get("attribution")
    if att is not None:
        src = att.get("url_source") or "none"
        out.append(f"  attribution: url {row['url'] or '(none)'} (source: {src})"
                   + (f"; {att['detail']}" if att.get("detail") else "")
                   + ("  [DERIVED: check before publishing]" if url_was_derived(ev) else ""))
    genai = ev.get("genai")
    if genai:
        shown = repr(genai["preference"]) if genai.get("present") else "absent"
        out.append(f"  gen_ai_preference: {shown}; release declares open_source_model="
                   f"{str(genai['release_open_source_model']).lower()}, noncommercial="
                   f"{str(genai['release_noncommercial']).lower()}; rule: {genai['rule']}")
    audio = ev.get("audio")
    if audio:
        if "error" in audio:
            out.append(f"  audio: {audio['error']}")
        else:
            out.append(f"  audio: {audio.get('format')} {audio.get('seconds')} s, {audio.get('sample_rate')} Hz, "
                       f"{audio.get('channels')} ch, sha256 {str(audio.get('sha256'))[:16]}")
    music = ev.get("music")
    if music:
        if "error" in music:
            out.append(f"  music: classifier failed: {music['error']}")
        elif music.get("decided") == "source":
            out.append(f"  music: taken as music because its source is {music.get('source')} "
                       f"(music.{music.get('source')} = \"source\"); the model was not run")
        elif music.get("decided") == "short":
            out.append(f"  music: not music, decided without the model: {music.get('seconds')} s is shorter "
                       f"than the {music.get('min_music_seconds')} s of music frames the rule needs")
        else:
            verdict = "music" if music.get("is_music") else "not music"
            if music.get("decided") == "early":
                why = ("enough music frames were found" if music.get("is_music") else
                       "the frames left could not make up the music frames it lacks")
                out.append(f"  music: scoring stopped early at {music.get('measured_seconds')} s of "
                           f"{music.get('seconds')} s, once the rule was settled ({why}); "
                           "music_seconds is a lower bound")
            rules = f">= {music.get('min_music_seconds')} s"
            if music.get("min_music_fraction"):
                rules += f", or >= {music['min_music_fraction']:.0%} of a shorter clip"
            fired = f"; rule fired: {music['rule']}" if music.get("is_music") and music.get("rule") else ""
            out.append(
                f"  music: {verdict}: {music.get('music_seconds')} s ({music.get('music_fraction') or 0:.0%} of "
                f"{music.get('seconds')} s) of frames >= {music.get('threshold')} (rule: {rules}{fired}), "
                f"max prob {music.get('max_music_prob')}, top {', '.join(music.get('top_labels') or [])}"
            )
            out.append(f"  music model sha256 {str(music.get('checkpoint_sha256'))[:16]}"
                       + ("  [RANDOM WEIGHTS: decision not real]" if music.get("checkpoint_random") else ""))
    cr = ev.get("copyright")
    if cr:
        line = f"  copyright: {cr.get('method')}"
        if "flagged" in cr:
            line += f", flagged={cr['flagged']} score={cr.get('score')} (title {cr.get('title_score')}, " \
                    f"artist {cr.get('artist_score')})"
        out.append(line)
        if cr.get("candidate"):
            out.append(f"  copyright candidate: {json.dumps(cr['candidate'], ensure_ascii=False)}")
        if cr.get("normalizations"):
            out.append(f"  normalisations: {', '.join(cr['normalizations'])}")
    rv = ev.get("review")
    if rv:
        out.append(f"  review: {rv.get('decision')} by {rv.get('reviewer') or '?'}"
                   + (f" at {rv['decided_at']}" if rv.get("decided_at") else "")
                   + (f" ({rv['note']})" if rv.get("note") else ""))
    td = ev.get("takedown")
    if td:
        out.append(f"  takedown: requested {td.get('requested_at')} ({td.get('reason') or 'no reason given'}); "
                   f"before it: {td.get('status_before')}" + (f" ({td['reason_before']})" if td.get("reason_before") else ""))
    if ev.get("shard"):
        out.append(f"  release: in {ev['shard']}")
    return out

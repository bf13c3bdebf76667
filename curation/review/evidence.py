"""A review item's evidence as HTML tables, for the workspace (`curate review serve`) and the
static export (`OUT/review/index.html`) alike. Every text from metadata or a service is
escaped; a link is made only of an http(s) URL."""
from __future__ import annotations

import html
import json

from ..safe_text import safe_href


def link(url: object, text: str | None = None, new_tab: bool = True) -> str:
    """An http(s) URL as a link; anything else as text only."""
    href = safe_href(url)
    if href is None:
        return f"<span class='err'>{html.escape(str(url or '(no URL)'))}</span>"
    tab = " target='_blank'" if new_tab else ""
    return (f"<a href='{html.escape(href, quote=True)}' rel='noopener noreferrer'{tab}>"
            f"{html.escape(text if text is not None else href)}</a>")


def _table(cls: str, head: list[str], rows: list[list[object]]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else e('' if c is None else str(c))}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table class='ev {cls}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Cell content that is already HTML (a link)."""


def _num(v, digits: int = 3):
    try:
        return f"{float(v):.{digits}g}"
    except (TypeError, ValueError):
        return "" if v is None else str(v)


def tables(ev: dict) -> str:
    """The evidence as tables: catalogue candidates with their scores; fingerprint, AcoustID and
    ACRCloud matches; a re-upload's other copies; a service's error."""
    e = html.escape
    ev = ev or {}
    parts = []
    cands = ev.get("candidates") or ([ev["candidate"]] if ev.get("candidate") else [])
    if cands:
        parts.append("<h4>Catalogue candidates</h4>" + _table("catalogue", [
            "catalogue title", "artists", "album", "track id", "title score", "artist score", "flagged"],
            [[c.get("track_name", ""), c.get("artists", ""), c.get("album_name", ""), c.get("track_id", ""),
              c.get("title_score", ev.get("title_score", "")), c.get("artist_score", ev.get("artist_score", "")),
              "yes" if c.get("flagged") else ""] for c in cands]))
        if ev.get("normalizations"):
            parts.append(f"<p>normalisations: {e(', '.join(map(str, ev['normalizations'])))}</p>")
    fp = [m for m in ev.get("matches") or [] if "reference" in m]
    if fp:
        parts.append("<h4>Fingerprint matches (our index)</h4>" + _table("fingerprint", [
            "reference", "offset in this recording (s)", "first match here (s)", "in the reference (s)", "score",
            "false-match probability", "speed", "pitch (semitones)"],
            [[m.get("reference"), m.get("offset_seconds"), m.get("candidate_start"), m.get("reference_start"),
              m.get("score"), _num(m.get("false_match_probability")), m.get("speed", 1.0),
              m.get("pitch_semitones", 0.0)] for m in fp]))
    ac = [m for m in ev.get("matches") or [] if "recordings" in m]
    if ac:
        rows = []
        for m in ac:
            recs = m.get("recordings") or [{}]
            for r in recs:
                mb = r.get("musicbrainz_recording_id")
                rows.append([m.get("acoustid"), _num(m.get("score")), r.get("title", ""),
                             ", ".join(map(str, r.get("artists") or [])),
                             _Raw(link(f"https://musicbrainz.org/recording/{mb}", str(mb))) if mb else ""])
        parts.append("<h4>AcoustID matches</h4>" + _table("acoustid", [
            "AcoustID", "score", "title", "artists", "MusicBrainz recording"], rows))
    acr = [m for m in ev.get("matches") or [] if "reference" not in m and "recordings" not in m]
    if acr:
        parts.append("<h4>ACRCloud matches</h4>" + _table("acrcloud", [
            "title", "artists", "album", "ISRC", "at (s of it)", "score"],
            [[m.get("title"), ", ".join(map(str, m.get("artists") or [])), m.get("album"), m.get("isrc"),
              _num((m.get("play_offset_ms") or 0) / 1000), m.get("score")] for m in acr]))
    if ev.get("copies") is not None or ev.get("authors"):
        rows = [[a.get("record"), a.get("author"), a.get("license"), a.get("uploaded") or ""]
                for a in ev.get("authors") or []]
        kinds = {c.get("record"): c for c in ev.get("copies") or []}
        for r in rows:
            c = kinds.get(r[0]) or {}
            r += ["kept" if r[0] == ev.get("kept") else c.get("kind", ""), c.get("shared_seconds", "")]
        parts.append("<h4>The same audio under other names</h4>" + _table("copies", [
            "record", "author", "license", "uploaded", "kind", "seconds shared"], rows))
    if ev.get("backend") or ev.get("method"):
        parts.append(f"<p class='muted'>checked by: {e(str(ev.get('method') or ev.get('backend')))}"
                     + (" (no identification service answered: a person listens)" if ev.get("backend") == "review"
                        else "") + "</p>")
    if ev.get("response"):
        parts.append(f"<p>service answer: {e(json.dumps(ev['response'], ensure_ascii=False))}</p>")
    if ev.get("error"):
        parts.append(f"<p class='err'>could not decide: {e(str(ev['error']))}</p>")
    return "".join(parts) or "<p class='muted'>no evidence recorded</p>"

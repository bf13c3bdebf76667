"""The review page: one self-contained HTML file (`OUT/review/index.html`) listing what waits
for a human, with its evidence and a short audio preview embedded in the page, and a form
that writes the decisions file (`source,id,decision,reviewer,note,decided_at`) the next run
applies."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Mapping

import numpy as np
import soundfile as sf

from ..atomic import atomic_write_text
from ..review.evidence import link

PREVIEW_SECONDS = 30.0
PREVIEW_SR = 22050


def preview_mp3(path: str, start: float = 0.0) -> bytes | None:
    """Up to 30 s of mono 22.05 kHz MP3 from `start`; None when the file cannot be read."""
    from ..audio import AudioError, audio_blocks

    first, want = int(start * PREVIEW_SR), int(PREVIEW_SECONDS * PREVIEW_SR)
    pieces, seen = [], 0
    try:
        for block in audio_blocks(path, [], PREVIEW_SR, 1):
            lo = max(0, first - seen)
            if lo < len(block):
                pieces.append(block[lo:])
            seen += len(block)
            if sum(len(p) for p in pieces) >= want:
                break
    except AudioError:
        return None
    mono = np.concatenate(pieces)[:want] if pieces else np.zeros(0, np.float32)
    if len(mono) == 0:
        return None
    buf = io.BytesIO()
    sf.write(buf, np.clip(mono, -1, 1), PREVIEW_SR, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()


def _evidence_html(ev: dict) -> str:
    from ..review.evidence import tables

    return tables(ev)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Copyright review: {n} waiting</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
.item {{ border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin: 1em 0; }}
table.ev {{ border-collapse: collapse; margin: .5em 0; }} .muted {{ color: #666; }} table.ev td, table.ev th {{ border: 1px solid #ddd; padding: 2px 6px; }}
.err {{ color: #a00; }} .key {{ color: #555; font-family: monospace; }}
</style></head><body>
<h1>Copyright review: {n} waiting</h1>
<p>Listen, read the evidence, choose <b>clear</b> (it may be released) or <b>reject</b> (it stays out), then
save the decisions file and name it in the config (<code>[copyright] review_decisions</code>); the next run applies it.</p>
<p>Reviewer: <input id="reviewer" placeholder="your name"></p>
{items}
<p><button onclick="save()">Save decisions file</button></p>
<script>
function csv(v) {{ v = String(v);
  if (/^[=+\\-@\t\r]/.test(v) || /^'[=+\\-@\t\r']/.test(v)) v = "'" + v;  // spreadsheet-safe (README)
  return /[",\\n\\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }}
function save() {{
  const who = document.getElementById('reviewer').value, now = new Date().toISOString();
  let out = 'source,id,decision,reviewer,note,decided_at\\n';
  document.querySelectorAll('.item').forEach(it => {{
    const d = it.querySelector('input[type=radio]:checked');
    if (d) out += [it.dataset.source, it.dataset.id, d.value, who, it.querySelector('.note').value, now].map(csv).join(',') + '\\n';
  }});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([out], {{type: 'text/csv'}}));
  a.download = 'review_decisions.csv'; a.click();
}}
</script></body></html>
"""


def write_review_page(path: Path, queue: list[dict], audio_paths: dict[tuple[str, str], str],
                      meanings: Mapping[str, str] | None = None) -> None:
    meanings = meanings or {}  # reason -> what it means (`curation.stages.REASONS`)
    e = html.escape
    items = []
    for q in queue:
        key = (q["source"], q["id"])
        ev = q.get("evidence", {})
        start = 0.0
        if ev.get("matches"):
            start = max(0.0, float(ev["matches"][0].get("candidate_start") or 0.0) - 2.0)
        audio = preview_mp3(audio_paths[key], start) if audio_paths.get(key) else None
        player = (f"<audio controls preload='none' src='data:audio/mpeg;base64,{base64.b64encode(audio).decode()}'>"
                  "</audio>" if audio else "<p class='err'>no audio preview</p>")
        name = f"{q['source']}-{q['id']}"
        items.append(
            f"<div class='item' data-source='{e(q['source'])}' data-id='{e(q['id'])}'>"
            f"<h3>{e(q['title']) or '(untitled)'} <span class='key'>{e(q['source'])} {e(q['id'])}</span></h3>"
            f"<p>by {e(q['author'])} &middot; {link(q['url'], new_tab=False)}</p>"
            f"<p>{e(q['reason'])}: {e(meanings.get(q['reason'], ''))}</p>{player}{_evidence_html(ev)}"
            f"<p><label><input type='radio' name='{e(name)}' value='clear'> clear</label> "
            f"<label><input type='radio' name='{e(name)}' value='reject'> reject</label> "
            f"note: <input class='note' size='50'></p></div>")
    atomic_write_text(path, PAGE.format(n=len(queue), items="\n".join(items)))

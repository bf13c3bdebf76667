"""Review: the reviewers' decisions (the ledger, `copyright/review.py`) and the takedown list applied
over every partition, and the queue of what still waits for a reviewer."""
from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from .. import record_table as rt
from ..config import Config
from ..records import Record
from ..stage import FanIn, StageReport, release_memory


def load_decisions(cfg: Config, rep: StageReport) -> dict:
    """The persisted and new review decisions, merged, and the ledger written back."""
    from ..copyright.review import merged_decisions, write_decisions

    from ..copyright.review import Decision
    from . import ledger as web

    ledger = cfg.output_dir / "review" / "decisions.csv"
    decisions, warnings = merged_decisions(ledger, cfg.copyright.review_decisions)
    rep.notes += warnings
    # the review workspace's decisions (`curate review serve`): the latest clear or reject of
    # each item, where it is later than what the decisions files say
    made = web.latest(web.read(web.ledger_path(cfg.output_dir)), decisive=True)
    for key, r in made.items():
        old = decisions.get(key)
        if old is None or old.decided_at < r["decided_at"]:
            decisions[key] = Decision(r["source"], r["id"], r["decision"], r["reviewer"], r["note"],
                                      r["decided_at"], r["evidence_digest"])
    if made:
        rep.counts["workspace_decisions"] = len(made)
    if decisions or ledger.exists():
        write_decisions(ledger, decisions)
    return decisions


def apply_decisions(records: list[Record], decisions: dict, rep: StageReport) -> list[dict]:
    """Apply the decisions to the records; return the queue of those that still wait."""
    from .ledger import evidence_digest

    queue = []
    for r in records:
        d = decisions.get((r.source, r.id))
        r.evidence.pop("review_stale", None)
        if d is not None and d.evidence_digest and r.status in ("pending", "review"):
            now = evidence_digest(shown_evidence(r))
            if now != d.evidence_digest:  # decided on other evidence: asked again
                r.evidence["review_stale"] = {
                    "decision": d.decision, "reviewer": d.reviewer, "decided_at": d.decided_at,
                    "why": f"the evidence changed since {d.reviewer or 'a reviewer'} decided {d.decision} "
                           f"(digest {d.evidence_digest}, now {now})"}
                rep.add("stale_decision")
                d = None
        if d is not None:
            r.evidence["review"] = {"decision": d.decision, "reviewer": d.reviewer, "note": d.note,
                                    "decided_at": d.decided_at}
            if d.decision == "reject" and r.status in ("pending", "review"):
                r.status, r.reason = "excluded", "copyright_rejected"
                rep.add("rejected")
            elif d.decision == "clear" and r.status == "review":
                r.evidence["review"]["cleared_reason"] = r.reason
                r.status, r.reason = "pending", ""
                rep.add("cleared")
        dup = r.evidence.get("same_audio") or {}
        if r.status == "pending" and dup.get("other_authors") and (d is None or d.decision != "clear"):
            # the same audio under other authors' names: whose license is it to give?
            r.status, r.reason = "review", "reupload_other_author"
            rep.add("reupload_held")
        if r.status == "review":
            queue.append({"source": r.source, "id": r.id, "title": r.title, "author": r.author, "url": r.url,
                          "reason": r.reason, "evidence": shown_evidence(r), "audio_path": r.audio_path,
                          "license": r.license, "music": r.evidence.get("music") or {},
                          "seconds": (r.evidence.get("audio") or {}).get("seconds"),
                          "stale": (r.evidence.get("review_stale") or {}).get("why", "")})
    return queue


def shown_evidence(r: Record) -> dict:
    """The evidence a reviewer decides on: the other copies for a re-upload, else the
    copyright evidence."""
    dup = r.evidence.get("same_audio") or {}
    if r.reason == "reupload_other_author" or (r.status == "pending" and dup.get("other_authors")):
        return dup
    return r.evidence.get("copyright", {}) or {}


def review_table(table, decisions: dict, rep: StageReport):
    """Decisions applied to the rows they name and to the rows waiting for review; what is
    still pending after that is included. Returns the table and the review queue."""
    touch = pc.or_(rt.rows_named(table, decisions), pc.equal(table.column("status"), "review"))
    if "ev_same_audio" in table.column_names:
        held = pc.fill_null(pc.match_substring(table.column("ev_same_audio"), '"other_authors": true'), False)
        touch = pc.or_(touch, held)
    recs = rt.to_records(table.filter(touch))
    queue = apply_decisions(recs, decisions, rep)
    if recs:
        table = rt.replace_rows(table, touch, rt.from_records(recs))
    pend = rt.pending(table)
    table = rt.where(pend, "included", table, "status")
    return table, queue


def decisions_elsewhere(decisions: dict, keys: set, rep: StageReport) -> None:
    elsewhere = sorted(k for k in decisions if k not in keys)
    if elsewhere:
        # kept in the ledger for when those records come back; said, not dropped
        rep.notes.append(f"{len(elsewhere)} decision(s) for records not in this run are kept: "
                         + ", ".join(f"{s} {i}" for s, i in elsewhere[:10]))


def review_parts(parts: list[str], cfg: Config, out_dir: Path) -> tuple[list[str], list[dict], StageReport]:
    """Review decisions over every partition (a fan-in: the ledger and queue are global);
    what is still pending after it is included."""
    from ..stage import read_part, write_part

    from ..release import takedowns

    rep = StageReport("review")
    decisions = load_decisions(cfg, rep)
    down = takedowns.load(cfg.output_dir, cfg.release.takedowns)
    queue: list[dict] = []
    out = []
    keys: set = set()
    for i, p in enumerate(parts):
        t = read_part(p)
        if decisions or down:
            keys.update(zip(t.column("source").to_pylist(), t.column("id").to_pylist()))
        t, n = takedowns.apply(t, down)
        if n:
            rep.add("takedown", n)
        t, q = review_table(t, decisions, rep)
        queue += q
        dst = out_dir / f"part-{i:05d}.parquet"
        write_part(dst, t)
        out.append(str(dst))
        del t
        release_memory()
    rep.counts["waiting"] = len(queue)
    decisions_elsewhere(decisions, keys, rep)
    absent = sorted(k for k in down if k not in keys)
    if absent:
        rep.notes.append(f"{len(absent)} takedown(s) for records not in this run stay in force: "
                         + ", ".join(f"{s} {i}" for s, i in absent[:10]))
    return out, queue, rep


def explain(row: dict, ev: dict) -> list[str]:
    """The review decision and a takedown, for `curate explain`."""
    out: list[str] = []
    rv = ev.get("review")
    if rv:
        out.append(f"  review: {rv.get('decision')} by {rv.get('reviewer') or '?'}"
                   + (f" at {rv['decided_at']}" if rv.get("decided_at") else "")
                   + (f" ({rv['note']})" if rv.get("note") else ""))
    st = ev.get("review_stale")
    if st:
        out.append(f"  review: back in the queue: {st.get('why')}")
    if row.get("status") == "review":
        out.append("  review: waiting for a reviewer: `curate review serve CONFIG` (the workspace), or "
                   "OUT/review/index.html and a decisions file ([copyright] review_decisions)")
    td = ev.get("takedown")
    if td:
        out.append(f"  takedown: requested {td.get('requested_at')} ({td.get('reason') or 'no reason given'}); "
                   f"before it: {td.get('status_before')}" + (f" ({td['reason_before']})" if td.get("reason_before") else ""))
    return out


#: The reasons this step may set, and what each means.
REVIEW_REASONS = {
    "copyright_rejected": "a reviewer rejected the recording",
    "reupload_other_author": "the same audio is also on the sources under another author's name: waits for a reviewer to say whose it is",
    "takedown": "a takedown was requested (the release's takedown list): out of this and every later release",
}

REVIEW = FanIn(
    name="review",
    reads=("source", "id", "title", "author", "url", "license", "audio_path", "status", "reason", "ev_copyright",
           "ev_same_audio", "ev_music", "ev_audio"),
    writes=("status", "reason", "ev_review", "ev_takedown", "ev_review_stale"),
    reasons=REVIEW_REASONS,
    run=review_parts,
    explain=explain,
)

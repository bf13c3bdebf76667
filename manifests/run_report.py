"""What one run did, for people: the tallies a run keeps while it writes the manifest, what
changed since the previous run's manifest, and the Markdown summary and reasons table that a
scheduled run publishes as Prefect artifacts (flows/artifacts.py)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curation import storage
from curation.stages import REASONS

DECISION_COLUMNS = ["source", "id", "status", "reason"]


class Tally:
    """Counts over manifest tables as they are written: records by (source, status, reason),
    the included records' license mix by source, and music seconds."""

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str, str], int] = {}
        self.licenses: dict[str, dict[str, int]] = {}
        self.music = {"records": 0, "music_records": 0, "music_seconds": 0.0}

    def add(self, m: pa.Table) -> None:
        t = pa.table({"source": m.column("source"), "status": m.column("status"),
                      "reason": pc.fill_null(m.column("reason"), "")})
        for row in t.group_by(["source", "status", "reason"]).aggregate([([], "count_all")]).to_pylist():
            k = (row["source"], row["status"], row["reason"])
            self.decisions[k] = self.decisions.get(k, 0) + row["count_all"]
        inc = m.filter(pc.equal(m.column("status"), "included"))
        lic = pa.table({"source": inc.column("source"), "license": pc.fill_null(inc.column("license"), "")})
        for row in lic.group_by(["source", "license"]).aggregate([([], "count_all")]).to_pylist():
            acc = self.licenses.setdefault(row["source"], {})
            acc[row["license"]] = acc.get(row["license"], 0) + row["count_all"]
        self.music["records"] += pc.sum(pc.is_valid(m.column("is_music"))).as_py() or 0
        self.music["music_records"] += pc.sum(pc.fill_null(m.column("is_music"), False)).as_py() or 0
        self.music["music_seconds"] += pc.sum(m.column("music_seconds")).as_py() or 0.0

    def _by(self, i: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, n in self.decisions.items():
            if k[i]:
                out[k[i]] = out.get(k[i], 0) + n
        return dict(sorted(out.items()))

    @property
    def status(self) -> dict[str, int]:
        return self._by(1)

    @property
    def reasons(self) -> dict[str, int]:
        return self._by(2)

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": self.reasons,
                "decisions": [{"source": s, "status": st, "reason": r, "records": n}
                              for (s, st, r), n in sorted(self.decisions.items())],
                "licenses": {s: dict(sorted(v.items())) for s, v in sorted(self.licenses.items())},
                "music": {**self.music, "music_seconds": round(self.music["music_seconds"], 3)}}


def previous_decisions(manifest) -> pa.Table | None:
    """The decision columns of the manifest a run is about to replace (None on a first run)."""
    manifest = storage.as_path(manifest)
    if not manifest.is_file():
        return None
    try:
        return storage.read_parquet(manifest, columns=DECISION_COLUMNS)
    except Exception:  # an unreadable old manifest: report no changes rather than fail the run
        return None


def changes(before: pa.Table | None, after: pa.Table) -> dict:
    """Records that entered, left or changed decision between two manifests' decision columns:
    counts, and the transitions `old status/reason -> new status/reason` with their counts."""
    if before is None:
        return {"first_run": True, "added": after.num_rows, "removed": 0, "changed": 0, "transitions": {}}
    def keyed(t, tag):
        return pa.table({"source": t.column("source"), "id": t.column("id"),
                         f"d_{tag}": pc.binary_join_element_wise(t.column("status"),
                                                                 pc.fill_null(t.column("reason"), ""), "/")})
    j = keyed(before, "old").join(keyed(after, "new"), ["source", "id"], join_type="full outer")
    old, new = j.column("d_old"), j.column("d_new")
    added = pc.sum(pc.and_(pc.is_null(old), pc.is_valid(new))).as_py() or 0
    removed = pc.sum(pc.and_(pc.is_valid(old), pc.is_null(new))).as_py() or 0
    both = pc.and_(pc.is_valid(old), pc.is_valid(new))
    diff = pc.and_(both, pc.not_equal(pc.fill_null(old, ""), pc.fill_null(new, "")))
    moved = j.filter(diff)
    trans = pc.binary_join_element_wise(moved.column("d_old"), moved.column("d_new"), " -> ")
    transitions = {i["values"]: i["counts"] for i in pc.value_counts(trans).to_pylist()}
    return {"first_run": False, "added": added, "removed": removed, "changed": moved.num_rows,
            "transitions": dict(sorted(transitions.items(), key=lambda kv: (-kv[1], kv[0])))}


HISTORY_SCHEMA = pa.schema([("run_id", pa.string()), ("run_at", pa.timestamp("s", tz="UTC")),
                            ("source", pa.string()), ("id", pa.string()), ("status", pa.string()),
                            ("reason", pa.string()), ("previous_status", pa.string()),
                            ("previous_reason", pa.string())])


def history_rows(before: pa.Table | None, after: pa.Table, run_id: str, run_at, full: bool = False) -> pa.Table:
    """The decisions a run made that differ from the manifest it replaces: every record on a
    first run (or with `full`: the history's first file over an older output folder), then new
    records and records whose status or reason changed (with the previous decision). A
    record's decision after any run is its latest row up to that run; a record gone from the
    input (which no record should be) gets status `absent`."""
    a = after.select(DECISION_COLUMNS)
    if before is None:
        j = a.append_column("previous_status", pa.nulls(a.num_rows, pa.string())) \
             .append_column("previous_reason", pa.nulls(a.num_rows, pa.string()))
    else:
        b = before.select(DECISION_COLUMNS).rename_columns(["source", "id", "previous_status", "previous_reason"])
        j = a.join(b, ["source", "id"], join_type="full outer")
        j = j.set_column(j.column_names.index("status"), "status", pc.fill_null(j.column("status"), "absent"))
        same = pc.and_(pc.equal(pc.fill_null(j.column("status"), ""), pc.fill_null(j.column("previous_status"), "")),
                       pc.equal(pc.fill_null(j.column("reason"), ""), pc.fill_null(j.column("previous_reason"), "")))
        if not full:
            j = j.filter(pc.invert(pc.fill_null(same, False)))
    n = j.num_rows
    return pa.table({"run_id": pa.array([run_id] * n, pa.string()),
                     "run_at": pa.array([run_at] * n, pa.timestamp("s", tz="UTC")),
                     "source": j.column("source"), "id": j.column("id"), "status": j.column("status"),
                     "reason": pc.fill_null(j.column("reason"), ""), "previous_status": j.column("previous_status"),
                     "previous_reason": j.column("previous_reason")}, schema=HISTORY_SCHEMA)


def _status_label(decision: str) -> str:
    status, _, reason = decision.partition("/")
    return f"{status} ({reason})" if reason else status


def summary_markdown(summary: dict) -> str:
    """The run summary (`run_summary.json`'s content) as Markdown for people."""
    t = summary.get("tally", {})
    lines = ["# Curation run", ""]
    if summary.get("music_model", {}).get("random_init"):
        lines += ["> **The music model is RANDOMLY INITIALISED: its music decisions are not real.**", ""]
    lines += [f"**{summary.get('records', 0):,} records**: "
              + ", ".join(f"{v:,} {k}" for k, v in sorted(summary.get("status", {}).items())), ""]
    lines += ["## Records by stage", "", "| stage | records | seconds | outcome |", "| --- | ---: | ---: | --- |"]
    for s in summary.get("stages", []):
        outcome = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.get("counts", {}).items()))
        lines.append(f"| {s['name']} | {s.get('records') or 0:,} | {s.get('seconds') or 0:.1f} | {outcome} |")
    lines += ["", "## Reasons", "", "| reason | records | meaning |", "| --- | ---: | --- |"]
    for reason, n in sorted(summary.get("reasons", {}).items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| `{reason}` | {n:,} | {REASONS.get(reason, '')} |")
    lines += ["", "## License mix (included records)", "", "| source | license | records |", "| --- | --- | ---: |"]
    for source, mix in t.get("licenses", {}).items():
        for lic, n in sorted(mix.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"| {source} | {lic} | {n:,} |")
    music = t.get("music", {})
    lines += ["", "## Music", "",
              f"{music.get('records', 0):,} recordings scored; {music.get('music_records', 0):,} music; "
              f"{music.get('music_seconds', 0.0) / 3600:,.2f} hours of music frames "
              f"({music.get('music_seconds', 0.0):,.1f} s).", ""]
    lines += ["## Review backlog", "", f"{summary.get('review_waiting', 0):,} records wait for a reviewer "
              "(`OUT/review/index.html`).", ""]
    ch = summary.get("changes") or {}
    lines += ["## Since the last run", ""]
    if ch.get("first_run", True):
        lines.append("First run over this output: every record is new.")
    else:
        lines.append(f"{ch.get('added', 0):,} new, {ch.get('removed', 0):,} gone, "
                     f"{ch.get('changed', 0):,} with another decision.")
        if ch.get("transitions"):
            lines += ["", "| from | to | records |", "| --- | --- | ---: |"]
            for tr, n in ch["transitions"].items():
                a, b = tr.split(" -> ")
                lines.append(f"| {_status_label(a)} | {_status_label(b)} | {n:,} |")
    crawl = summary.get("crawl")
    if crawl:
        lines += ["", "## Freesound API", "",
                  f"{crawl.get('requests', 0):,} requests this run ({crawl.get('requests_today', 0):,} of the "
                  f"budget of {crawl.get('daily_budget', 0):,} per 24 hours used in the last 24 hours); "
                  f"{crawl.get('sounds', 0):,} new sounds in {crawl.get('pages', 0):,} page(s)"
                  + (", caught up." if crawl.get("caught_up") else ".")
                  + (f" Stopped: {crawl['stopped']}." if crawl.get("stopped") else "")]
        lb = crawl.get("lookback") or {}
        if lb:
            lines += ["", f"Lookback {lb.get('from')} to {lb.get('to')}: {lb.get('requests', 0):,} request(s), "
                          f"{lb.get('seen', 0):,} sounds seen, {lb.get('found', 0):,} found that an earlier crawl "
                          f"had passed before they were approved"
                          + ("." if lb.get("complete") else " (not finished: the next run resumes it).")]
        if crawl.get("null_results"):
            lines += ["", f"{crawl['null_results']:,} search result(s) were null (sounds the API could not "
                          f"serialise); the lookback asks for them again."]
    return "\n".join(lines) + "\n"


def reasons_rows(summary: dict) -> list[dict]:
    """One row per (source, status, reason) with its records and the reason's meaning: the
    table artifact, in a fixed order."""
    return [{**d, "meaning": REASONS.get(d["reason"], "")} for d in summary.get("tally", {}).get("decisions", [])]

"""The run's report: tallies over manifest rows, changes against the previous manifest, and
the Markdown and table a scheduled run publishes."""
import pyarrow as pa

from curation.stages import REASONS
from manifests.run_report import Tally, changes, reasons_rows, summary_markdown
from manifests.schema import SCHEMA


def _manifest(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    return pa.table(cols, schema=SCHEMA)


def _decisions(rows):
    return pa.table({k: [r[i] for r in rows] for i, k in enumerate(["source", "id", "status", "reason"])})


def test_tally_counts_decisions_licenses_and_music():
    t = Tally()
    t.add(_manifest([
        {"source": "freesound", "id": "1", "status": "included", "reason": "", "license": "cc0",
         "is_music": False, "music_seconds": 0.0},
        {"source": "freesound", "id": "2", "status": "excluded", "reason": "genai_opt_out"},
        {"source": "fma", "id": "3", "status": "included", "reason": "", "license": "cc-by-4.0",
         "is_music": True, "music_seconds": 95.5},
    ]))
    t.add(_manifest([{"source": "freesound", "id": "4", "status": "included", "reason": "", "license": "cc0",
                      "is_music": True, "music_seconds": 31.0}]))
    d = t.to_dict()
    assert d["status"] == {"excluded": 1, "included": 3} and d["reasons"] == {"genai_opt_out": 1}
    assert d["licenses"] == {"fma": {"cc-by-4.0": 1}, "freesound": {"cc0": 2}}
    assert d["music"] == {"records": 3, "music_records": 2, "music_seconds": 126.5}
    assert {"source": "freesound", "status": "excluded", "reason": "genai_opt_out", "records": 1} in d["decisions"]


def test_changes_between_two_manifests():
    before = _decisions([("freesound", "1", "included", ""), ("freesound", "2", "included", ""),
                         ("freesound", "3", "review", "copyright_audio_review")])
    after = _decisions([("freesound", "1", "included", ""), ("freesound", "2", "excluded", "license_changed"),
                        ("freesound", "4", "included", "")])
    ch = changes(before, after)
    assert (ch["added"], ch["removed"], ch["changed"]) == (1, 1, 1) and not ch["first_run"]
    assert ch["transitions"] == {"included/ -> excluded/license_changed": 1}
    assert changes(None, after) == {"first_run": True, "added": 3, "removed": 0, "changed": 0, "transitions": {}}


def test_markdown_and_table_carry_the_numbers():
    t = Tally()
    t.add(_manifest([{"source": "freesound", "id": "1", "status": "excluded", "reason": "source_deleted"}]))
    d = t.to_dict()
    summary = {"records": 1, "status": d["status"], "reasons": d["reasons"], "review_waiting": 7,
               "music_model": {"random_init": True}, "stages": [{"name": "ingest", "counts": {"freesound": 1},
                                                                   "seconds": 0.5, "records": 1}],
               "tally": d, "changes": {"first_run": False, "added": 0, "removed": 0, "changed": 1,
                                        "transitions": {"included/ -> excluded/source_deleted": 1}},
               "crawl": {"requests": 12, "requests_today": 40, "daily_budget": 2000, "sounds": 3, "pages": 2,
                         "caught_up": True, "stopped": "", "null_results": 2,
                         "lookback": {"from": "2024-01-01T00:00:00Z", "to": "2024-01-31T00:00:00Z", "requests": 3,
                                      "seen": 300, "found": 1, "complete": True}}}
    md = summary_markdown(summary)
    assert "RANDOMLY INITIALISED" in md and "| `source_deleted` | 1 |" in md
    assert "7 records wait" in md and "| included | excluded (source_deleted) | 1 |" in md
    assert "12 requests this run (40 of the budget of 2,000 per 24 hours used in the last 24 hours)" in md
    assert "3 new sounds in 2 page(s), caught up" in md
    assert "Lookback 2024-01-01T00:00:00Z to 2024-01-31T00:00:00Z: 3 request(s), 300 sounds seen, 1 found" in md
    assert "2 search result(s) were null" in md
    assert reasons_rows(summary) == [{"source": "freesound", "status": "excluded", "reason": "source_deleted",
                                      "records": 1, "meaning": REASONS["source_deleted"]}]

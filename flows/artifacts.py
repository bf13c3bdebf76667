"""The run's Prefect artifacts: a Markdown summary and a table of reasons, under stable keys
so that runs of one deployment line up in the UI (Artifacts, by key) and through the API."""
from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from manifests.run_report import reasons_rows, summary_markdown

SUMMARY_KEY = "curation-run-summary"
REASONS_KEY = "curation-reasons"
REPORT_KEY = "curation-report"
REVIEW_KEY = "curation-review"


def review_markdown(review: dict) -> str:
    """The review backlog for teams that live in the Prefect UI: how many wait, why, and where
    to work through them."""
    waiting = int(review.get("waiting") or 0)
    lines = [f"**{waiting:,} waiting for review**" + (" (nothing waits)" if not waiting else "")]
    if review.get("by_reason"):
        lines += ["", "| reason | waiting |", "| --- | ---: |"]
        lines += [f"| `{k}` | {v:,} |" for k, v in sorted(review["by_reason"].items())]
    if review.get("decided_in_workspace"):
        lines += ["", f"{review['decided_in_workspace']:,} decision(s) made in the workspace so far."]
    lines += ["", f"Work through them: `curate review serve {review.get('config', 'CONFIG')}` (the workspace; "
              "decisions are saved at once and applied by the next run), or offline with "
              f"`{review.get('page', 'OUT/review/index.html')}` and a decisions file."]
    return "\n".join(lines)


def publish(summary: dict, key_suffix: str = "") -> dict:
    """Create both artifacts in the current flow run; returns their ids. `key_suffix` (lower
    case letters, digits and dashes) keeps the keys of different deployments apart."""
    suffix = f"-{key_suffix}" if key_suffix else ""
    md = create_markdown_artifact(key=SUMMARY_KEY + suffix, markdown=summary_markdown(summary),
                                  description="Records by stage and reason, license mix, music, review "
                                              "backlog, changes since the last run, API requests")
    table = create_table_artifact(key=REASONS_KEY + suffix, table=reasons_rows(summary),
                                  description="Records by source, status and reason")
    ids = {"summary": str(md), "reasons": str(table)}
    if summary.get("review") is not None:
        ids["review"] = str(create_markdown_artifact(key=REVIEW_KEY + suffix, markdown=review_markdown(summary["review"]),
                                                     description="The review backlog and where to work through it"))
    if summary.get("report"):
        report = summary["report"]
        link = Path(report).resolve().as_uri() if "://" not in report else report
        ids["report"] = str(create_link_artifact(key=REPORT_KEY + suffix, link=link, link_text="audit report",
                                                 description="The run's audit report (OUT/report/index.html): "
                                                             "funnel, licenses, music, review backlog, evidence, "
                                                             "release diff"))
    return ids

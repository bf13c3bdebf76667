"""The run's Prefect artifacts: a Markdown summary and a table of reasons, under stable keys
so that runs of one deployment line up in the UI (Artifacts, by key) and through the API."""
from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from manifests.run_report import reasons_rows, summary_markdown

SUMMARY_KEY = "curation-run-summary"
REASONS_KEY = "curation-reasons"


def publish(summary: dict, key_suffix: str = "") -> dict:
    """Create both artifacts in the current flow run; returns their ids. `key_suffix` (lower
    case letters, digits and dashes) keeps the keys of different deployments apart."""
    suffix = f"-{key_suffix}" if key_suffix else ""
    md = create_markdown_artifact(key=SUMMARY_KEY + suffix, markdown=summary_markdown(summary),
                                  description="Records by stage and reason, license mix, music, review "
                                              "backlog, changes since the last run, API requests")
    table = create_table_artifact(key=REASONS_KEY + suffix, table=reasons_rows(summary),
                                  description="Records by source, status and reason")
    return {"summary": str(md), "reasons": str(table)}

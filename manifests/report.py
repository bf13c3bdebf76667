"""The audit report: OUT/report/index.html, one self-contained page (inline SVG plots drawn
with matplotlib, no scripts, no network) whose every number comes from the same DuckDB
queries as `curate audit` (manifests/audit.py). Each table carries `data-query` with the
query's name and each cell `data-col`, so a test (or a person) can check the page against
the queries."""
from __future__ import annotations

import html
import io
import re
from datetime import datetime, timezone
from pathlib import Path

from curation.atomic import atomic_write_text

from . import audit

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0;display:block;overflow-x:auto;max-width:100%} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} figure.plot{margin:.8rem 0} figure.plot svg{max-width:100%;height:auto}
.warn{background:#fff3cd;border:1px solid #e0c46c;padding:.6rem 1rem} .muted{color:#666;font-size:.85rem}
"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inline
    return svg


def _figure(name: str, fig, caption: str) -> str:
    return (f'<figure class="plot" id="plot-{name}" data-plot="{name}">{_svg(fig)}'
            f"<figcaption class=\"muted\">{html.escape(caption)}</figcaption></figure>")


def _table(name: str, cols: list[str], rows: list[tuple], limit: int | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in shown:
        cells = []
        for c, v in zip(cols, r):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = "" if v is None else str(v)
            cells.append(f'<td data-col="{html.escape(c)}"{" class=n" if num else ""}>{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="muted">{len(rows) - len(shown)} more row(s): run the query with curate audit.</p>' \
        if len(rows) > len(shown) else ""
    return (f'<table data-query="{name}" data-rows="{len(shown)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>{more}")


def _empty_plot(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.4))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555")
    ax.set_axis_off()
    return fig


#: A bar of a category with any records is drawn at least this share of the axis wide: one
#: record beside 500,000 is still a mark (its count is written beside it).
MIN_BAR = 0.006


def _mark(artist, label: str) -> None:
    """Names the artist that draws a category (`mark:LABEL` in the SVG): the report's test
    checks that every category a plot names has a visible mark."""
    artist.set_gid(f"mark:{label}")


def _barh(labels, values, colors=None, xlabel="records", title=""):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(labels), 2) + 1))
    y = list(range(len(labels)))
    top = max([v for v in values if v] or [1])
    shown = [max(v, top * MIN_BAR) if v else 0 for v in values]
    bars = ax.barh(y, shown, color=colors or "#4c78a8")
    for bar, label, v in zip(bars, labels, values):
        if v:
            _mark(bar, label)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    for i, v in enumerate(values):
        ax.text(shown[i], i, f" {v:,}", va="center", fontsize=8)
    return fig


def _hist(groups: dict[str, list[float]], xlabel: str, bins: int, line: tuple[float, str] | None = None):
    """A histogram per group, side by side on bins shared by all (a group of one value is a bar
    as wide as any), on a log scale where one bin holds more than 20 times another (one record
    beside thousands is still seen), each group's count in its legend entry; with an optional
    vertical line."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3))
    every = [v for vs in groups.values() for v in vs]
    lo, hi = (min(every), max(every)) if every else (0.0, 1.0)
    if line is not None:
        lo, hi = min(lo, line[0]), max(hi, line[0])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    names = [f"{k} ({len(v):,})" for k, v in groups.items()]
    counts = [np.histogram(v, bins=edges)[0] for v in groups.values()]
    filled = np.concatenate(counts)
    filled = filled[filled > 0]
    log = len(filled) > 0 and filled.max() > 20 * filled.min()
    _, _, patches = ax.hist(list(groups.values()), bins=edges, label=names, bottom=0.5 if log else 0)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
    if len(groups) == 1:
        patches = [patches]
    for name, bars in zip(names, patches):
        for bar in bars:
            if bar.get_height() > 0:
                _mark(bar, name)
    if line is not None:
        _mark(ax.axvline(line[0], color="#d62728", linestyle="--", label=line[1]), line[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def build(cfg, now: datetime | None = None) -> Path:
    """Write OUT/report/index.html; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matplotlib.rcParams["svg.hashsalt"] = "curation-report"  # stable element ids
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: findable, and lighter than glyph paths
    con = audit.connect(cfg.output_dir)
    now = now or datetime.now(timezone.utc)
    parts = [f"<h1>Curation audit: {html.escape(str(cfg.output_dir))}</h1>",
             f'<p class="muted">Made {now:%Y-%m-%d %H:%M} UTC. Every figure here is a query of '
             "<code>curate audit</code>; the query's name is given with each.</p>"]
    total = con.execute("SELECT count(*) FROM records").fetchone()[0]
    random = con.execute("SELECT count(*) FROM records WHERE music_checkpoint_random").fetchone()[0]
    if random:
        parts.append('<p class="warn"><b>The music model was RANDOMLY INITIALISED for '
                     f"{random:,} record(s)</b>: their music decisions are not real.</p>")

    # the funnel
    cols, rows = audit.run_query(con, "funnel")
    labels = ["input"] + [f"after {r[0]}" for r in rows]
    values = [total] + [r[2] for r in rows]
    parts += ["<h2>Funnel: records by stage <small class=muted>(query: funnel)</small></h2>",
              _figure("funnel", _barh(labels, values, title=f"{total:,} input records"),
                      "Records still in after each stage; the last bar is the release."),
              _table("funnel", cols, rows)]
    cols, rows = audit.run_query(con, "reasons")
    parts += ["<h3>By reason <small class=muted>(query: reasons)</small></h3>", _table("reasons", cols, rows)]

    # license mix by source (included records of the manifest; per release below)
    lic_cols, lic = audit.run_query(con, "included")
    parts.append("<h2>License mix by source <small class=muted>(queries: included, licenses)</small></h2>")
    versions = audit.latest_versions(con)
    if lic:
        sources = sorted({r[0] for r in lic})
        classes = sorted({r[1] for r in lic})
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(sources) + 1.2))
        left = np.zeros(len(sources))
        top = max(sum(r[2] for r in lic if r[0] == s) for s in sources)
        for cls in classes:
            vals = np.array([sum(r[2] for r in lic if r[0] == s and r[1] == cls) for s in sources], float)
            shown = np.where(vals > 0, np.maximum(vals, top * MIN_BAR), 0)
            bars = ax.barh(sources, shown, left=left, label=f"{cls} ({int(vals.sum()):,})")
            for bar, v in zip(bars, vals):
                if v:
                    _mark(bar, f"{cls} ({int(vals.sum()):,})")
            left += shown
        ax.set_xlabel("included records")
        # beside the bars, never over them
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        parts.append(_figure("licenses", fig, "Included records by source and license class."))
    else:
        parts.append(_figure("licenses", _empty_plot("no included records"), "No included records."))
    parts.append(_table("included", lic_cols, lic))
    if versions:
        cols, rows = audit.run_query(con, "licenses", version=versions[-1])
        parts += [f"<p>Release {html.escape(versions[-1])}:</p>", _table("licenses", cols, rows)]

    # music seconds
    ms = [r[0] for r in con.execute("SELECT music_seconds FROM records WHERE music_seconds IS NOT NULL "
                                    "AND coalesce(music_rule, 'full') IN ('full', 'early')").fetchall()]
    threshold = float(cfg.music.min_music_seconds)
    mcols, mrows = audit.run_query(con, "music")
    n_music = sum(r[mcols.index("music")] for r in mrows)
    n_early = sum(r[mcols.index("records")] for r in mrows if r[mcols.index("music_rule")] == "early")
    parts.append("<h2>Music seconds <small class=muted>(query: music)</small></h2>")
    if ms:
        fig = _hist({"recordings": ms}, "seconds of frames with music probability >= threshold",
                    bins=min(40, max(5, len(ms))), line=(threshold, f"min_music_seconds = {threshold:g}"))
        parts.append(_figure("music", fig, f"{len(ms):,} recordings scored, {n_music:,} music"
                             + (f"; {n_early:,} stopped early, their music seconds a lower bound." if n_early else ".")))
    else:
        parts.append(_figure("music", _empty_plot("no recording was scored"), "No recording was scored."))
    parts.append(_table("music", mcols, mrows))

    # what the samples say: loudness and bandwidth, with the thresholds
    qcols, qrows = audit.run_query(con, "quality")
    parts.append("<h2>Audio quality <small class=muted>(query: quality)</small></h2>")
    lufs = [r[0] for r in con.execute("SELECT loudness_lufs FROM records WHERE loudness_lufs IS NOT NULL").fetchall()]
    bws = [r[0] for r in con.execute("SELECT bandwidth_share FROM records WHERE bandwidth_share IS NOT NULL").fetchall()]
    if lufs or bws:
        if lufs:
            parts.append(_figure("loudness", _hist({"recordings": lufs}, "integrated loudness (LUFS, EBU R128)",
                                                   bins=min(40, max(5, len(lufs)))),
                                 f"{len(lufs):,} recordings with a loudness (silence has none)."))
        if bws:
            t = float(cfg.quality.min_bandwidth_share)
            parts.append(_figure("bandwidth", _hist({"recordings": bws}, "content bandwidth / the file's Nyquist frequency",
                                                    bins=min(40, max(5, len(bws))),
                                                    line=(t, f"min_bandwidth_share = {t:g} ({cfg.quality.low_bandwidth})")),
                                 f"{len(bws):,} recordings; below the line: audio_low_bandwidth."))
    else:
        parts.append(_figure("loudness", _empty_plot("no recording was measured"), "No recording was measured."))
    parts.append(_table("quality", qcols, qrows))

    # duplicates: how large the groups are, and what kinds of copies
    dcols, drows = audit.run_query(con, "duplicates")
    parts.append("<h2>Duplicates <small class=muted>(query: duplicates)</small></h2>")
    if drows:
        sizes = [r[dcols.index("records")] for r in drows]
        top = max(sizes)
        labels = [f"{k} recordings" for k in range(2, min(top, 6) + 1)] + ([">= 7 recordings"] if top > 6 else [])
        counts = [sum(1 for x in sizes if x == k) for k in range(2, min(top, 6) + 1)] + \
                 ([sum(1 for x in sizes if x > 6)] if top > 6 else [])
        parts.append(_figure("duplicates", _barh(labels, counts, colors="#b279a2", xlabel="groups"),
                             f"{len(drows):,} group(s) of recordings that hold the same audio, by size."))
        kinds = con.execute("SELECT duplicate_kind, count(*) FROM records WHERE reason = 'duplicate' "
                            "GROUP BY ALL ORDER BY duplicate_kind").fetchall()
        if kinds:
            parts.append(_figure("duplicate-kinds", _barh([k or "?" for k, _ in kinds], [n for _, n in kinds],
                                                          colors="#9d755d", xlabel="copies left out"),
                                 "Copies left out, by kind (exact, near, excerpt, derived)."))
    else:
        parts.append(_figure("duplicates", _empty_plot("no recording holds another's audio"), "No duplicates."))
    parts.append(_table("duplicates", dcols, drows, limit=100))

    # review backlog and its age
    cols, rows = audit.run_query(con, "backlog")
    parts.append("<h2>Review backlog <small class=muted>(query: backlog)</small></h2>")
    if rows:
        ages = [r[cols.index("days_waiting")] for r in rows]
        buckets = [("< 1 day", lambda d: d is None or d < 1), ("1-7 days", lambda d: d is not None and 1 <= d < 7),
                   ("7-30 days", lambda d: d is not None and 7 <= d < 30), (">= 30 days", lambda d: d is not None and d >= 30)]
        counts = [sum(1 for a in ages if f(a)) for _, f in buckets]
        parts.append(_figure("backlog", _barh([b for b, _ in buckets], counts, colors="#f58518"),
                             f"{len(rows):,} record(s) waiting, by days waited."))
    else:
        parts.append(_figure("backlog", _empty_plot("nothing waits for review"), "The backlog is empty."))
    parts.append(_table("backlog", cols, rows, limit=50))

    # copyright evidence
    sc = con.execute("""SELECT copyright_score, status FROM records WHERE copyright_score IS NOT NULL""").fetchall()
    parts.append("<h2>Copyright evidence <small class=muted>(query: evidence)</small></h2>")
    if sc:
        by_status = {status: [v for v, s in sc if s == status] for status in sorted({s for _, s in sc})}
        fig = _hist(by_status, "copyright score (metadata match 0-100; audio: the backend's score)", bins=20)
        waiting = len(by_status.get("review", []))
        parts.append(_figure("evidence", fig, f"{len(sc):,} records with a copyright score, by status now ("
                             + ", ".join(f"{len(v):,} {k}" for k, v in by_status.items())
                             + f"); the table lists those waiting for review ({waiting:,} with a score)."))
    else:
        parts.append(_figure("evidence", _empty_plot("no copyright scores"), "No record has a copyright score."))
    cols, rows = audit.run_query(con, "evidence")
    parts.append(_table("evidence", cols, rows))

    # the latest release against the one before
    parts.append("<h2>Release diff <small class=muted>(query: since)</small></h2>")
    if len(versions) >= 2:
        cols, rows = audit.run_query(con, "since")
        groups: dict[str, int] = {}
        for r in rows:
            k = f"{r[0]}: {r[cols.index('reason')]}"
            groups[k] = groups.get(k, 0) + 1
        labels = sorted(groups) or ["no change"]
        parts.append(_figure("since", _barh(labels, [groups.get(k, 0) for k in labels], colors="#54a24b"),
                             f"Records that entered or left between {versions[-2]} and {versions[-1]}."))
        parts.append(_table("since", cols, rows, limit=200))
    else:
        msg = f"only {versions[0]} is published" if versions else "no release published yet"
        parts.append(_figure("since", _empty_plot(msg), "Nothing to compare yet."))
    cols, rows = audit.run_query(con, "releases")
    parts += ["<h3>Versions <small class=muted>(query: releases)</small></h3>", _table("releases", cols, rows)]
    con.close()

    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
            'img-src data:">'
            f"<title>Curation audit</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(cfg.output_dir) / "report" / "index.html"
    atomic_write_text(path, re.sub(r"\n\s*\n", "\n", page))
    return path

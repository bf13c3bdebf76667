"""`curate audit` over a real output folder (the demo run, then a takedown released as v2),
checked against pandas reading the same files; the decision history; the HTML report opened
in headless Chromium."""
import csv
import io
import json
import shutil
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pytest

from curation.storage import read_pandas
from manifests.run_report import history_rows
from tests.conftest import cli_env, curate


def test_history_rows_first_run_changes_and_baseline():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first = pa.table({"source": ["fma", "fma"], "id": ["1", "2"], "status": ["included", "review"],
                      "reason": ["", "copyright_match_review"]})
    h = history_rows(None, first, "run-1", t0).to_pylist()
    assert [(r["id"], r["status"], r["previous_status"]) for r in h] == [("1", "included", None), ("2", "review", None)]
    second = pa.table({"source": ["fma", "fma", "fma"], "id": ["1", "2", "3"],
                       "status": ["excluded", "review", "included"], "reason": ["takedown", "copyright_match_review", ""]})
    h = history_rows(first, second, "run-2", t0).to_pylist()
    assert sorted((r["id"], r["status"], r["reason"], r["previous_status"], r["previous_reason"]) for r in h) == [
        ("1", "excluded", "takedown", "included", ""), ("3", "included", "", None, None)]
    assert {r["run_id"] for r in h} == {"run-2"} and h[0]["run_at"] == t0
    # a record gone from the input is said, not dropped
    h = history_rows(second, first, "run-3", t0).to_pylist()
    assert ("3", "absent") in [(r["id"], r["status"]) for r in h]
    # the first history file of an older output folder holds every record
    assert len(history_rows(first, first, "run-4", t0, full=True)) == 2
    assert len(history_rows(first, first, "run-5", t0)) == 0


@pytest.fixture(scope="module")
def audited(tmp_path_factory, demo_dir):
    root = tmp_path_factory.mktemp("audit")
    shutil.copytree(demo_dir, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out", "out*", "*.toml"))
    text = (demo_dir / "curate.toml").read_text()
    cfg = root / "curate.toml"
    cfg.write_text(text.replace("[training]\nenabled = true", "[training]\nenabled = false")
                   .replace("[release]\n", '[release]\ntakedowns = "takedowns.csv"\n'))
    (root / "takedowns.csv").write_text("source,id,reason,requested_at\n")
    env = cli_env(root, music_cache=True)
    curate("run", str(cfg), env=env)
    first = read_pandas(root / "out" / "releases" / "v1" / "records.parquet")
    gone = first.sort_values("key").iloc[0]
    (root / "takedowns.csv").write_text(f"source,id,reason,requested_at\n{gone.source},{gone.id},rights holder,2026-11-01\n")
    curate("release", str(cfg), env=env)
    return {"cfg": cfg, "out": root / "out", "env": env, "gone": (gone.source, gone.id)}


def audit(audited, *args, check=True):
    return curate("audit", str(audited["cfg"]), *args, env=audited["env"], check=check)


def audit_csv(audited, *args) -> list[dict]:
    return list(csv.DictReader(io.StringIO(audit(audited, *args, "--csv").stdout)))


def manifest(audited) -> pd.DataFrame:
    return read_pandas(audited["out"] / "manifests" / "records.parquet")


@pytest.mark.slow
def test_canned_queries_answer_from_the_files(audited):
    m = manifest(audited)
    got = {(r["source"], r["status"], r["reason"]): int(r["records"]) for r in audit_csv(audited, "reasons")}
    want = m.assign(reason=m["reason"].replace("", "-")).groupby(["source", "status", "reason"]).size().to_dict()
    assert got == want
    funnel = audit_csv(audited, "funnel")
    assert [f["stage"] for f in funnel] == ["ingest", "licenses", "eval_sets", "audio", "music", "quality", "duplicates",
                                            "copyright", "review", "release"]
    quality = audit_csv(audited, "quality")
    measured = m[m["loudness_lufs"].notna() | m["silent_share"].notna()]
    assert quality[0]["action"] == "measured" and int(quality[0]["records"]) == len(measured) > 0
    assert float(quality[0]["median_lufs"]) == pytest.approx(measured["loudness_lufs"].median(), abs=0.01)
    flagged = sum(len(f) for f in m["quality_flags"].dropna())
    assert sum(int(q["records"]) for q in quality if q["action"] == "flagged") == flagged
    assert int(next(f for f in funnel if f["stage"] == "duplicates")["taken_out"]) == 1  # 1013, a copy of 1002
    groups = audit_csv(audited, "duplicates")
    assert [(g["kept"], g["records"], g["copies"], g["kinds"], g["authors"]) for g in groups] == [
        ("freesound_1002", "2", "1", "near", "1")]
    assert int(funnel[-1]["remaining"]) == (m["status"] == "included").sum()
    assert sum(int(f["taken_out"]) for f in funnel) == len(m) - (m["status"] == "included").sum()
    assert funnel[-1]["taken_out"] == "1"  # the takedown

    v2 = read_pandas(audited["out"] / "releases" / "v2" / "records.parquet")
    lic = audit_csv(audited, "licenses")  # the latest version by default
    assert {(r["source"], r["license_url"]): int(r["records"]) for r in lic} == \
        v2.groupby(["source", "license_url"]).size().to_dict()
    assert len(audit_csv(audited, "licenses", "--version", "v1")) >= len(lic)

    source, rid = audited["gone"]
    since = audit_csv(audited, "since")  # v1 -> v2
    assert [(r["change"], r["source"], r["id"], r["status"], r["reason"]) for r in since] == [
        ("left", source, rid, "excluded", "takedown")]
    hist = audit_csv(audited, "history", "--record", f"{source}:{rid}")
    assert [(h["status"], h["reason"], h["previous_status"]) for h in hist] == [
        ("included", "-", ""), ("excluded", "takedown", "included")]

    backlog = audit_csv(audited, "backlog")
    waiting = m[m["status"] == "review"]
    assert sorted((b["source"], b["id"]) for b in backlog) == sorted(zip(waiting["source"], waiting["id"]))
    assert all(b["waiting_since"] and b["days_waiting"] == "0" for b in backlog)
    ev = audit_csv(audited, "evidence")
    scores = [float(e["copyright_score"]) for e in ev if e["copyright_score"]]
    assert scores == sorted(scores, reverse=True) and len(ev) == len(waiting)

    rels = [json.loads(line) for line in audit(audited, "releases", "--json").stdout.splitlines()]
    assert [(r["version"], r["parent"], r["takedowns"]) for r in rels] == [("v1", None, 0), ("v2", "v1", 1)]
    assert rels[1]["records"] == len(v2)


@pytest.mark.slow
def test_any_sql_and_clear_errors(audited):
    p = audit(audited, "SELECT count(*) AS n FROM release_records WHERE version = 'v2'", "--json")
    assert json.loads(p.stdout) == {"n": len(read_pandas(audited["out"] / "releases" / "v2" / "records.parquet"))}
    bad = audit(audited, "SELECT nope FROM records", check=False)
    assert bad.returncode == 1 and "nope" in bad.stderr
    bad = audit(audited, "licenses", "--version", "v9", check=False)
    assert bad.returncode == 1 and "no release version 'v9'" in bad.stderr
    bad = audit(audited, "history", check=False)
    assert bad.returncode == 1 and "--record SOURCE:ID" in bad.stderr
    listing = audit(audited).stdout
    assert "release_records" in listing and "backlog" in listing
    # piped (as here: stdout is not a terminal), a table is written at its full width
    table = audit(audited, "releases").stdout
    sha = json.loads(audit(audited, "releases", "--json").stdout.splitlines()[0])["config_sha256"]
    assert sha in table and "\u2026" not in table
    assert max(len(line) for line in table.splitlines()) > 200


@pytest.mark.slow
def test_report_renders_in_chromium_with_the_queries_numbers(audited):
    from PIL import Image
    import numpy as np

    from manifests.audit import connect, run_query
    from tests.browser import Chromium

    path = audited["out"] / "report" / "index.html"
    assert path.is_file()  # written by the run
    assert "<script" not in path.read_text() and "http://" not in path.read_text().split("</style>")[0]
    with Chromium() as browser:
        page = browser.open(path.as_uri())
        height = page.evaluate("document.documentElement.scrollHeight")
        png = page.screenshot(1200, height)
        plots = page.evaluate("""[...document.querySelectorAll('figure.plot')].map(f => {
            const r = f.querySelector('svg').getBoundingClientRect();
            return {name: f.dataset.plot, x: r.x, y: r.y + window.scrollY, w: r.width, h: r.height}; })""")
        tables = page.evaluate("""Object.fromEntries([...document.querySelectorAll('table[data-query]')].map(t =>
            [t.dataset.query, [...t.querySelectorAll('tbody tr')].map(tr =>
                [...tr.querySelectorAll('td')].map(td => td.textContent))]))""")
        assert page.errors() == []
    assert [p["name"] for p in plots] == ["funnel", "licenses", "music", "loudness", "bandwidth", "duplicates",
                                          "duplicate-kinds", "backlog", "evidence", "since"]
    img = Image.open(io.BytesIO(png)).convert("L")
    scale = img.size[0] / 1200
    for p in plots:
        assert p["w"] > 200 and p["h"] > 80, p
        box = [int(v * scale) for v in (p["x"], p["y"], p["x"] + p["w"], p["y"] + p["h"])]
        crop = np.asarray(img.crop(box), dtype=float)
        dark = (crop < 200).mean()
        assert crop.std() > 10 and dark > 0.01, (p["name"], crop.std(), dark)  # drawn, not blank
    con = connect(audited["out"])
    for name, shown in tables.items():
        cols, rows = run_query(con, name)
        assert shown == [["" if v is None else str(v) for v in r] for r in rows[:len(shown)]], name
    assert set(tables) >= {"funnel", "reasons", "included", "licenses", "music", "quality", "duplicates", "backlog",
                           "evidence", "since", "releases"}


def _svg_marks(html_text: str) -> dict[str, tuple[list[str], dict[str, list[tuple[float, float, bool]]]]]:
    """{plot: (legend labels, {mark label: [(width, height, is a line)]})} from the report's inline SVG."""
    import re
    import xml.etree.ElementTree as ET

    svg_ns = "{http://www.w3.org/2000/svg}"
    out = {}
    for m in re.finditer(r'<figure class="plot" id="plot-([^"]+)"[^>]*>(<svg.*?</svg>)', html_text, re.S):
        root = ET.fromstring(m.group(2))
        legend = [t.text for g in root.iter(svg_ns + "g") if (g.get("id") or "").startswith("legend")
                  for t in g.iter(svg_ns + "text")]
        marks: dict[str, list] = {}
        for g in root.iter(svg_ns + "g"):
            gid = g.get("id") or ""
            if not gid.startswith("mark:"):
                continue
            for path in g.iter(svg_ns + "path"):
                nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.get("d") or "")]
                xs, ys = nums[0::2], nums[1::2]
                line = "fill: none" in (path.get("style") or "")
                marks.setdefault(gid[5:], []).append((max(xs) - min(xs), max(ys) - min(ys), line))
        out[m.group(1)] = (legend, marks)
    return out


def test_every_category_a_plot_names_has_a_visible_mark(audited, tmp_path):
    """Read from the SVG: each legend entry has a mark at least 1 px both ways (a line: 1 px
    long), every mark drawn is visible, and a category of one record beside many is one too."""
    import matplotlib

    from manifests import report

    matplotlib.use("Agg")
    plots = _svg_marks((audited["out"] / "report" / "index.html").read_text())
    assert {"licenses", "evidence", "music"} <= {k for k, (legend, _) in plots.items() if legend}
    for name, (legend, marks) in plots.items():
        for label in legend:
            assert label in marks, (name, label, sorted(marks))
        for label, boxes in marks.items():
            assert any((w >= 1 and h >= 1) or (line and max(w, h) >= 1) for w, h, line in boxes), (name, label, boxes)
    # one record beside 500,000: drawn, as a bar and as a histogram's group
    fig = report._barh(["many", "one"], [500_000, 1])
    (tmp_path / "a.html").write_text(report._figure("t", fig, ""))
    fig = report._hist({"included": [float(v % 100) for v in range(5000)], "review": [42.0]}, "score", bins=20)
    (tmp_path / "b.html").write_text(report._figure("u", fig, ""))
    for f, want in (("a.html", {"many", "one"}), ("b.html", {"included (5,000)", "review (1)"})):
        (_, marks), = _svg_marks((tmp_path / f).read_text()).values()
        assert set(marks) == want
        for label, boxes in marks.items():
            assert any(w >= 1 and h >= 1 for w, h, _ in boxes), (f, label, boxes)

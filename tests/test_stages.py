"""The per-partition stages say what they do (curation/stages.py), and the demo's run shows it:
each changed or added only the columns it declares it writes, and set only its own reasons."""
import pyarrow.compute as pc
import pytest

from curation.config import Config
from curation.stage import Stage
import pyarrow.parquet as pq

from curation.stages import ALL, BETWEEN, BY_NAME, PER_PARTITION, REASON_STEP, REASONS


def test_every_reason_is_declared_with_its_meaning_by_one_step():
    assert [s.name for s in ALL] == ["ingest", "licenses", "eval_sets", "music", "quality", "duplicates", "copyright",
                                     "review", "release"]
    assert [s.name for s in PER_PARTITION] == ["licenses", "eval_sets", "music", "quality", "copyright"]
    declared = [code for s in ALL for code in s.reasons]
    assert len(declared) == len(set(declared)) == len(REASONS)
    for s in ALL:
        for code, meaning in s.reasons.items():
            assert REASON_STEP[code] == s.name and REASONS[code] == meaning
            assert len(meaning) > 15 and code.replace("_", "").isalpha(), code
    assert REASON_STEP["takedown"] == "review" and REASON_STEP["malformed_record"] == "ingest"
    assert REASON_STEP["duplicate"] == "duplicates" and REASON_STEP["reupload_other_author"] == "review"
    for s in ALL:  # each tells `curate explain` its part, from its own module
        assert s.explain.__module__ == (s.setup if isinstance(s, Stage) else s.run).__module__, s.name
    assert BY_NAME["music"].rerun_if is not None


def test_a_reason_is_declared_by_one_step_only():
    from curation.stage import FanIn
    from curation.stages import _assemble

    a = FanIn("a", (), (), {"x_y": "one meaning"}, run=None)
    b = FanIn("b", (), (), {"x_y": "another"}, run=None)
    with pytest.raises(RuntimeError, match="x_y is declared by both a and b"):
        _assemble([a, b])


def test_the_runner_refuses_a_reason_the_stage_did_not_declare(tmp_path):
    """A stage that sets a reason it does not declare is a bug: the runner says so and writes
    neither the part nor its marker (so a fixed stage runs again)."""
    import dataclasses

    from curation import record_table as rt
    from curation.records import Record
    from curation.stage import UndeclaredReason, marker_path, write_part

    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_part(src, rt.from_records([Record("fma", "1", license_raw="CC BY"), Record("fma", "2")]))
    sloppy = dataclasses.replace(
        BY_NAME["licenses"], reasons={"license_missing": BY_NAME["licenses"].reasons["license_missing"]})
    with pytest.raises(UndeclaredReason, match="licenses set reason.*attribution_incomplete"):
        sloppy.run(Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out"), None, str(src), str(dst), "k")
    assert not dst.exists() and not marker_path(dst).exists()
    res = BY_NAME["licenses"].run(Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out"), None,
                                  str(src), str(dst), "k")
    assert res["counts"] == {"attribution_incomplete": 1, "license_missing": 1}


def test_the_demo_run_changed_only_what_each_stage_declares(demo_run):
    stages = demo_run["out"] / "work" / "stages"
    before_dir = "ingest"
    checked = 0
    for s in BETWEEN:  # the per-partition stages and the duplicates step between them
        for after_p in sorted((stages / s.name).glob("part-*.parquet")):
            before = pq.read_table(stages / before_dir / after_p.name)
            after = pq.read_table(after_p)
            assert before.num_rows == after.num_rows
            changed = {c for c in after.column_names
                       if c not in before.column_names or not after.column(c).equals(before.column(c))}
            assert changed <= set(s.writes), f"{s.name} wrote {sorted(changed - set(s.writes))}, undeclared"
            assert not set(before.column_names) - set(after.column_names), f"{s.name} dropped a column"
            new = pc.and_(pc.not_equal(before.column("reason"), after.column("reason")),
                          pc.not_equal(after.column("reason"), ""))
            reasons = set(pc.filter(after.column("reason"), new).to_pylist())
            assert reasons <= set(s.reasons), f"{s.name} set {sorted(reasons - set(s.reasons))}, undeclared"
            checked += 1
        before_dir = s.name
    assert checked == len(BETWEEN) * len(list((stages / "ingest").glob("part-*.parquet")))


def test_curate_explain_is_told_by_the_steps_in_order(demo_run):
    """Every step says its part of the demo's records, and `curate explain` prints those parts
    after the record's status, in the order the steps ran."""
    import json

    from manifests.explain import explain_lines

    rows = pq.read_table(demo_run["out"] / "manifests" / "records.parquet").to_pylist()
    said = {s.name: 0 for s in ALL}
    for row in rows:
        ev = json.loads(row["evidence"] or "{}")
        parts = []
        for s in ALL:
            lines = s.explain(row, ev)
            said[s.name] += bool(lines)
            parts += lines
        assert explain_lines(row)[2:] == parts
    # the demo configures no evaluation-set list (tests/test_eval_sets.py explains one)
    assert all(v for k, v in said.items() if k != "eval_sets") and not said["eval_sets"], said


def test_arrows_point_one_way():
    """The flow imports the stage list, the stage list imports the stages, a stage imports the
    runner's types and the library below it: never the stage list or the flow. (The CLI,
    `curation/cli.py`, stands above the flow and starts it; the readers of a run's outputs in
    manifests/, the audit, the report and `curate explain`, stand above the stages and may read
    the stage list's table of reasons, never the flow.)"""
    readers = {"manifests/audit", "manifests/explain", "manifests/report", "manifests/run_report"}
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    bad = []
    for path in sorted((root / "curation").rglob("*.py")) + sorted((root / "manifests").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        if rel.as_posix() == "curation/cli":
            continue
        pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg[: len(pkg) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                if n.startswith("flows") or (n.startswith("curation.stages") and rel.as_posix() != "curation/stages"
                                             and rel.as_posix() not in readers):
                    bad.append(f"{rel.as_posix()} imports {n}")
    assert not bad, bad

"""The per-partition stages say what they do (curation/stages.py), and the demo's run shows it:
each changed or added only the columns it declares it writes, and set only its own reasons."""
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.records import REASONS
from curation.stages import BY_NAME, PER_PARTITION


def test_every_declared_reason_has_a_meaning_and_one_stage():
    seen = {}
    for s in PER_PARTITION:
        assert s.reasons and set(s.reasons) <= set(REASONS), s.name
        for r in s.reasons:
            assert r not in seen, f"{r} is set by {seen[r]} and {s.name}"
            seen[r] = s.name
    assert [s.name for s in PER_PARTITION] == ["licenses", "music", "copyright"]
    assert BY_NAME["music"].rerun_if is not None


def test_the_demo_run_changed_only_what_each_stage_declares(demo_run):
    stages = demo_run["out"] / "work" / "stages"
    before_dir = "ingest"
    checked = 0
    for s in PER_PARTITION:
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
    assert checked == 3 * len(list((stages / "ingest").glob("part-*.parquet")))


def test_arrows_point_one_way():
    """The flow imports the stage list, the stage list imports the stages, a stage imports the
    runner's types and the library below it: never the stage list or the flow. (The CLI,
    `curation/cli.py`, stands above the flow and starts it.)"""
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
                if n.startswith("flows") or (n == "curation.stages" and rel.as_posix() != "curation/stages"):
                    bad.append(f"{rel.as_posix()} imports {n}")
    assert not bad, bad

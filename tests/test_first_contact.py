"""What a new user does first (issue: first contact): a bare clone, a moved output folder, a
routine takedown then `load_dataset`, damaged tables, every verb with bad arguments, a cut
download."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curation.storage import read_pandas
from tests.conftest import REPO, cli_env, curate

PACKAGES = ("curation", "flows", "manifests", "training")


def copy_run(demo_run: dict, dest: Path) -> Path:
    """`cp -a` of the demo folder (its inputs and its output), without the extra outputs of
    other tests."""
    shutil.copytree(demo_run["root"], dest, symlinks=True, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("out_*", "*.toml.*"))
    return dest


def invoke(*args: str, input: str | None = None):
    """A `curate` verb in-process, as the CLI runs it; fails the test on a traceback."""
    from curation.cli import app

    res = CliRunner().invoke(app, list(args), input=input)
    text = res.output
    assert "Traceback" not in text, text
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"curate {' '.join(args)} raised {type(res.exception).__name__}: {res.exception}")
    return res.exit_code, text


# --------------------------------------------------------------------------- 1. a bare clone


def test_the_class_list_ships_with_the_package():
    from curation.data import audioset_labels_csv
    from curation.music.detector import read_labels
    from curation.music.models import PUBLISHED_LABELS_SHA256

    path = audioset_labels_csv()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PUBLISHED_LABELS_SHA256
    labels = read_labels(path)
    assert len(labels) == 527 and labels[0] == (0, "/m/09x0r", "Speech")
    license_note = (path.parent / "AUDIOSET.md").read_text()
    assert "CC BY 4.0" in license_note and "class_labels_indices.csv" in license_note


def test_a_config_without_a_class_list_uses_the_shipped_one(tmp_path):
    from curation.config import load_config
    from curation.data import audioset_labels_csv

    for d in ("pages", "audio"):
        (tmp_path / d).mkdir()
    (tmp_path / "m.pth").write_bytes(b"")
    cfg = tmp_path / "c.toml"
    cfg.write_text('output_dir = "out"\n[freesound]\npages_dir = "pages"\naudio_dir = "audio"\n'
                   '[music]\ncheckpoint = "m.pth"\n')
    assert load_config(cfg).music.labels_csv == audioset_labels_csv()


def test_no_code_reads_the_shared_folder():
    pattern = re.compile(r"""["'/]shared["'/]|\.\./shared|"shared"\s*/""")
    hits = []
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, hits


def test_demo_data_in_a_bare_clone(tmp_path):
    """`git clone` into an empty folder, then the quick start's first step with the clone's
    own code: the demo inputs come from the repository alone (CI runs the whole demo there)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "empty" / "audio-curation"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, capture_output=True)
    assert sorted(os.listdir(clone.parent)) == ["audio-curation"]
    env = cli_env(tmp_path)
    env.pop("AUDIOSET_LABELS_CSV", None)
    env["PYTHONPATH"] = str(clone)
    env["HOME"] = str(tmp_path / "home")  # no ~/panns_data either
    code = ("import sys, curation; from curation.cli import app; "
            "assert curation.__file__.startswith(sys.argv[1]), curation.__file__; "
            "sys.argv = ['curate', 'demo-data', sys.argv[2]]; app()")
    p = subprocess.run([sys.executable, "-c", code, str(clone), str(clone / "demo")], env=env,
                       capture_output=True, text=True, cwd=clone)
    assert p.returncode == 0, p.stderr
    labels = clone / "demo" / "models" / "class_labels_indices.csv"
    assert labels.read_bytes() == (clone / "curation" / "data" / "class_labels_indices.csv").read_bytes()


# --------------------------------------------------------------------------- 5. work that is not redone


def test_a_copied_output_folder_resumes_with_nothing_to_do_on_a_loaded_machine(demo_run, tmp_path):
    """A copy of a finished run's folders, run again: nothing is redone, and the work area names
    the copy. `curate run` runs as a user runs it (a temporary Prefect server of its own, the
    CLI's own start-up margin) while two busy processes hold the 2 cores."""
    work = copy_run(demo_run, tmp_path / "demo2")
    env = cli_env(work)
    for k in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        env.pop(k, None)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        p = curate("run", str(work / "curate.toml"), env=env)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    summary = json.loads((work / "out" / "manifests" / "run_summary.json").read_text())
    stages = {s["name"]: s for s in summary["stages"]}
    for name in ("licenses", "eval_sets", "music", "copyright"):
        assert any("unchanged since the last run: skipped" in n for n in stages[name]["notes"]), (name, stages[name])
    assert stages["music"]["counts"].get("scored", 0) == 0 and stages["music"]["counts"].get("cached", 0) == 0
    assert stages["release"]["counts"]["shards_written"] == 0
    assert summary["training"]["skipped"] is True
    assert "release unchanged: still v1" in p.stderr
    # the work area names the copy, not the folder it was copied from
    decided = json.loads((work / "out" / "work" / "stages" / "decided.json").read_text())
    assert all(d.startswith("$OUT/") for d in decided), decided
    paths = [a for part in sorted((work / "out" / "work" / "stages" / "music").glob("part-*.parquet"))
             for a in pq.read_table(part, columns=["audio_path"]).column(0).to_pylist() if a]
    assert paths and all(a.startswith("$CONFIG/") for a in paths), paths


def test_release_alone_does_not_train(demo_run, tmp_path):
    work = copy_run(demo_run, tmp_path / "demo3")
    before = (work / "out" / "training" / "done.json").stat().st_mtime_ns
    curate("release", str(work / "curate.toml"), env=cli_env(work))
    summary = json.loads((work / "out" / "manifests" / "run_summary.json").read_text())
    assert summary["training"] is None
    assert (work / "out" / "training" / "done.json").stat().st_mtime_ns == before


# --------------------------------------------------------------------------- 2. a takedown, then load_dataset


def _sample_schemas(version: Path) -> set:
    import tarfile

    kinds = set()
    for shard in sorted((version / "shards").glob("*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    kinds.add(tuple(sorted((k, type(v).__name__) for k, v in meta.items())))
    return kinds


def test_every_version_loads_after_takedowns(demo_run, tmp_path):
    import datasets

    from curation.release.versions import resolve_dataset_config
    from stable_audio_tools.data.dataset import create_dataloader_from_config

    work = copy_run(demo_run, tmp_path / "demo4")
    out = work / "out"
    v1 = read_pandas(out / "releases" / "v1" / "records.parquet")
    fs_keys = sorted(k for k in v1["key"] if k.startswith("freesound_"))
    assert fs_keys, "the demo releases Freesound records"
    # one takedown (v2), then every Freesound record taken down (v3): shards of FMA records only
    rows = ["source,id,reason,requested_at", f"freesound,{fs_keys[0].split('_')[1]},uploader asked,2026-11-20T10:00:00Z"]
    (work / "takedowns.csv").write_text("\n".join(rows) + "\n")
    cfg = work / "curate.toml"
    cfg.write_text(cfg.read_text().replace("[release]\n", '[release]\ntakedowns = "takedowns.csv"\n'))
    env = cli_env(work)
    curate("release", str(cfg), env=env)
    rows += [f"freesound,{k.split('_')[1]},uploader asked,2026-11-21T10:00:00Z" for k in fs_keys[1:]]
    (work / "takedowns.csv").write_text("\n".join(rows) + "\n")
    curate("release", str(cfg), env=env)
    versions = sorted(p for p in (out / "releases").iterdir() if p.is_dir() and p.name.startswith("v"))
    assert [v.name for v in versions] == ["v1", "v2", "v3"]
    last = read_pandas(versions[-1] / "records.parquet")
    assert set(k.split("_")[0] for k in last["key"]) == {"fma"}

    for v in versions:
        keys = sorted(read_pandas(v / "records.parquet")["key"])
        assert len(_sample_schemas(v)) == 1, v  # one JSON schema in every shard
        cache = str(tmp_path / f"hf-{v.name}")
        # the card's own snippet: the folder, features from its header
        ds = datasets.load_dataset(str(v), split="train", cache_dir=cache)
        assert sorted(ds["__key__"]) == keys
        assert ds.features["json"]["tags"] == datasets.List(datasets.Value("string"))
        first = ds[0]
        assert first["flac"].get_all_samples().sample_rate == 44100
        assert ds.features["json"]["seconds"] == datasets.Value("float64") and first["json"]["seconds"] > 0
        streamed = datasets.load_dataset(str(v), split="train", streaming=True)
        assert sorted(r["__key__"] for r in streamed) == keys
        # the shards alone, with the card's features
        import yaml

        header = yaml.safe_load((v / "README.md").read_text().split("---\n")[1])
        features = datasets.Features._from_yaml_list(header["dataset_info"]["features"])
        by_files = datasets.load_dataset("webdataset", data_files={"train": str(v / "shards" / "*.tar")},
                                         split="train", features=features, cache_dir=cache + "-files")
        assert sorted(by_files["__key__"]) == keys
        # stable-audio-tools, with the version's own dataset config
        ds_cfg = json.loads((v / "dataset_config.json").read_text())
        assert ds_cfg["dataset_type"] == "wds" and ds_cfg["datasets"][0]["path"] == "shards"
        loader = create_dataloader_from_config(resolve_dataset_config(v / "dataset_config.json"), batch_size=2,
                                               sample_size=4096, sample_rate=44100, audio_channels=2, num_workers=1)
        audio, meta = next(iter(loader))
        assert tuple(audio.shape[-2:]) == (2, 4096) and all(m["text"] and m["source"] for m in meta)
    assert curate("release", "verify", str(versions[-1]), env=cli_env(work)).returncode == 0


# --------------------------------------------------------------------------- 3. bad input


DAMAGE = {
    "header only": None,  # filled per table
    "0 bytes": b"",
    "a required column missing": None,
    "another delimiter": None,
    "random bytes": bytes(range(256)) * 8,
    "a folder": "folder",
    "a path that does not exist": "missing",
}
TABLES = {  # the demo's file, its header rows, the row naming the columns, a required column
    "spotify": ("spotify/dataset.csv", 1, 0, "track_name"),
    "tracks": ("fma_metadata/tracks.csv", 3, 1, "name"),  # artist/name
    "raw_tracks": ("fma_metadata/raw_tracks.csv", 1, 0, "track_url"),
    "decisions": ("review_decisions.csv", 1, 0, "decision"),
    "takedowns": ("takedowns.csv", 1, 0, "requested_at"),
}


def _without_column(text: str, row: int, column: str) -> str:
    import csv
    import io

    lines = text.splitlines(True)
    fields = next(csv.reader([lines[row]]))
    assert column in fields, (column, fields)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["something_else" if f == column else f for f in fields])
    lines[row] = buf.getvalue()
    return "".join(lines)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_dir):
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(demo_dir, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out*", "*.toml.*"))
    (root / "takedowns.csv").write_text("source,id,reason,requested_at\nfma,2,asked,2026-11-20T10:00:00Z\n")
    cfg = root / "curate.toml"
    cfg.write_text(cfg.read_text().replace("[release]\n", '[release]\ntakedowns = "takedowns.csv"\n'))
    return root


@pytest.mark.parametrize("table", list(TABLES))
def test_each_damaged_table_stops_the_run_with_a_line_or_two(inputs, table, tmp_path):
    from curation.config import load_config
    from curation.inputs import check_inputs

    rel, header_rows, names_row, column = TABLES[table]
    check_inputs(load_config(inputs / "curate.toml"))  # as written: fine
    path = inputs / rel
    original = path.read_bytes()
    text = original.decode("utf-8")
    header = "".join(text.splitlines(True)[:header_rows]).encode()
    cases = dict(DAMAGE)
    cases["header only"] = header
    cases["a required column missing"] = _without_column(text, names_row, column).encode()
    cases["another delimiter"] = text.replace(",", ";").encode()
    try:
        for case, data in cases.items():
            if path.is_dir():
                path.rmdir()
            if data == "folder":
                path.unlink(missing_ok=True)
                path.mkdir()
            elif data == "missing":
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
            if case == "header only":  # a well-formed empty table is no damage
                check_inputs(load_config(inputs / "curate.toml"))
                continue
            code, out = invoke("run", str(inputs / "curate.toml"))
            assert code in (1, 2), (table, case, out)
            assert path.name in out, (table, case, out)
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            assert len(lines) <= 3, (table, case, out)
            assert not (inputs / "out").exists(), (table, case)  # stopped before any stage ran
    finally:
        if path.is_dir():
            path.rmdir()
        path.write_bytes(original)


def test_an_output_dir_that_is_a_file(inputs):
    (inputs / "out_is_a_file").write_text("x")
    cfg = inputs / "file_out.toml"  # beside the inputs its relative paths name
    cfg.write_text((inputs / "curate.toml").read_text().replace('output_dir = "out"', 'output_dir = "out_is_a_file"'))
    code, out = invoke("run", str(cfg))
    assert code == 1 and "out_is_a_file" in out and "is a file, not a folder" in out, out
    assert len(out.strip().splitlines()) <= 2, out


def test_an_empty_catalogue_matches_nothing_and_says_so(tmp_path, demo_run):
    work = copy_run(demo_run, tmp_path / "w")  # the demo's run: the copyright stage runs again
    spotify = work / "spotify" / "dataset.csv"
    spotify.write_text(spotify.read_text().splitlines()[0] + "\n")
    cfg = work / "curate.toml"
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false"))
    curate("run", str(cfg), env=cli_env(work))
    summary = json.loads((work / "out" / "manifests" / "run_summary.json").read_text())
    notes = next(s for s in summary["stages"] if s["name"] == "copyright")["notes"]
    assert any("has no rows" in n for n in notes), notes
    df = read_pandas(work / "out" / "manifests" / "records.parquet")
    assert not (df["reason"] == "copyright_match_review").any()
    assert len(df[df["source"] == "fma"]) == 10


def test_every_verb_with_bad_arguments(tmp_path):
    nope = str(tmp_path / "nope.toml")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_bytes(b"\x00\x01garbage")
    afile = tmp_path / "afile"
    afile.write_text("x")
    calls = [
        ["run", nope], ["explain", nope, "fma", "1"], ["audit", nope], ["audit", nope, "reasons"],
        ["release", nope], ["release", "diff", str(tmp_path / "a"), str(tmp_path / "b")],
        ["release", "verify", str(tmp_path / "nodir")], ["deploy", nope],
        ["music", "calibrate", nope, "--music", str(tmp_path), "--non-music", str(tmp_path)],
        ["copyright", "match", str(tmp_path / "no.csv"), str(tmp_path / "no.csv"), "--out", str(tmp_path / "o.csv")],
        ["copyright", "match", str(bad_csv), str(bad_csv), "--out", str(tmp_path / "o.csv")],
        ["fingerprint", "index", str(tmp_path / "nodir"), "--index", str(tmp_path / "idx")],
        ["fingerprint", "query", "--index", str(tmp_path / "nodir"), str(tmp_path / "x.wav")],
        ["demo-data", str(afile / "sub")], ["models", "fetch", str(afile)],
        ["run"], ["explain"], ["nonsense-verb"],
    ]
    for args in calls:
        code, out = invoke(*args)
        assert code != 0, (args, out)
        assert out.strip(), args
        assert len(out.strip().splitlines()) <= 12, (args, out)


def test_audit_answers_a_typo_with_the_near_queries(demo_run):
    code, out = invoke("audit", str(demo_run["root"] / "curate.toml"), "reasonz")
    assert code == 1 and "not a known query" in out and "reasons" in out, out
    assert "Parser Error" not in out


def test_explain_and_audit_read_the_output_only(demo_run, tmp_path):
    work = copy_run(demo_run, tmp_path / "demo5")
    (work / "fma_metadata" / "tracks.csv").rename(work / "tracks.moved.csv")
    shutil.rmtree(work / "spotify")
    code, out = invoke("explain", str(work / "curate.toml"), "fma", "10")
    assert code == 0 and "fma 10: INCLUDED" in out, out
    code, out = invoke("audit", str(work / "curate.toml"), "reasons", "--csv")
    assert code == 0 and "reason" in out.splitlines()[0], out
    # a run still needs them
    code, out = invoke("run", str(work / "curate.toml"))
    assert code != 0 and "tracks.csv" in out


def test_credits_whose_bracket_never_closes():
    from curation.copyright.metadata_match import CatalogueMatcher

    cat = pd.DataFrame({"track_id": ["a", "b"], "artists": ["Jofe Collective", "Someone Else"],
                        "album_name": ["x", "y"], "track_name": ["Midnight Harbour", "Other Song"]})
    m = CatalogueMatcher(cat)
    res = m.match(["Midnight Harbour", "Midnight Harbour", "Midnight Harbour", "Midnight Harbour"],
                  ["Jofe Collective (feat. Lomal Corfe", "Jofe Collective (feat. Lomal Corfe)",
                   "Jofe Collective [ft. Lomal Corfe", "Lomal Corfe"])
    assert res["flagged"].tolist() == [True, True, True, False]
    assert (res["crow"][:3] == 0).all()


# --------------------------------------------------------------------------- 4. a cut download


@pytest.fixture(scope="module")
def real_files():
    from curation.realaudio import package_audio

    mp3 = package_audio("asc-music")[0]  # apt-get download + dpkg-deb -x, cached
    ogg = package_audio("planetblupi-music-ogg")[0]
    return mp3, ogg


def test_a_cut_real_mp3_and_ogg_are_truncated(real_files, tmp_path, labels_csv):
    from curation.music import stage as music_stage
    from curation import record_table as rt
    from curation.config import Config
    from curation.records import Record
    from curation.sources.fma import audio_path

    mp3, ogg = real_files
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.fma.audio_dir = tmp_path / "fma_full"
    cfg.music.workers = 0
    cfg.music.fma = "source"  # decoded and checked, as FMA tracks are by default
    lengths = {}
    for src in (mp3, ogg):
        from mutagen import File as MutagenFile

        lengths[src] = MutagenFile(str(src)).info.length
    recs = []
    plan = [(mp3, 1.0, 0.0), (mp3, 0.4, 0.0), (ogg, 1.0, 0.0), (ogg, 0.4, 0.0),
            (mp3, 1.0, 0.9)]  # the last: declared 0.9 s long, as FMA's whole seconds can be
    for i, (src, share, extra) in enumerate(plan, 1):
        data = src.read_bytes()
        p = audio_path(cfg.fma.audio_dir, str(i))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data[: int(len(data) * share)])
        r = Record(source="fma", id=str(i), license="cc0")
        r.evidence["declared"] = {"seconds": round(lengths[src] + extra, 3), "field": "fma:track.duration"}
        recs.append(r)
    table = music_stage.music_table(rt.from_records(recs), cfg, lambda: None, "ck", False)
    got = {r.id: r for r in rt.to_records(table)}
    assert [got[str(i)].reason for i in range(1, 6)] == ["", "audio_truncated", "", "audio_truncated", ""]
    for i in ("2", "4"):
        ev = got[i].evidence["audio"]
        assert ev["declared_seconds"] > 100 and "declares" in ev["error"]
    cut = got["2"].evidence["audio"]
    assert cut.get("seconds") is None or cut["seconds"] < 0.5 * cut["declared_seconds"]


def test_the_declared_length_is_kept_at_ingest(demo_dir):
    from curation.sources import fma, freesound

    r = freesound.result_to_record({"id": 7, "name": "x", "license": "cc0", "username": "u", "duration": 12.5}, "p")
    assert r.evidence["declared"] == {"seconds": 12.5, "field": "freesound:duration"}
    for bad in ("", None, "n/a", -1, True):
        r = freesound.result_to_record({"id": 7, "name": "x", "license": "cc0", "username": "u", "duration": bad}, "p")
        assert "declared" not in r.evidence, bad
    tracks = {r.id: r for r in fma.read_tracks(demo_dir / "fma_metadata" / "tracks.csv")}
    declared = [r.evidence["declared"] for r in tracks.values() if "declared" in r.evidence]
    assert declared and all(d["field"] == "fma:track.duration" and d["seconds"] > 0 for d in declared)
    assert fma._declared_seconds("3:05") == 185.0 and fma._declared_seconds("168") == 168.0


def test_the_demo_publishes_what_was_recorded(demo_run):
    """The demo's manifest, attribution, review queue, shards and release.json, digest for
    digest, as recorded in tests/data/demo_digests.json (tests/demo_digests.py: what is taken
    out as differing from one demo to the next). Moving code changes none of them."""
    from tests.demo_digests import RECORDED, demo_digests

    assert demo_digests(demo_run["root"]) == json.loads(RECORDED.read_text())

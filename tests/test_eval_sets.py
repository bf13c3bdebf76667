"""Evaluation-set lists: the real published files (../shared/real/eval), lists written here by
the csv and json modules in each set's own layout and quirks, damaged lists, and the stage."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from curation.dedup.eval_lists import EvalListError, read_eval_list

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real" / "eval"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real evaluation-set files not at {REAL}")


@needs_real
@pytest.mark.parametrize("path, fmt, distinct, not_found", [
    ("esc50/esc50.csv", "esc50", 1524, 0),
    ("urbansound8k/UrbanSound8K.csv", "urbansound8k", 1297, 0),
    ("clotho/clotho_metadata_evaluation.csv", "clotho", 1040, 5),
    ("clotho/clotho_metadata_development.csv", "clotho", 2889, 4),
    ("dcase2025_task6/dcase2025_task6_excluded_freesound_ids.csv", "dcase_task6", 3079, 1),
    ("wavcaps_blacklist/blacklist_exclude_all_ac.json", "wavcaps", 5904, 19),
    ("wavcaps_blacklist/blacklist_exclude_test_ac.json", "wavcaps", 2077, 11),
    ("wavcaps_blacklist/blacklist_exclude_ub8k_esc50_vggsound.json", "wavcaps", 2219, 0),
    ("fsd50k/FSD50K.ground_truth.eval.head-877-lines.csv", "fsd50k", 876, 0),
    ("fsd50k/FSD50K.ground_truth.dev.head-116-lines.csv", "fsd50k", 115, 0),
    ("fsdkaggle2018/train_post_competition.csv", "fsdkaggle2018", 9473, 0),
    ("fsdkaggle2018/test_post_competition.csv", "fsdkaggle2018", 9400, 0),
])
def test_the_real_lists_read_as_their_readme_counts_them(path, fmt, distinct, not_found):
    lst = read_eval_list(REAL / path)
    assert (lst.format, len(lst.ids), lst.not_found) == (fmt, distinct, not_found)
    assert {s for s, _ in lst.ids} == {"freesound"} and Path(path).name in lst.name


@needs_real
def test_the_real_lists_agree_where_their_readme_says_they_overlap():
    ids = lambda p: {i for _, i in read_eval_list(REAL / p).ids}  # noqa: E731
    clotho_eval = ids("clotho/clotho_metadata_evaluation.csv")
    clotho_dev = ids("clotho/clotho_metadata_development.csv")
    assert clotho_eval <= ids("dcase2025_task6/dcase2025_task6_excluded_freesound_ids.csv")
    assert not clotho_dev & ids("dcase2025_task6/dcase2025_task6_excluded_freesound_ids.csv")
    assert clotho_eval | clotho_dev <= ids("wavcaps_blacklist/blacklist_exclude_all_ac.json")
    assert len(ids("esc50/esc50.csv") & ids("urbansound8k/UrbanSound8K.csv")) == 94
    with open(REAL / "esc50/esc50.csv", newline="") as f:  # the id is also the filename's second field
        assert all(r["filename"].split("-")[1] == r["src_file"] for r in csv.DictReader(f))


def _write_csv(path: Path, header: list[str], rows: list[list], final_newline: bool = True) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    if not final_newline:
        path.write_bytes(path.read_bytes().rstrip(b"\n"))
    return path


def test_each_layout_written_here_with_its_quirks(tmp_path):
    """Lists made with the csv and json modules, as each set lays its file out."""
    made = {
        "esc50": _write_csv(tmp_path / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
                            [["1-100038-A-14.wav", 1, 14, "chirping_birds", "False", "100038", "A"],
                             ["1-100038-B-14.wav", 1, 14, "chirping_birds", "True", "100038", "B"],
                             ["2-7-A-1.wav", 2, 1, "rooster", "False", "7", "A"]]),
        "urbansound8k": _write_csv(tmp_path / "UrbanSound8K.csv",
                                   ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"],
                                   [["100032-3-0-0.wav", "100032", "0.0", "0.317551", 1, 5, 3, "dog_bark"],
                                    ["100263-2-0-117.wav", "100263", "58.5", "62.5", 2, 5, 2, "children_playing"]]),
        "clotho": _write_csv(tmp_path / "clotho_metadata_evaluation.csv",
                             ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license"],
                             [["cleaning window, glass squeak.wav", "glass;squeak", "41", "https://freesound.org/people/a/sounds/41",
                               "[139264, 1293089]", "a", "http://creativecommons.org/publicdomain/zero/1.0/"],
                              ["Santa Motor.wav", "motor", "Not found", "", "", "b", ""]]),
        "fsd50k": _write_csv(tmp_path / "eval.csv", ["fname", "labels", "mids"],
                             [["37199", "Glass", "/m/039jq"], ["406849", "Coin_(dropping),Glass", "/m/0242l,/m/039jq"]]),
        "dcase_task6": _write_csv(tmp_path / "dcase2025_task6_excluded_freesound_ids.csv", ["sound_id"],
                                  [["9"], ["Not found"], ["12"]], final_newline=False),
        "fsdkaggle2018": _write_csv(tmp_path / "test_post_competition.csv",
                                    ["fname", "label", "usage", "freesound_id", "license"],
                                    [["00044347.wav", "Hi-hat", "Public", "28739", "Attribution"],
                                     ["0004ad66.wav", "None", "Ignored", "1123", "Creative Commons 0"]]),
        "plain": _write_csv(tmp_path / "mine.csv", ["source", "id"], [["freesound", "5"], ["fma", "2"]]),
    }
    (tmp_path / "blacklist.json").write_text(json.dumps({"AudioSet": ["Yr1nicOVtvkQ.wav"],
                                                         "FreeSound": ["117790", "117790", "Not found", "3"]}, indent=4))
    made["wavcaps"] = tmp_path / "blacklist.json"
    want = {"esc50": {"100038", "7"}, "urbansound8k": {"100032", "100263"}, "clotho": {"41"},
            "fsd50k": {"37199", "406849"}, "dcase_task6": {"9", "12"}, "fsdkaggle2018": {"28739", "1123"},
            "wavcaps": {"117790", "3"}}
    for fmt, path in made.items():
        lst = read_eval_list(path)
        assert lst.format == fmt, path
        if fmt == "plain":
            assert lst.ids == {("freesound", "5"), ("fma", "2")}
        else:
            assert lst.ids == {("freesound", i) for i in want[fmt]}, fmt
    assert read_eval_list(made["clotho"]).not_found == 1 and read_eval_list(made["wavcaps"]).not_found == 1


@pytest.mark.parametrize("name, content, message", [
    ("gone.csv", None, "does not exist"),
    ("empty.csv", b"", "is empty"),
    ("bin.csv", b"sound_id\n\x00\x01\x02", "NUL bytes"),
    ("latin1.csv", "sound_id\n12\n\xe9t\xe9\n".encode("latin-1"), "not UTF-8"),
    ("other.csv", b"name,length\nx,3\n", "not a list this pipeline reads (its header has name, length)"),
    ("bad_id.csv", b"fname,labels,mids\n37199,Glass,/m/039jq\nabc,Glass,/m/039jq\n", "line 3 (fname): 'abc' is not a Freesound id"),
    ("bad_source.csv", b"source,id\nyoutube,5\n", "source 'youtube' is not one of freesound, fma"),
    ("only_missing.csv", b"sound_id\nNot found\n", "names no sound: 1 entries, 1 of them 'Not found'"),
    ("list.json", b'["1", "2"]', "must be a WavCaps blacklist"),
    ("broken.json", b'{"FreeSound": ["1", ', "not valid JSON"),
    ("float.json", b'{"FreeSound": ["1", 2.5]}', "FreeSound[1] is 2.5"),
])
def test_a_list_that_cannot_be_read_with_certainty_says_why(tmp_path, name, content, message):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(EvalListError) as e:
        read_eval_list(p)
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_the_stage_excludes_what_a_list_names_and_only_pending_records(tmp_path):
    from curation.config import Config
    from curation.dedup.stage import EVAL_SETS
    from curation.records import Record
    from tests.stage_run import run_stage

    a = _write_csv(tmp_path / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
                   [["1-11-A-1.wav", 1, 1, "x", "False", "11", "A"], ["1-12-A-1.wav", 1, 1, "x", "False", "12", "A"]])
    b = _write_csv(tmp_path / "mine.csv", ["source", "id"], [["freesound", "11"], ["fma", "13"]])
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.dedup.eval_lists = [a, b]
    recs = [Record("freesound", "11"), Record("freesound", "12", status="excluded", reason="license_not_allowed"),
            Record("fma", "13"), Record("fma", "11"), Record("freesound", "14")]
    out, counts = run_stage(EVAL_SETS, recs, cfg, tmp_path / "w")
    got = {(r.source, r.id): (r.status, r.reason, r.evidence.get("eval_set")) for r in out}
    assert got[("freesound", "11")] == ("excluded", "eval_set", {"lists": ["ESC-50 (esc50.csv)", "list (mine.csv)"]})
    assert got[("freesound", "12")][:2] == ("excluded", "license_not_allowed")  # decided before: kept as it was
    assert got[("fma", "13")] == ("excluded", "eval_set", {"lists": ["list (mine.csv)"]})
    assert got[("fma", "11")][:2] == got[("freesound", "14")][:2] == ("pending", "")  # the source counts
    assert counts == {"eval_set": 2}
    assert EVAL_SETS.explain({}, {"eval_set": got[("fma", "13")][2]}) == ["  evaluation sets: listed in list (mine.csv)"]
    # a list that changes keys the stage's marker again, and is read again
    key = EVAL_SETS.key(cfg, None)
    _write_csv(b, ["source", "id"], [["freesound", "14"]])
    assert EVAL_SETS.key(cfg, None) != key
    out, counts = run_stage(EVAL_SETS, recs, cfg, tmp_path / "w")
    assert {(r.source, r.id) for r in out if r.reason == "eval_set"} == {("freesound", "11"), ("freesound", "14")}


def test_a_run_with_a_damaged_list_stops_before_any_stage(tmp_path, demo_dir):
    """`curate run` names the list and the line, exits 1 as for any damaged input table, and no
    stage ran (no work area)."""
    import shutil

    from tests.conftest import curate

    shutil.copytree(demo_dir, tmp_path / "demo", ignore=shutil.ignore_patterns("out*"))
    (tmp_path / "demo" / "clotho.csv").write_text("file_name,keywords,sound_id,sound_link\na.wav,x,12,\nb.wav,y,n/a,\n")
    cfg = tmp_path / "demo" / "curate.toml"
    cfg.write_text(cfg.read_text() + '\n[dedup]\neval_lists = ["clotho.csv"]\n')
    res = curate("run", str(cfg), check=False)
    assert res.returncode == 1, res.stderr
    assert "clotho.csv line 3 (sound_id): 'n/a' is not a Freesound id" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and len(res.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "demo" / "out" / "work" / "stages").exists()
    from curation.config import load_config
    from curation.inputs import InputError, check_inputs

    cfg.write_text(cfg.read_text().replace('"clotho.csv"', '"nothere.csv"'))
    with pytest.raises(InputError, match=r"nothere.csv does not exist \(dedup.eval_lists\)"):
        check_inputs(load_config(cfg))  # what `curate run` and a scheduled run check first


def test_the_config_takes_a_list_of_paths_relative_to_it(tmp_path, demo_dir):
    import shutil

    from curation.config import ConfigError, load_config

    shutil.copytree(demo_dir, tmp_path / "demo", ignore=shutil.ignore_patterns("out*"))
    path = tmp_path / "demo" / "curate.toml"
    base = path.read_text() + "\n[dedup]\n"
    path.write_text(base + 'eval_lists = ["lists/esc50.csv", "/abs/x.json"]\n')
    cfg = load_config(path, check_inputs=False)
    assert cfg.dedup.eval_lists == [tmp_path / "demo" / "lists" / "esc50.csv", Path("/abs/x.json")]
    for bad, says in [('eval_lists = "esc50.csv"', "must be a list of paths"), ("eval_lists = [3]", "dedup.eval_lists[0]"),
                      ('lists = ["a.csv"]', "unknown config key 'dedup.lists'")]:
        path.write_text(base + bad + "\n")
        with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
            load_config(path, check_inputs=False)

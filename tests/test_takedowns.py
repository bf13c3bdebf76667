import pyarrow as pa
import pytest
import yaml

from curation import record_table as rt
from curation.records import Record
from curation.release import takedowns
from curation.release.card import dataset_card, hub_license, size_category

HEADER = "source,id,reason,requested_at\n"


@pytest.mark.parametrize("row, message", [
    ("spotify,1,x,2026-01-01", "line 2: source 'spotify' is not one of fma, freesound"),
    ("freesound,12a,x,2026-01-01", "line 2: id '12a' is not a record id"),
    ("freesound,12,x,last week", "line 2: requested_at 'last week' is not an ISO 8601 date or time"),
    ("freesound,12,x", "line 2: wrong number of fields"),
    ("freesound,12,x,2026-01-01,extra", "line 2: wrong number of fields"),
])
def test_a_takedown_list_that_cannot_be_read_stops_with_the_line(tmp_path, row, message):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + row + "\n")
    with pytest.raises(takedowns.TakedownError, match=message.replace("(", r"\(").replace(")", r"\)")):
        takedowns.read(p)


def test_header_and_encoding_are_checked(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("source,id,why\nfreesound,1,x\n")
    with pytest.raises(takedowns.TakedownError, match="missing reason, requested_at"):
        takedowns.read(p)
    p.write_bytes(HEADER.encode() + b"freesound,1,\xff,2026-01-01\n")
    with pytest.raises(takedowns.TakedownError, match="not UTF-8"):
        takedowns.read(p)
    p.write_text("\ufeff" + HEADER + 'fma,7,"a, quoted\nreason",2026-01-01\n')  # BOM, a quoted newline
    assert takedowns.read(p) == [takedowns.Takedown("fma", "7", "a, quoted\nreason", "2026-01-01")]


def test_takedowns_stay_in_force_once_listed(tmp_path):
    out = tmp_path / "out"
    first = tmp_path / "first.csv"
    first.write_text(HEADER + "freesound,5,uploader,2026-02-01\nfreesound,5,again,2026-03-01\n")
    got = takedowns.load(out, first)
    assert got == {("freesound", "5"): takedowns.Takedown("freesound", "5", "uploader", "2026-02-01")}
    # the configured file replaced by another: both in force; no file at all: still in force
    second = tmp_path / "second.csv"
    second.write_text(HEADER + "fma,9,label,2026-04-01T12:00:00Z\n")
    assert set(takedowns.load(out, second)) == {("freesound", "5"), ("fma", "9")}
    assert set(takedowns.load(out, None)) == {("freesound", "5"), ("fma", "9")}
    assert takedowns.ledger_path(out).read_text().splitlines() == [
        "source,id,reason,requested_at", "fma,9,label,2026-04-01T12:00:00Z", "freesound,5,uploader,2026-02-01"]


def test_apply_excludes_whatever_was_decided_and_keeps_it_as_evidence():
    recs = [Record(source="freesound", id=str(i), title=f"t{i}") for i in range(1, 5)]
    recs[0].status = "pending"
    recs[1].status = "review"
    recs[1].reason = "copyright_match_review"
    recs[2].status, recs[2].reason = "excluded", "license_not_allowed"
    recs[3].status = "pending"
    table = rt.from_records(recs)
    down = {("freesound", str(i)): takedowns.Takedown("freesound", str(i), "asked", "2026-01-01") for i in (1, 2, 3)}
    down[("fma", "1")] = takedowns.Takedown("fma", "1", "not here", "2026-01-01")
    out, n = takedowns.apply(table, down)
    assert n == 3
    got = {r.id: r for r in rt.to_records(out)}
    assert [(got[i].status, got[i].reason) for i in "1234"] == [
        ("excluded", "takedown"), ("excluded", "takedown"), ("excluded", "takedown"), ("pending", "")]
    assert got["1"].evidence["takedown"] == {"source": "freesound", "id": "1", "reason": "asked",
                                            "requested_at": "2026-01-01", "status_before": "included",
                                            "reason_before": ""}
    assert got["2"].evidence["takedown"]["reason_before"] == "copyright_match_review"
    assert takedowns.apply(table, {}) == (table, 0)
    assert takedowns.apply(pa.Table.from_pylist([], schema=table.schema), down)[1] == 0


def _info(**over):
    info = {"name": "Birds & more", "version": "v4", "parent": "v3",
            "records": {"total": 12_345, "by_source": {"freesound": 12_000, "fma": 345}},
            "licenses": {"freesound": {"cc0": 10_000, "cc-by": 1_500, "sampling+": 500}, "fma": {"cc-by": 345}},
            "license_deeds": {"https://creativecommons.org/publicdomain/zero/1.0/": 10_000,
                              "https://creativecommons.org/licenses/by/4.0/": 1_000,
                              "https://creativecommons.org/licenses/by/3.0/us/": 845,
                              "https://creativecommons.org/licenses/sampling+/1.0/": 500},
            "seconds": {"total": 7200.0, "hours": 2.0, "by_source": {"freesound": 3600.0, "fma": 3600.0}},
            "shards": {"count": 13}, "music_model": {"sha256": "ab" * 32, "random_init": False, "published": True},
            "config_sha256": "cd" * 32, "release_declares": {"open_source_model": True, "noncommercial": False},
            "takedowns": [{"source": "fma", "id": "1"}]}
    info.update(over)
    return info


def test_dataset_card_header_is_the_hub_format():
    card = dataset_card(_info())
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == ["cc-by-3.0", "cc-by-4.0", "cc0-1.0", "other"]
    assert header["license_name"] == "cc-sampling-plus-1.0"
    assert header["size_categories"] == ["10K<n<100K"] and header["task_categories"] == ["text-to-audio"]
    assert header["pretty_name"] == "Birds & more (v4)"
    body = card.split("---\n", 2)[2]
    assert "12345 recordings, 2.0 hours, in 13 WebDataset shards" in body and "Parent version: v3." in body
    assert "| fma | 345 | 3600.0 | cc-by 345 |" in body
    assert "ab" * 32 in body and "RANDOMLY" not in body and "Takedowns applied: 1" in body
    random = dataset_card(_info(music_model={"sha256": "ee" * 32, "random_init": True, "published": False}))
    assert "RANDOMLY INITIALISED" in random


def test_hub_license_names():
    assert hub_license("cc0", "https://creativecommons.org/publicdomain/zero/1.0/") == "cc0-1.0"
    assert hub_license("cc-by", "https://creativecommons.org/licenses/by/2.5/") == "cc-by-2.5"
    assert hub_license("sampling+", "https://creativecommons.org/licenses/sampling+/1.0/") == "other"
    assert [size_category(n) for n in (0, 999, 1000, 486_492, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "1M<n<10M"]

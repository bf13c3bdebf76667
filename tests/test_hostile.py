"""Hostile metadata on its way to people (spreadsheet formulas, unsafe links, control and
bidi characters, huge and invalid text), and one run per output folder."""
import csv
import json
import os
import signal
import subprocess
import sys
import tarfile


import pytest

from curation.storage import read_pandas
from curation import record_table as rt
from curation import safe_text
from curation.config import Config
from curation.copyright.review_page import write_review_page
from curation.licenses.stage import licenses_table
from curation.records import Record
from curation.release.writers import write_attribution
from curation.run_lock import RunLocked, lock_path, run_lock
from curation.sources.freesound import result_to_record
from tests.conftest import cli_env, curate
from tests.fake_freesound import TOKEN, FakeFreesound, sounds_for
from tests.test_flow_live import CONFIG, ogg

NASTY = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "'=x", "''", "'", "'a",
         "=", "plain", "", "a=b", "\u202eevil\u202c", "'\t"]


@pytest.mark.parametrize("value", NASTY)
def test_cells_are_spreadsheet_safe_and_exact_for_programs(value):
    c = safe_text.cell(value)
    assert not (c[:1] and c[0] in "=+-@\t\r")  # nothing a spreadsheet runs
    assert safe_text.uncell(c) == value  # and the exact value back


def test_only_http_links():
    assert safe_text.safe_href("https://freesound.org/people/a/sounds/1/") == "https://freesound.org/people/a/sounds/1/"
    assert safe_text.safe_href("HTTP://example.org/x?y=1") is not None
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "//evil.org/x",
                "https://a.org/x\"onmouseover=\"alert(1)", "https://a.org/ x", "vbscript:x", "", None, "https://a\n.org"):
        assert safe_text.safe_href(bad) is None, bad


def test_text_is_cleaned_and_said():
    text, done = safe_text.clean_fields({
        "title": "bad \ud800 unicode \x07 bell \u202eoverride\u202c", "author": "ok",
        "description": "d" * 100_000, "tags": ["t\x00ag", "x" * 300] + ["n"] * 250})
    assert text["title"] == "bad \ufffd unicode  bell override" and text["author"] == "ok"
    assert len(text["description"]) == safe_text.LIMITS["description"]
    assert text["tags"][0] == "tag" and len(text["tags"][1]) == safe_text.TAG and len(text["tags"]) == safe_text.TAGS
    assert set(done) == {"title", "description", "tags"}
    assert done["title"] == ["invalid unicode replaced", "control or bidi characters removed"]
    assert "52 of 252 values dropped" in done["tags"]
    json.dumps(text, ensure_ascii=False).encode("utf-8")  # encodes: no lone surrogate left


def test_unsafe_work_urls_are_a_reason(tmp_path):
    results = [{"id": i, "name": f"s{i}", "username": "u", "url": url, "license": "http://creativecommons.org/publicdomain/zero/1.0/",
                "gen_ai_preference": "no-additional-preferences"}
               for i, url in enumerate(["javascript:alert(1)", "data:text/html,<script>x</script>",
                                        "https://freesound.org/people/u/sounds/3/", "https://x.org/a b"], start=1)]
    recs = [result_to_record(r, "test") for r in results]
    t = licenses_table(rt.from_records(recs), Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out"))
    got = {r.id: (r.status, r.reason) for r in rt.to_records(t)}
    assert got == {"1": ("excluded", "url_unsafe"), "2": ("excluded", "url_unsafe"), "3": ("pending", ""),
                   "4": ("pending", "")}
    ev = {r.id: r.evidence for r in rt.to_records(t)}
    assert "javascript:alert(1)" in ev["1"]["detail"]
    # an http(s) URL with a raw space is the same URL percent-encoded (the raw one in the evidence)
    rec4 = next(r for r in rt.to_records(t) if r.id == "4")
    assert rec4.url == "https://x.org/a%20b" and ev["4"]["url_raw"] == "https://x.org/a b"


def test_attribution_and_review_page_with_hostile_text(tmp_path):
    r = Record(source="freesound", id="7", title="=cmd|' /C calc'!A0", author="@evil", url="https://freesound.org/s/7/",
               license="cc0", license_raw="CC0")
    write_attribution(tmp_path / "a.csv", [r])
    row = next(csv.DictReader(open(tmp_path / "a.csv", newline="")))
    assert row["title"] == "'=cmd|' /C calc'!A0" and row["author"] == "'@evil"
    assert safe_text.uncell(row["title"]) == r.title
    queue = [{"source": "freesound", "id": "8", "title": "<script>alert(1)</script>", "author": "a",
              "url": "javascript:alert(document.cookie)", "reason": "copyright_audio_review", "evidence": {}}]
    write_review_page(tmp_path / "index.html", queue, {})
    page = (tmp_path / "index.html").read_text()
    assert "href='javascript" not in page and "<script>alert(1)" not in page
    assert "javascript:alert(document.cookie)" in page  # shown, as text


def test_a_second_run_on_the_same_output_refuses(tmp_path, demo_dir):
    cfg = demo_dir / f"locked-{tmp_path.name}.toml"
    cfg.write_text((demo_dir / "curate.toml").read_text()
                   .replace('output_dir = "out"', f'output_dir = "{(tmp_path / "out").as_posix()}"'))
    with run_lock(tmp_path / "out"):
        with pytest.raises(RunLocked):
            with run_lock(tmp_path / "out"):
                pass
        p = curate("run", str(cfg), env=cli_env(tmp_path), check=False)
        assert p.returncode == 1 and "another run is working on" in p.stderr and f"pid {os.getpid()}" in p.stderr
        assert "Traceback" not in p.stderr


def test_a_killed_run_does_not_leave_the_lock_stuck(tmp_path):
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from curation.run_lock import run_lock\n"
            "with run_lock(%r):\n    print('held', flush=True); time.sleep(60)\n") % (os.getcwd(), str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
        with run_lock(tmp_path / "out"):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(tmp_path / "out").exists()  # the file stays ...
    with run_lock(tmp_path / "out"):  # ... but nothing holds it
        pass


@pytest.mark.slow
def test_hostile_metadata_through_the_whole_flow(tmp_path, demo_dir):
    """Every record kept or excluded with a reason; CSV, shard JSON, review page and report all
    readable; the release verifies."""
    with FakeFreesound([], {}) as srv:
        srv.sounds = sounds_for(srv.url, range(41, 48))
        s = {x["id"]: x for x in srv.sounds}
        s[41]["name"] = "=HYPERLINK(\"http://evil.example\",\"click\")"
        s[41]["username"] = "+cmd"
        s[42]["name"] = "bidi \u202egnp.exe\u202c and bell \x07"
        s[43]["description"] = "<b>huge</b> " + "x" * 100_000
        s[44]["name"] = "lone \ud800 surrogate"
        s[44]["tags"] = ["ok", "\ud83d", "\x00nul"]
        s[45]["url"] = "javascript:alert(document.domain)"
        s[46]["url"] = "data:text/html,<script>alert(1)</script>"
        s[47]["name"] = "@SUM(1+1)*cmd|' /C calc'!A0"
        srv.audio = {i: ogg(1.0, i) for i in range(41, 48)}
        cfg = tmp_path / "curate.toml"
        cfg.write_text(CONFIG.format(runner="local", url=srv.url, models=(demo_dir / "models").as_posix()))
        env = cli_env(tmp_path)
        env["FREESOUND_API_TOKEN"] = TOKEN
        curate("run", str(cfg), env=env)
    out = tmp_path / "out"
    df = read_pandas(out / "manifests" / "records.parquet").set_index("id")
    assert sorted(df.index) == [str(i) for i in range(41, 48)]
    assert df.loc["45", "reason"] == df.loc["46", "reason"] == "url_unsafe"
    assert set(df.loc[["41", "42", "43", "44", "47"], "status"]) == {"included"}
    assert df.loc["42", "title"] == "bidi gnp.exe and bell "
    assert df.loc["44", "title"] == "lone \ufffd surrogate"
    ev = {i: json.loads(df.loc[i, "evidence"]) for i in ("42", "43", "44")}
    assert ev["43"]["text_cleaned"]["description"] == ["cut from 100012 to 20000 characters"]
    assert "invalid unicode replaced" in ev["44"]["text_cleaned"]["tags"]

    with open(out / "release" / "freesound_attribution.csv", newline="", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["41", "42", "43", "44", "47"]
    assert rows["41"]["title"].startswith("'=") and rows["41"]["author"] == "'+cmd"
    assert rows["47"]["title"].startswith("'@")
    assert safe_text.uncell(rows["41"]["title"]) == df.loc["41", "title"]
    for tar in (out / "release" / "shards").glob("*.tar"):
        with tarfile.open(tar) as tf:
            for m in tf:
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read().decode("utf-8"))
                    assert "javascript:" not in meta["url"] and len(meta["text"]) < 1000
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page and "href=\"javascript" not in page
    v = curate("release", "verify", str(out / "releases" / "v1"), env=env)
    assert v.returncode == 0
    audit_csv = curate("audit", str(cfg), "reasons", "--csv", env=env).stdout
    assert "url_unsafe,2" in audit_csv.replace("\r", "")

"""The review workspace (`curate review serve`) driven in headless Chromium over the DevTools
protocol, on the demo's real run: the queue, a filter, an item, playing from a music span,
deciding by keyboard, a reload that shows the decision, a second reviewer on the same item, the
run that applies them, the audit's disagreements; no console errors. Also: the ledger under
two writers at once, a decision on changed evidence sent back, read-only and the token."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from curation.review import ledger
from curation.storage import read_pandas
from tests.conftest import cli_env, curate


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, demo_dir):
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(demo_dir, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out", "out*", "*.toml"))
    cfg = root / "curate.toml"
    cfg.write_text((demo_dir / "curate.toml").read_text().replace("[training]\nenabled = true",
                                                                   "[training]\nenabled = false"))
    env = cli_env(root, music_cache=True)
    curate("run", str(cfg), env=env)
    return {"cfg": cfg, "out": root / "out", "env": env}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, out, token: str = ""):
        import uvicorn

        from curation.review.server import make_app
        from curation.stages import REASONS

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(make_app(out, REASONS, token), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < end, "the workspace did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)


def _goto(page, url: str, errors: list) -> None:
    errors += page.errors()
    page.events.clear()
    page.call("Page.navigate", url=url)
    page.wait_for("Page.loadEventFired")


def _key(page, key: str, errors: list) -> None:
    """A key press as a reviewer makes it, and the page it leads to."""
    errors += page.errors()
    page.events.clear()
    page.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
    page.call("Input.dispatchKeyEvent", type="keyUp", key=key)
    page.wait_for("Page.loadEventFired", timeout=30)


def test_a_reviewer_works_through_the_queue_in_chromium(reviewed):
    from tests.browser import Chromium

    out = reviewed["out"]
    srv = Served(out)
    errors: list[str] = []
    try:
        with Chromium() as browser:
            page = browser.open(srv.url + "/")
            rows = page.evaluate("[...document.querySelectorAll('#queue tbody tr')].map(r => r.dataset.key)")
            assert sorted(rows) == ["fma:5", "freesound:1001"]
            assert "0 decided of 2" in page.evaluate("document.getElementById('progress').textContent")
            # filter by reason, through the form
            page.evaluate("document.querySelector('select[name=reason]').value = 'copyright_audio_review'")
            errors += page.errors()
            page.events.clear()
            page.evaluate("document.getElementById('filters').submit()")
            page.wait_for("Page.loadEventFired")
            assert page.evaluate("[...document.querySelectorAll('#queue tbody tr')].map(r => r.dataset.key)") == [
                "freesound:1001"]
            assert "1 item(s) match: copyright_audio_review 1" in page.evaluate(
                "document.getElementById('counts').textContent")
            # open the item
            href = page.evaluate("document.querySelector('#queue a').getAttribute('href')")
            _goto(page, srv.url + href, errors)
            assert "Warm synth loop" in page.evaluate("document.getElementById('title').textContent")
            assert page.evaluate("document.getElementById('reason').textContent").startswith("copyright_audio_review")
            page.evaluate("new Promise(r => { const i = document.getElementById('wave'); "
                          "if (i.complete) r(); else i.onload = r; })")
            assert page.evaluate("document.getElementById('wave').naturalWidth") > 300
            # the music span the music stage found, and a player that starts there
            spans = page.evaluate("[...document.querySelectorAll('[data-play-key]')].map(b => b.dataset.play)")
            assert spans == ["0.00"]
            page.evaluate("document.querySelector('[data-play-key=\"1\"]').click()")
            src = page.evaluate("document.getElementById('player').src")
            assert src.endswith("/item/freesound/1001/audio?start=0")
            got = page.evaluate("fetch(document.getElementById('player').src)"
                                ".then(r => r.arrayBuffer().then(b => [r.status, r.headers.get('content-type'), b.byteLength]))")
            assert got[0] == 200 and got[1] == "audio/mpeg" and got[2] > 10_000
            # read-only: no name, no decision
            assert page.evaluate("document.querySelector('[data-decide=clear]').disabled") is True
            page.call("Input.dispatchKeyEvent", type="keyDown", key="c", text="c")
            time.sleep(0.5)
            assert ledger.read(ledger.ledger_path(out)) == []
            # give a name, then decide by keyboard: the next waiting item (fma 5) opens
            for name, key in (("ann", "c"), ("bob", "r")):
                _goto(page, srv.url + "/reviewer", errors)
                errors += page.errors()
                page.events.clear()
                page.evaluate(f"document.getElementById('name').value = '{name}'; document.forms[0].submit()")
                page.wait_for("Page.loadEventFired")
                assert page.evaluate("document.getElementById('reviewer').textContent") == name
                _goto(page, srv.url + "/item/freesound/1001", errors)
                page.evaluate("document.getElementById('note').value = 'checked by ear'")
                _key(page, key, errors)
                assert page.evaluate("location.pathname") == "/item/fma/5"
                # reload: the decision is there, the history keeps the first
                _goto(page, srv.url + "/item/freesound/1001", errors)
                status = page.evaluate("document.getElementById('status').textContent")
                assert status == f"decided: {'clear' if key == 'c' else 'reject'} by {name}"
            hist = page.evaluate("[...document.querySelectorAll('#history tbody tr')].map(r => r.cells[1].textContent"
                                 " + ' ' + r.cells[2].textContent)")
            assert hist == ["ann clear", "bob reject"]
            _goto(page, srv.url + "/", errors)
            assert "1 decided of 2" in page.evaluate("document.getElementById('progress').textContent")
            errors += page.errors()
    finally:
        srv.close()
    assert errors == []
    rows = ledger.read(ledger.ledger_path(out))
    assert [(r["reviewer"], r["decision"], r["note"]) for r in rows] == [("ann", "clear", "checked by ear"),
                                                                         ("bob", "reject", "checked by ear")]
    # the run applies the latest; the audit shows that the two disagreed
    curate("run", str(reviewed["cfg"]), env=reviewed["env"])
    m = read_pandas(out / "manifests" / "records.parquet").set_index(["source", "id"])
    assert m.loc[("freesound", "1001"), "status"] == "excluded"
    assert m.loc[("freesound", "1001"), "reason"] == "copyright_rejected"
    assert m.loc[("freesound", "1001"), "review_reviewer"] == "bob"
    got = curate("audit", str(reviewed["cfg"]), "disagreements", "--json", env=reviewed["env"]).stdout
    dis = [json.loads(line) for line in got.splitlines()]
    assert [(d["reviewer"], d["decision"], d["stands"]) for d in dis] == [("ann", "clear", False), ("bob", "reject", True)]


def test_decisions_on_changed_evidence_go_back_to_the_queue(tmp_path):
    from curation.records import Record
    from curation.review.stage import apply_decisions, load_decisions
    from curation.stage import StageReport
    from curation.config import Config

    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    ev = {"method": "audio:fingerprint", "matches": [{"reference": "a.wav", "score": 40, "candidate_start": 3.0}]}
    ledger.append(ledger.ledger_path(cfg.output_dir), "freesound", "7", "clear", "ann", "", ledger.evidence_digest(ev))
    rep = StageReport("review")
    decisions = load_decisions(cfg, rep)
    same = Record("freesound", "7", status="review", reason="copyright_audio_match", evidence={"copyright": dict(ev)})
    changed = Record("freesound", "7", status="review", reason="copyright_audio_match",
                     evidence={"copyright": {**ev, "matches": [{"reference": "b.wav", "score": 90}]}})
    assert apply_decisions([same], decisions, rep) == [] and same.status == "pending"
    queue = apply_decisions([changed], decisions, rep)
    assert changed.status == "review" and len(queue) == 1
    assert "the evidence changed since ann decided clear" in queue[0]["stale"]
    assert rep.counts["stale_decision"] == 1


def test_the_ledger_under_many_writers_loses_nothing(tmp_path):
    path = tmp_path / "ledger.csv"

    def one(k: int):
        return ledger.append(path, "freesound", str(k % 7), ("clear", "reject", "skip")[k % 3], f"r{k % 4}",
                             f"note, with \"quotes\" {k}", "d")

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(400)))
    rows = ledger.read(path)
    assert len(rows) == 400 and sorted(int(r["note"].split()[-1]) for r in rows) == list(range(400))
    with open(path, "ab") as fh:  # a line torn by a crash
        fh.write(b"freesound,9,clear,ann")
    assert len(ledger.read(path)) == 400


def test_read_only_without_a_name_and_a_token_beyond_localhost(reviewed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reviewed["out"] / "review", out / "review")
    srv = Served(out, token="s3cret-token")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.url + "/", timeout=10)
        assert e.value.code == 401 and b"s3cret" not in e.value.read()
        req = urllib.request.Request(srv.url + "/", headers={"Authorization": "Bearer s3cret-token"})
        page = urllib.request.urlopen(req, timeout=10).read().decode()
        assert "read-only" in page and "s3cret" not in page
        req = urllib.request.Request(srv.url + "/api/decide", method="POST", data=b'{"source":"fma","id":"5","decision":"clear"}',
                                     headers={"Authorization": "Bearer s3cret-token", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 403
    finally:
        srv.close()
    # the CLI refuses to bind beyond this machine without a token
    env = dict(reviewed["env"])
    env.pop("CURATE_REVIEW_TOKEN", None)
    p = curate("review", "serve", str(reviewed["cfg"]), "--host", "0.0.0.0", env=env, check=False)
    assert p.returncode == 1 and "CURATE_REVIEW_TOKEN" in p.stderr and "Traceback" not in p.stderr


def test_metadata_is_escaped_and_links_are_http_only(tmp_path):
    from curation.review.server import Workspace, item_view, queue_view
    from curation.review.workspace import write_queue_table

    hostile = {"source": "freesound", "id": "3", "title": "<script>alert(1)</script>", "author": "x' onmouseover='y",
               "url": "javascript:alert(1)", "reason": "copyright_match_review", "license": "cc-by",
               "evidence": {"candidates": [{"track_name": "<img src=x onerror=alert(2)>", "artists": "a", "title_score": 99}]},
               "music": {"music_spans": [[1.0, 2.0]]}, "seconds": 3.0}
    write_queue_table(tmp_path, [hostile])
    ws = Workspace(tmp_path)
    for html_text in (queue_view(ws, {}, "ann"), item_view(ws, ("freesound", "3"), {}, "ann")):
        assert "<script>alert" not in html_text and "<img src=x" not in html_text
        assert "href='javascript:" not in html_text and "onmouseover='y" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in item_view(ws, ("freesound", "3"), {}, "ann")


def test_a_matched_reference_passage_plays_beside_the_recording(tmp_path):
    import soundfile as sf
    from starlette.testclient import TestClient

    from curation import synth
    from curation.review.server import make_app
    from curation.review.workspace import write_queue_table

    refs = tmp_path / "refs"
    (refs / "album").mkdir(parents=True)
    sf.write(str(refs / "album" / "song.wav"), synth.music(20.0, seed=3), 44100)
    rec = tmp_path / "rec.wav"
    sf.write(str(rec), synth.music(20.0, seed=3), 44100)
    (tmp_path / "secret.wav").write_bytes((refs / "album" / "song.wav").read_bytes())
    ev = {"method": "audio:fingerprint", "matches": [
        {"reference": "album/song.wav", "candidate_start": 4.0, "reference_start": 6.0, "score": 80, "offset_seconds": -2.0},
        {"reference": "../secret.wav", "candidate_start": 1.0, "reference_start": 1.0, "score": 30, "offset_seconds": 0.0}]}
    write_queue_table(tmp_path / "out", [{"source": "freesound", "id": "4", "title": "t", "author": "a", "url": "",
                                          "reason": "copyright_audio_match", "evidence": ev, "audio_path": str(rec),
                                          "seconds": 20.0, "music": {"music_spans": [[0.0, 20.0]]}}])
    c = TestClient(make_app(tmp_path / "out", {}, "", refs))
    page = c.get("/item/freesound/4").text
    assert "data-src='/item/freesound/4/reference/0'" in page and "reference album/song.wav at 6.0 s" in page
    assert "reference/1" not in page  # outside the references folder: never served
    got = c.get("/item/freesound/4/reference/0?start=5")
    assert got.status_code == 200 and got.headers["content-type"] == "audio/mpeg" and len(got.content) > 10_000
    assert c.get("/item/freesound/4/reference/1").status_code == 404
    assert c.get("/item/freesound/4/reference/7").status_code == 404
    # without --references, no reference player
    assert "reference/0" not in TestClient(make_app(tmp_path / "out", {})).get("/item/freesound/4").text


def test_explain_and_export_say_it_in_words(reviewed):
    cfg, env = str(reviewed["cfg"]), reviewed["env"]
    unreadable = curate("explain", cfg, "freesound", "1008", env=env).stdout
    assert "audio: its bytes are not audio that FFmpeg or libsndfile can read" in unreadable
    assert "audio: the decoder said:" in unreadable  # the raw message kept, as detail
    music = curate("explain", cfg, "freesound", "1001", env=env).stdout
    assert "music: music:" not in music and "music: counts as music: " in music
    waiting = curate("explain", cfg, "fma", "5", env=env).stdout
    assert "waiting for a reviewer: `curate review serve CONFIG`" in waiting
    page = curate("review", "export", cfg, env=env).stdout.strip()
    text = open(page, encoding="utf-8").read()
    assert "<th>catalogue title</th>" in text and "Lonely" in text

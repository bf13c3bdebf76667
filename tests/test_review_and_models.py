import hashlib
import re
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curation.config import Config
from curation.music.models import CHECKPOINT_NAME, FetchError, fetch_models, is_published_checkpoint
from tests.stage_run import run_review
from curation.records import Record
from curation.copyright.review import DecisionsError, read_decisions


def waiting(source, rid):
    r = Record(source=source, id=rid)
    r.status, r.reason = "review", "copyright_match_review"
    r.evidence["copyright"] = {"flagged": True}
    return r


def test_decisions_apply_and_persist_in_the_ledger(tmp_path):
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("source,id,decision,reviewer,note\nfma,1,clear,ann,ok\nfma,2,reject,bob,\"same, song\"\n"
                         "fma,3,maybe,x,\n")
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.copyright.review_decisions = decisions
    recs = [waiting("fma", "1"), waiting("fma", "2"), waiting("fma", "3")]
    recs, queue, rep = run_review(recs, cfg, tmp_path)
    assert [r.status for r in recs] == ["included", "excluded", "review"]  # cleared: nothing else holds it
    assert recs[1].reason == "copyright_rejected"
    rv = recs[0].evidence["review"]
    assert {k: rv[k] for k in ("decision", "reviewer", "note", "cleared_reason")} == {
        "decision": "clear", "reviewer": "ann", "note": "ok", "cleared_reason": "copyright_match_review"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rv["decided_at"])  # the file's time
    assert [q["id"] for q in queue] == ["3"]
    assert any("line 4" in n for n in rep.notes)  # the unusable row is reported, not applied
    # the file goes away and the queue changes: the ledger keeps every decision, and says so
    cfg.copyright.review_decisions = None
    recs = [waiting("fma", "1"), waiting("fma", "4")]
    recs, queue, rep = run_review(recs, cfg, tmp_path)
    assert [r.status for r in recs] == ["included", "review"]
    assert recs[0].evidence["review"]["decided_at"] == rv["decided_at"]
    assert any("fma 2" in n for n in rep.notes)
    # a later file with its own times: a changed decision wins, with its time
    decisions.write_text("source,id,decision,reviewer,note,decided_at\n"
                         "fma,1,reject,cy,on second thought,2026-11-20T10:00:00Z\n")
    cfg.copyright.review_decisions = decisions
    recs = [waiting("fma", "1"), waiting("fma", "2")]
    recs, _, _ = run_review(recs, cfg, tmp_path)
    assert recs[0].status == "excluded" and recs[0].evidence["review"]["decided_at"] == "2026-11-20T10:00:00Z"
    assert recs[1].status == "excluded"  # still rejected from the ledger


def test_review_touches_only_what_it_decides_and_a_takedown_comes_first(tmp_path):
    """Rows neither named by a decision nor waiting for review go through untouched (their
    evidence byte for byte; pending ones become included); a record taken down is excluded
    before review: it leaves the queue, and a reviewer's clear does not bring it back."""
    from curation import record_table as rt

    decisions = tmp_path / "decisions.csv"
    decisions.write_text("source,id,decision,reviewer,note\nfma,1,clear,ann,\nfma,7,clear,ann,\n")
    takedowns = tmp_path / "takedowns.csv"
    takedowns.write_text("source,id,reason,requested_at\nfma,2,uploader asked,2026-11-20T10:00:00Z\n"
                         "fma,7,uploader asked,2026-11-20T10:00:00Z\n")
    cfg = Config(path=tmp_path / "c.toml", output_dir=tmp_path / "out")
    cfg.copyright.review_decisions = decisions
    cfg.release.takedowns = takedowns
    untouched = Record(source="fma", id="5", title="Ünïcode — title")
    untouched.evidence["music"] = {"is_music": False, "music_seconds": 0.1 + 0.2, "top": [["Speech", 0.91]]}
    gone = Record(source="fma", id="6")
    gone.exclude("license_not_allowed", license={"raw": "CC BY-NC"})
    recs = [waiting("fma", "1"), waiting("fma", "2"), waiting("fma", "3"), untouched, gone, waiting("fma", "7")]
    before = rt.from_records(recs)
    out, queue, rep = run_review(recs, cfg, tmp_path)
    by_id = {r.id: r for r in out}
    assert (by_id["1"].status, by_id["1"].reason) == ("included", "")
    # taken down while waiting: out, and not in the queue; taken down and cleared: the clear does not undo it
    assert (by_id["2"].status, by_id["2"].reason) == ("excluded", "takedown")
    assert (by_id["7"].status, by_id["7"].reason) == ("excluded", "takedown")
    assert (by_id["3"].status, by_id["3"].reason) == ("review", "copyright_match_review")
    assert [q["id"] for q in queue] == ["3"] and rep.counts["takedown"] == 2
    assert (by_id["5"].status, by_id["6"].status, by_id["6"].reason) == ("included", "excluded", "license_not_allowed")
    after = rt.from_records(out)
    for col in [c for c in before.column_names if c.startswith("ev_")]:
        for i in (3, 4):  # the untouched rows: evidence as it was, byte for byte
            assert after.column(col)[i].as_py() == before.column(col)[i].as_py(), col


def test_review_page_embeds_evidence_audio_and_a_form(tmp_path):
    import soundfile as sf

    from curation import synth
    from curation.copyright.review_page import write_review_page

    wav = tmp_path / "a.wav"
    sf.write(str(wav), synth.music(3.0, seed=1), 44100)
    queue = [
        {"source": "fma", "id": "5", "title": "Lonely <b>", "author": "X", "url": "https://e.org/5",
         "reason": "copyright_match_review",
         "evidence": {"candidates": [{"track_name": "Lonely", "artists": "The Examples", "album_name": "A",
                                      "track_id": "t5", "title_score": 100.0, "artist_score": 91.7}],
                      "normalizations": ["version_suffix"]}},
        {"source": "freesound", "id": "9", "title": "Loop", "author": "Y", "url": "https://e.org/9",
         "reason": "copyright_audio_match",
         "evidence": {"matches": [{"reference": "hit.wav", "offset_seconds": 4.0, "candidate_start": 4.0,
                                   "score": 40}]}},
    ]
    write_review_page(tmp_path / "index.html", queue, {("fma", "5"): str(wav), ("freesound", "9"): str(tmp_path / "x")})
    page = (tmp_path / "index.html").read_text()
    assert "2 waiting" in page and "Lonely &lt;b&gt;" in page and "<b>" not in page.split("Lonely")[1][:10]
    assert page.count("data:audio/mpeg;base64,") == 1 and "no audio preview" in page
    assert "The Examples" in page and "91.7" in page and "hit.wav" in page
    # the evidence as tables, not JSON (the workspace's tables: curation/review/evidence.py)
    assert "<th>offset in this recording (s)</th>" in page and "<td>4.0</td>" in page and "{&quot;" not in page
    assert "decided_at" in page and "review_decisions.csv" in page


def test_decisions_file_without_the_columns(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("who,what\n")
    with pytest.raises(DecisionsError, match="source"):
        read_decisions(p)


class Zenodo:
    def __init__(self, ckpt: bytes, labels: bytes, md5: str):
        files = {"/files/ckpt": ckpt, "/labels.csv": labels}
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/api/records/3987831":
                    body = json.dumps({"files": [
                        {"key": "other.pth", "checksum": "md5:" + "0" * 32, "links": {"self": outer.url + "/x"}},
                        {"key": CHECKPOINT_NAME, "checksum": "md5:" + md5, "links": {"self": outer.url + "/files/ckpt"}},
                    ]}).encode()
                elif self.path in files:
                    body = files[self.path]
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_models_fetch_checks_checksums(tmp_path, labels_csv):
    ckpt = b"pretend checkpoint bytes" * 1000
    z = Zenodo(ckpt, labels_csv.read_bytes(), hashlib.md5(ckpt).hexdigest())
    try:
        info = fetch_models(tmp_path / "m", z.url + "/api/records/3987831", z.url + "/labels.csv")
        assert (tmp_path / "m" / CHECKPOINT_NAME).read_bytes() == ckpt
        assert info["checkpoint"]["sha256"] == hashlib.sha256(ckpt).hexdigest()
        assert is_published_checkpoint(tmp_path / "m" / CHECKPOINT_NAME, info["checkpoint"]["sha256"])
        # a corrupted download is refused and leaves nothing behind
        z2 = Zenodo(ckpt[:-1], labels_csv.read_bytes(), hashlib.md5(ckpt).hexdigest())
        with pytest.raises(FetchError, match="md5"):
            fetch_models(tmp_path / "n", z2.url + "/api/records/3987831", z2.url + "/labels.csv")
        assert not any(p.suffix == ".pth" for p in (tmp_path / "n").iterdir())
        with pytest.raises(FetchError, match="sha256"):
            fetch_models(tmp_path / "o", z.url + "/api/records/3987831", z.url + "/files/ckpt")
        z2.server.shutdown()
    finally:
        z.server.shutdown()


def test_models_fetch_cli_reports_unreachable_host(tmp_path):
    from tests.conftest import curate

    proc = curate("models", "fetch", str(tmp_path / "m"), "--zenodo-api", "http://127.0.0.1:9/api/records/1",
                  check=False)
    assert proc.returncode == 1 and "Zenodo record" in proc.stderr and "Traceback" not in proc.stderr

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from curation.config import Config
from curation.models import CHECKPOINT_NAME, FetchError, fetch_models, is_published_checkpoint
from curation.pipeline import apply_review
from curation.records import Record
from curation.review import DecisionsError, read_decisions


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
    queue, rep = apply_review(recs, cfg)
    assert [r.status for r in recs] == ["pending", "excluded", "review"]
    assert recs[1].reason == "copyright_rejected"
    assert recs[0].evidence["review"] == {"decision": "clear", "reviewer": "ann", "note": "ok",
                                          "cleared_reason": "copyright_match_review"}
    assert [q["id"] for q in queue] == ["3"]
    assert any("line 4" in n for n in rep.notes)  # the unusable row is reported, not applied
    # the file goes away: the ledger keeps the decisions
    cfg.copyright.review_decisions = None
    recs = [waiting("fma", "1"), waiting("fma", "2")]
    apply_review(recs, cfg)
    assert [r.status for r in recs] == ["pending", "excluded"]


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

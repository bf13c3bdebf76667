"""What the demo's run publishes, as digests: the manifest, the attribution CSVs, the review
queue, every shard, and release v1's release.json. A change that only moves code must leave
every one of them as it was; a change of behaviour updates `tests/data/demo_digests.json` in a
commit that says why (`python -m tests.demo_digests DEMO_DIR`).

Two things differ from one demo to the next and are taken out: the time a review decision was
recorded (`review_decided_at`, the review evidence's `decided_at`, release.json's `created_at`), and the bytes of the demo's Ogg
file (libsndfile gives each Ogg stream a random serial number), so each input file's sha256 is
written as the file's name before the manifest is digested."""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

RECORDED = Path(__file__).parent / "data" / "demo_digests.json"
FILES = ("release/freesound_attribution.csv", "release/fma_attribution.csv", "review/queue.csv")
VOLATILE = ("review_decided_at",)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def demo_digests(root: Path) -> dict[str, str]:
    """Digests of the demo run in `root` (the folder `curate demo-data` wrote, run as `make demo`)."""
    import pyarrow.parquet as pq

    root = Path(root)
    out = root / "out"
    names = {}
    for d in ("freesound", "fma_full"):
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                names[_sha(p.read_bytes())] = p.relative_to(root).as_posix()
    rows = pq.read_table(out / "manifests" / "records.parquet").to_pylist()
    rows = sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows),
                  key=lambda r: (r["source"], r["id"]))
    text = json.dumps(rows, sort_keys=True, default=str)
    for sha, name in names.items():
        text = text.replace(sha, f"<{name}>")
    text = text.replace(str(root.resolve()), "<demo>").replace(str(root), "<demo>")  # a decoder's error names the file
    text = re.sub(r'\\"decided_at\\": \\"[0-9T:Z-]+\\"', '"decided_at": "<time>"', text)
    digests = {"manifests/records.parquet (rows, input files by name)": _sha(text.encode())}
    for rel in FILES:
        digests[rel] = _sha((out / rel).read_bytes())
    for p in sorted((out / "release" / "shards").glob("*.tar")):
        digests[f"release/shards/{p.name}"] = _sha(p.read_bytes())
    info = json.loads((out / "releases" / "v1" / "release.json").read_text())
    info.pop("created_at", None)
    digests["releases/v1/release.json (without created_at)"] = _sha(json.dumps(info, sort_keys=True).encode())
    return digests


if __name__ == "__main__":
    RECORDED.parent.mkdir(exist_ok=True)
    RECORDED.write_text(json.dumps(demo_digests(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORDED}")

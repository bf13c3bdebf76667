"""From prints to decisions: which recordings hold the same audio, which copy is kept, and which
recordings hold a clip of an evaluation set.

Kinds (README: Duplicates):
- exact: the same decoded audio (the prints' digests are equal);
- near: the two share nearly all of both (re-encoded, resampled, gain-changed, downmixed,
  trimmed or padded by up to `NEAR_SLACK_S`);
- excerpt: the shorter one's audio lies in the longer one, covering at least
  `excerpt_min_share` of the shorter and at least `EXCERPT_MIN_S` seconds (two recordings that
  share a 2 s drum hit are not copies of each other);
- derived (`[dedup] derived`): a near copy played faster or slower, stretched in time or moved
  in key, up to 5% or one semitone (what the speed- and pitch-tolerant fingerprint looks for:
  `match.DERIVED`); an excerpt played so is an excerpt, its speed and key in the evidence.
Exact, near and derived copies form a group and the keep rule picks one; an excerpt is the copy of what
contains it, whatever its license (the longer recording holds more). A print too plain to tell
apart (silence, a tone: `prints.MIN_DISTINCT`) is never grouped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from .match import DERIVED, MAX_REFS, MIN_AGREE, MIN_SCORE, Hit, Index
from .prints import VERSION as PRINTS_VERSION
from .prints import Print

NEAR_SLACK_S = 5.0  # a near copy may be this much longer or shorter (trims, pads, fades)
EXCERPT_MIN_S = 5.0  # an excerpt shares at least this much
#: Fewest obligations first (README: Duplicates, the keep rule).
LICENSE_RANK = {"cc0": 0, "cc-by": 1, "sampling+": 2}
LOSSLESS = {"wav", "flac", "aiff", "aif", "wave"}
KEEP_RULES = ("obligations", "quality")


@dataclass
class Candidate:
    source: str
    id: str
    sha256: str
    author: str = ""
    license: str = ""
    released: bool = False  # in the last published version
    review: str = ""  # "clear" / "reject": a reviewer's decision on it
    created: str = ""  # upload time where the source gives it
    format: str = ""  # the audio's container/codec as the decoder saw it
    sample_rate: int = 0
    keep: str = "obligations"  # [dedup] keep

    @property
    def key(self) -> str:
        return f"{self.source}_{self.id}"

    def rank(self) -> tuple:
        """Lower is kept. A reviewer's clear, then the last release's copy, always come first
        (releases stay stable); then `keep`: "obligations" (CC0, CC BY, CC Sampling+), or
        "quality" (lossless before lossy, then the higher sample rate, then obligations).
        Obligations: CC0 before CC BY before CC Sampling+, then the earliest upload (where the
        source says when: Freesound's `created`, FMA's `track.date_created`), then the lowest id."""
        rid = int(self.id) if self.id.isdigit() else 1 << 62
        first = ({"clear": 0, "reject": 2}.get(self.review, 1), 0 if self.released else 1)
        obligations = (LICENSE_RANK.get(self.license, 9), self.created or "~", rid, self.source, self.id)
        if self.keep == "quality":
            return first + (0 if self.format.lower() in LOSSLESS else 1, -int(self.sample_rate or 0)) + obligations
        return first + obligations


@dataclass
class Decision:
    action: str  # "kept", "duplicate", "eval_overlap"
    evidence: dict = field(default_factory=dict)


def _author(c: Candidate) -> str:
    return " ".join((c.author or "").casefold().split())


def _relation(a: Print, b: Print, hit: Hit, min_share: float) -> tuple[str, float] | None:
    """("near" | "excerpt", share of the shorter) when query `a` and `b` hold the same audio
    (lengths in the query's time: `b` played at the query's speed)."""
    short, long_ = sorted((a.span_seconds, b.span_seconds / hit.speed))
    share = min(1.0, hit.shared_seconds / max(short, 0.5))
    if share < min_share:
        return None
    if long_ - min(hit.shared_seconds, long_) <= NEAR_SLACK_S:
        return "near", share
    if hit.shared_seconds >= EXCERPT_MIN_S:
        return "excerpt", share
    return None


class _Sets:
    def __init__(self, n: int):
        self.up = list(range(n))

    def find(self, i: int) -> int:
        while self.up[i] != i:
            self.up[i] = self.up[self.up[i]]
            i = self.up[i]
        return i

    def join(self, i: int, j: int) -> None:
        i, j = self.find(i), self.find(j)
        if i != j:
            self.up[max(i, j)] = min(i, j)


#: What the pairs found depend on, besides the prints themselves (a change looks everything up again).
LOOKUP_KEY = ("v2", MAX_REFS, MIN_SCORE, MIN_AGREE, PRINTS_VERSION)


def _derived(hit: Hit) -> bool:
    return hit.speed != 1.0 or hit.pitch != 0.0


def _as_seen_from_other(hit: Hit) -> Hit:
    """The hit with the roles swapped: the offset into the query, the other's speed and key
    against the query's."""
    return replace(hit, offset_seconds=-hit.offset_seconds + 0.0, speed=round(1.0 / hit.speed, 6),
                   pitch=-hit.pitch + 0.0)


def _played(hit: Hit, copy_is_query: bool) -> dict:
    """A derived copy's speed and key against what it is a copy of, for the evidence."""
    if not _derived(hit):
        return {}
    speed, pitch = (hit.speed, hit.pitch) if copy_is_query else (1.0 / hit.speed, -hit.pitch + 0.0)
    return {"speed": round(speed, 4), "pitch_semitones": round(pitch, 3)}


def decide(cands: list[Candidate], prints: dict[str, Print], eval_clips: list[tuple[str, Print]],
           excerpt_min_share: float = 0.9, known: dict | None = None,
           derived: bool = True) -> tuple[dict[str, Decision], dict]:
    """{record key: Decision} for every candidate in a group or holding an evaluation clip
    (candidates alone get nothing), and counts for the report. `known` is what the last run
    found (`counts["known"]`, saved by the caller): prints it looked up are not looked up again,
    only the new ones, against everything. `derived`: also copies played faster, slower or in
    another key (`match.DERIVED`)."""
    counts = {"fingerprinted": 0, "too_plain": 0, "groups": 0, "duplicate": 0, "eval_overlap": 0,
              "exact": 0, "near": 0, "excerpt": 0, "derived": 0, "reupload_groups": 0, "looked_up": 0}
    by_digest: dict[str, list[Candidate]] = {}
    reps: list[Print] = []
    for c in cands:
        p = prints.get(c.sha256)
        if p is None:
            continue
        counts["fingerprinted"] += 1
        if not p.usable:
            counts["too_plain"] += 1
            continue
        if p.digest not in by_digest:
            by_digest[p.digest] = []
            reps.append(p)
        by_digest[p.digest].append(c)
    digests = [p.digest for p in reps]
    n = len(reps)
    usable_clips = [(name, p) for name, p in eval_clips if p.usable]
    clips = [p for _, p in usable_clips]
    clip_names = [name for name, _ in usable_clips]
    key = [*LOOKUP_KEY, bool(derived), sorted(p.digest for p in clips)]
    if known is not None and known.get("key") != json.loads(json.dumps(key)):
        known = None  # other settings or other evaluation clips: everything is looked up
    pos = {d: i for i, d in enumerate(digests)}
    clip_pos = {p.digest: n + k for k, p in enumerate(clips)}
    old = set(known["reps"]) if known else set()
    todo = {i for i, d in enumerate(digests) if d not in old}
    found: list[tuple[int, Hit]] = []  # (query, hit): each pair once
    for dq, do, *fields in (known or {}).get("hits", []):
        i = pos.get(dq)
        j = clip_pos.get(do[5:]) if do.startswith("clip:") else pos.get(do)
        if i is not None and j is not None:
            found.append((i, Hit(j, *fields)))
    index = Index(reps + clips) if todo else None
    for i in sorted(todo):
        for hit in index.lookup(reps[i], exclude=i, transforms=DERIVED if derived else ()):
            if hit.other < i and hit.other in todo:
                continue  # a pair of two new prints: measured from the lower one's side
            found.append((i, hit))
    counts["looked_up"] = len(todo)
    counts["known"] = {"key": key, "reps": digests, "hits": [
        [digests[i], f"clip:{clips[h.other - n].digest}" if h.other >= n else digests[h.other],
         h.score, h.offset_seconds, h.start_seconds, h.shared_seconds, h.agree, h.speed, h.pitch] for i, h in found]}
    sets = _Sets(n)
    near_edge: dict[tuple[int, int], tuple[Hit, float]] = {}
    inside: dict[int, list[tuple[int, Hit, float]]] = {}  # shorter -> [(longer, hit, share)]
    overlaps: dict[int, list[dict]] = {}
    for i, hit in found:
        p = reps[i]
        j = hit.other
        if j >= n:  # an evaluation clip
            clip = clips[j - n]
            share = min(1.0, hit.shared_seconds / max(clip.span_seconds, 0.5))
            if share >= excerpt_min_share:
                overlaps.setdefault(i, []).append({
                    "clip": clip_names[j - n], "shared_seconds": hit.shared_seconds,
                    "at_seconds": hit.start_seconds, "score": hit.score})
            continue
        rel = _relation(p, reps[j], hit, excerpt_min_share)
        if rel is None:
            continue
        kind, share = rel
        if kind == "near":
            sets.join(i, j)
            # stored from the lower index's side: offsets are (later) - (earlier) index
            near_edge[(min(i, j), max(i, j))] = (hit if i < j else _as_seen_from_other(hit), share)
        else:
            a, b = (i, j) if p.span_seconds <= reps[j].span_seconds else (j, i)
            # offsets say where the shorter one starts in the longer one
            inside.setdefault(a, []).append((b, hit if a == i else _as_seen_from_other(hit), share))

    best_edge: dict[int, tuple[tuple[int, int], tuple[Hit, float]]] = {}
    for (a, b), e in near_edge.items():
        for x in (a, b):
            if x not in best_edge or e[0].score > best_edge[x][1][0].score:
                best_edge[x] = ((a, b), e)
    decisions: dict[str, Decision] = {}
    # 1. exact and near groups: the keep rule picks one copy
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(sets.find(i), []).append(i)
    kept_of: dict[int, Candidate] = {}  # group root -> kept candidate
    copies_of: dict[str, list[dict]] = {}
    for root, idx in members.items():
        group = [c for i in idx for c in by_digest[digests[i]]]
        kept = min(group, key=Candidate.rank)
        kept_of[root] = kept
        kept_rep = pos[prints[kept.sha256].digest]
        for i in idx:
            for c in by_digest[digests[i]]:
                if c is kept:
                    continue
                if i == kept_rep:
                    ev = {"kind": "exact", "shared_seconds": round(reps[i].seconds, 2), "offset_seconds": 0.0,
                          "score": None}
                else:
                    pair = (min(i, kept_rep), max(i, kept_rep))
                    e = near_edge.get(pair)
                    if e is None:  # joined through another copy: the best edge it has
                        pair, e = best_edge[i]
                    hit, share = e  # as seen from pair[0]
                    ev = {"kind": "derived" if _derived(hit) else "near",
                          "shared_seconds": min(hit.shared_seconds, reps[i].seconds, reps[kept_rep].seconds),
                          "offset_seconds": (hit.offset_seconds if i == pair[0] else -hit.offset_seconds) + 0.0,
                          "score": hit.score, "share": round(share, 3), **_played(hit, i == pair[0])}
                copies_of.setdefault(kept.key, []).append({"record": c.key, "author": c.author, "license": c.license,
                                                            "uploaded": c.created or None, **ev, "_c": c})
    # 2. excerpts: a group whose audio lies in a longer group is that group's copy
    def container(root: int, seen: set) -> int:
        best = None
        for i in members[root]:
            for b, hit, share in inside.get(i, []):
                rb = sets.find(b)
                if rb != root and rb not in seen and (best is None or reps[b].span_seconds > reps[best[0]].span_seconds):
                    best = (b, hit, share)
        if best is None:
            return root
        return container(sets.find(best[0]), seen | {root})

    for root, idx in members.items():
        top = container(root, set())
        if top == root:
            continue
        kept = kept_of[top]
        kept_rep = pos[prints[kept.sha256].digest]
        # the edge to the kept copy itself where there is one (its offset is into the kept copy)
        best = max(((b, hit, share) for i in idx for b, hit, share in inside.get(i, [])),
                   key=lambda v: (v[0] == kept_rep, v[1].score))
        _, hit, share = best
        moved = [kept_of[root]] + [x["_c"] for x in copies_of.pop(kept_of[root].key, [])]
        for c in moved:
            copies_of.setdefault(kept.key, []).append({
                "record": c.key, "author": c.author, "license": c.license, "uploaded": c.created or None, "kind": "excerpt",
                "shared_seconds": hit.shared_seconds, "offset_seconds": hit.offset_seconds, "score": hit.score,
                "share": round(share, 3), **_played(hit, True), "_c": c})
    by_key = {c.key: c for c in cands}
    for kept_key, copies in copies_of.items():
        kept = by_key[kept_key]
        authors = sorted({a for a in [_author(kept)] + [_author(x["_c"]) for x in copies]})
        listed = [{k: v for k, v in x.items() if k != "_c"} for x in copies]
        listed.sort(key=lambda x: x["record"])
        other = len(authors) > 1
        counts["groups"] += 1
        counts["reupload_groups"] += int(other)
        decisions[kept_key] = Decision("kept", {
            "group": kept_key, "kept": kept_key, "role": "kept", "copies": listed, "other_authors": other,
            "authors": [{"record": x["record"], "author": x["author"], "license": x["license"], "uploaded": x["uploaded"]}
                        for x in [{"record": kept.key, "author": kept.author, "license": kept.license,
                                   "uploaded": kept.created or None}] + listed]})
        for x in copies:
            counts["duplicate"] += 1
            counts[x["kind"]] += 1
            ev = {k: v for k, v in x.items() if k not in ("_c", "record", "author", "license", "uploaded")}
            decisions[x["record"]] = Decision("duplicate", {"group": kept_key, "kept": kept_key, "role": "copy",
                                                            "kept_author": kept.author, **ev})
    # 3. evaluation clips: whatever holds one is out, kept copy or not
    for i, found in overlaps.items():
        for c in by_digest[digests[i]]:
            counts["eval_overlap"] += 1
            decisions[c.key] = Decision("eval_overlap", {"clips": sorted(found, key=lambda x: x["clip"]),
                                                         "group": (decisions.get(c.key) or Decision("")).evidence.get("group")})
    return decisions, counts

"""The duplicates step: each kind of copy grouped, the hard negatives never, the keep rule, the
step over partitions as the flow runs it (prints cached, explain), re-uploads held for review,
evaluation audio on disk, and the kept copy stable across three runs.

Audio: songs from curation.synth (no code shared with the step) and copies made by the FFmpeg
CLI; the real-audio figures are benchmarks/duplicates.py's."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from curation import record_table as rt
from curation import synth
from curation.audio import file_sha256
from curation.config import Config
from curation.dedup.duplicates import DUPLICATES, explain
from curation.dedup.groups import Candidate, decide
from curation.dedup.prints import print_file
from curation.records import Record
from curation.stage import read_part, write_part
from tests.stage_run import run_review

pytestmark = pytest.mark.skipif(subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
                                reason="needs the ffmpeg CLI to make copies")


def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def _unique(seconds: float, seed: int) -> np.ndarray:
    """A synthetic song under a field recording's random events: no two seconds alike (a song
    alone repeats its bars, and an excerpt of it lies at several offsets)."""
    x = synth.song(seconds, 44100, seed=seed) + 0.7 * synth.field_recording(seconds, 44100, seed=seed)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dups")
    out = {}
    for k in range(3):
        p = d / f"song{k}.wav"
        sf.write(p, _unique(24, 10 + k), 44100)
        out[f"song{k}"] = p
    s = out["song0"]
    ff("-i", s, "-c:a", "flac", d / "exact.flac")
    ff("-i", s, "-ar", "22050", "-b:a", "48k", d / "near-mp3.mp3")
    ff("-ss", "2", "-i", s, "-af", "volume=-6dB", "-ac", "1", d / "near-trim.wav")
    ff("-ss", "6", "-t", "10", "-i", s, d / "excerpt.wav")
    ff("-ss", "6", "-t", "8", "-i", s, "-ar", "16000", d / "clip.wav")
    # derived: played 3% faster (time and pitch), stretched 3.5% (pitch kept, between two of the
    # steps tried), a semitone up (resampled, then stretched back to its length)
    ff("-i", s, "-af", f"asetrate={int(44100 * 1.03)},aresample=44100", d / "derived-speed.wav")
    ff("-i", s, "-af", "atempo=0.965", d / "derived-tempo.wav")
    ff("-i", s, "-af", f"asetrate={round(44100 * 2 ** (1 / 12))},aresample=44100,atempo={2 ** (-1 / 12):.6f}",
       d / "derived-pitch.wav")
    # ... and beyond what is looked for: 10% faster
    ff("-i", s, "-af", f"asetrate={int(44100 * 1.1)},aresample=44100", d / "faster.wav")
    for name in ("exact.flac", "near-mp3.mp3", "near-trim.wav", "excerpt.wav", "clip.wav", "derived-speed.wav",
                 "derived-tempo.wav", "derived-pitch.wav", "faster.wav"):
        out[name.split(".")[0]] = d / name
    # hard negatives: the same kind of music again, tones, silence, noise, a shared short sample
    sf.write(d / "other-take.wav", _unique(24, 99), 44100)
    ff("-f", "lavfi", "-i", "sine=frequency=440:duration=12", d / "tone-a.wav")
    ff("-f", "lavfi", "-i", "sine=frequency=440:duration=20", d / "tone-b.wav")
    ff("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "15", d / "silence-a.wav")
    ff("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "15", d / "silence-b.wav")
    for k in range(2):
        sf.write(d / f"field{k}.wav", synth.field_recording(20, 44100, seed=k), 44100)
    ff("-ss", "3", "-t", "2", "-i", out["song1"], d / "hit.wav")
    for k, seed in enumerate((51, 52)):
        sf.write(d / f"bed{k}.wav", _unique(24, seed), 44100)
        ff("-i", d / f"bed{k}.wav", "-i", d / "hit.wav", "-filter_complex",
           "[1]adelay=9000:all=1[h];[0][h]amix=inputs=2:duration=first", d / f"shared-hit{k}.wav")
    for name in ("other-take", "tone-a", "tone-b", "silence-a", "silence-b", "field0", "field1",
                 "shared-hit0", "shared-hit1"):
        out[name] = d / f"{name}.wav"
    return out


def _decide(files: dict[str, Path], licenses: dict[str, str] | None = None, **kw):
    prints = {name: print_file(p) for name, p in files.items()}
    cands = [Candidate("freesound", str(i + 1), name, author="ann", license=(licenses or {}).get(name, "cc-by"))
             for i, name in enumerate(files)]
    decisions, counts = decide(cands, prints, [], **kw)
    by_name = {c.sha256: decisions.get(c.key) for c in cands}
    return by_name, {c.key: c.sha256 for c in cands}, counts


def test_each_kind_of_copy_is_grouped_with_its_original(audio):
    names = ["song0", "exact", "near-mp3", "near-trim", "excerpt", "song1", "song2"]
    got, name_of, counts = _decide({n: audio[n] for n in names})
    kept = got["song0"]
    assert kept.action == "kept"  # the lowest id among equal licenses
    kinds = {c["record"]: c["kind"] for c in kept.evidence["copies"]}
    assert {name_of[k]: v for k, v in kinds.items()} == {
        "exact": "exact", "near-mp3": "near", "near-trim": "near", "excerpt": "excerpt"}
    for n in ("exact", "near-mp3", "near-trim", "excerpt"):
        assert got[n].action == "duplicate" and got[n].evidence["kept"] == "freesound_1"
    ex = got["excerpt"].evidence
    assert 8.5 <= ex["shared_seconds"] <= 11.5 and abs(ex["offset_seconds"] - 6.0) < 0.1
    trim = got["near-trim"].evidence
    assert abs(abs(trim["offset_seconds"]) - 2.0) < 0.1
    assert got["song1"] is None and got["song2"] is None
    assert counts["duplicate"] == 4 and counts["groups"] == 1


def test_copies_played_faster_slower_or_in_another_key_are_derived_copies(audio):
    names = ["song0", "derived-speed", "derived-tempo", "derived-pitch", "faster", "song1"]
    got, name_of, counts = _decide({n: audio[n] for n in names})
    assert got["song0"].action == "kept"
    for n, speed, pitch in (("derived-speed", 1.03, 0.51), ("derived-tempo", 0.965, 0.0), ("derived-pitch", 1.0, 1.0)):
        ev = got[n].evidence
        assert got[n].action == "duplicate" and ev["kind"] == "derived" and ev["kept"] == "freesound_1", (n, ev)
        # the copy's speed and key against the kept one, as measured
        assert abs(ev["speed"] - speed) < 0.006 and abs(ev["pitch_semitones"] - pitch) < 0.1, (n, ev)
        assert ev["shared_seconds"] >= 0.9 * min(24 / speed, 24), (n, ev)
    assert got["faster"] is None and got["song1"] is None  # 10% is beyond what is looked for
    assert counts["derived"] == 3
    lines = explain({}, {"same_audio": got["derived-tempo"].evidence})
    assert "a derived copy of freesound_1" in lines[0] and "played at 96.5% speed" in lines[0]
    # [dedup] derived = false: only copies as they are
    got, _, counts = _decide({n: audio[n] for n in names}, derived=False)
    assert all(got[n] is None for n in ("derived-speed", "derived-tempo", "derived-pitch")) and counts["derived"] == 0


def test_hard_negatives_are_never_grouped(audio):
    names = ["song0", "other-take", "tone-a", "tone-b", "silence-a", "silence-b", "field0", "field1",
             "shared-hit0", "shared-hit1", "song1"]
    got, _, counts = _decide({n: audio[n] for n in names})
    assert {n: d.action for n, d in got.items() if d is not None} == {}
    assert counts["too_plain"] >= 4  # the tones and the silences are never grouped


def test_the_keep_rule_fewest_obligations_then_lowest_id(audio):
    files = {"song0": audio["song0"], "near-mp3": audio["near-mp3"], "exact": audio["exact"]}
    got, _, _ = _decide(files, licenses={"song0": "sampling+", "near-mp3": "cc0", "exact": "cc-by"})
    assert got["near-mp3"].action == "kept"
    assert got["song0"].action == got["exact"].action == "duplicate"
    # an excerpt is the copy of what holds it, even with fewer obligations
    got, _, _ = _decide({"song0": audio["song0"], "excerpt": audio["excerpt"]},
                        licenses={"song0": "cc-by", "excerpt": "cc0"})
    assert got["song0"].action == "kept" and got["excerpt"].action == "duplicate"
    # a higher excerpt share makes the trimmed excerpt no copy
    got, _, _ = _decide({"song0": audio["song0"], "excerpt": audio["excerpt"]}, excerpt_min_share=1.0)
    assert got["excerpt"] is None or got["excerpt"].action != "duplicate" or got["excerpt"].evidence["share"] >= 1.0


def test_the_earliest_upload_is_kept_among_equal_obligations(audio):
    prints = {n: print_file(audio[n]) for n in ("song0", "exact", "near-mp3")}
    cands = [Candidate("freesound", "1", "song0", author="ann", license="cc-by", created="2015-01-01T00:00:00Z"),
             Candidate("freesound", "2", "exact", author="bob", license="cc-by", created="2012-06-01T10:00:00Z"),
             Candidate("fma", "3", "near-mp3", author="cy", license="cc-by")]  # no date: after those with one
    decisions, _ = decide(cands, prints, [])
    assert decisions["freesound_2"].action == "kept"
    assert decisions["freesound_1"].action == decisions["fma_3"].action == "duplicate"
    authors = {a["record"]: a["uploaded"] for a in decisions["freesound_2"].evidence["authors"]}
    assert authors == {"freesound_2": "2012-06-01T10:00:00Z", "freesound_1": "2015-01-01T00:00:00Z", "fma_3": None}
    lines = explain({}, {"same_audio": decisions["freesound_2"].evidence})
    assert "freesound_1 by ann (cc-by, uploaded 2015-01-01T00:00:00Z)" in lines[1]
    # fewer obligations still come first, whenever they were uploaded
    cands[0].license = "cc0"
    assert decide(cands, prints, [])[0]["freesound_1"].action == "kept"


def _record(rid: str, path: Path, author="ann", license="cc-by") -> Record:
    r = Record("freesound", rid, title=f"sound {rid}", author=author, license=license, audio_path=str(path))
    info = sf.info(path)
    r.evidence["audio"] = {"sha256": file_sha256(path), "seconds": info.duration, "sample_rate": info.samplerate,
                           "format": path.suffix.lstrip(".").lower()}
    return r


def _cfg(tmp_path: Path, **dedup) -> Config:
    cfg = Config(path=tmp_path / "curate.toml", output_dir=tmp_path / "out")
    for k, v in dedup.items():
        setattr(cfg.dedup, k, v)
    cfg.music.workers = 1
    return cfg


def _run(cfg: Config, parts: list[list[Record]], tag: str):
    src = []
    for i, recs in enumerate(parts):
        p = cfg.output_dir / "in" / tag / f"part-{i}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_part(p, rt.from_records(recs))
        src.append((str(p), f"key-{i}"))
    out, rep = DUPLICATES.run(src, cfg, cfg.output_dir / "work" / "dup" / tag)
    recs = {r.id: r for p, _ in out for r in rt.to_records(read_part(p))}
    return recs, out, rep


def test_the_step_over_partitions_as_the_flow_runs_it(tmp_path, audio):
    cfg = _cfg(tmp_path)
    parts = [[_record("10", audio["song0"]), _record("11", audio["song1"])],
             [_record("12", audio["near-mp3"]), _record("13", audio["excerpt"])]]
    recs, out, rep = _run(cfg, parts, "a")
    assert recs["10"].status == "pending" and recs["11"].status == "pending"
    for rid, kind in (("12", "near"), ("13", "excerpt")):
        assert (recs[rid].status, recs[rid].reason) == ("excluded", "duplicate")
        assert recs[rid].evidence["same_audio"]["kept"] == "freesound_10"
        assert recs[rid].evidence["same_audio"]["kind"] == kind
    assert rep.counts["duplicate"] == 2 and rep.counts["groups"] == 1
    assert any("4 print(s) made" in n for n in rep.notes)
    lines = explain({}, recs["12"].evidence) + explain({}, recs["10"].evidence)
    assert "a near copy of freesound_10" in lines[0]
    assert "kept for a group of 3" in lines[1]
    # a rerun makes no print again, and keeps the partitions' keys
    recs2, out2, rep2 = _run(cfg, parts, "b")
    assert any("0 print(s) made, 4 from the cache" in n for n in rep2.notes)
    assert [k for _, k in out2] == [k for _, k in out]
    assert {r: (x.status, x.reason) for r, x in recs2.items()} == {r: (x.status, x.reason) for r, x in recs.items()}
    assert any("0 looked up" in n for n in rep2.notes) and "looked_up" not in rep2.counts
    # one new sound: one print made, one looked up against everything before, and grouped
    parts[1].append(_record("14", audio["near-trim"]))
    recs3, out3, rep3 = _run(cfg, parts, "c")
    assert rep3.counts["looked_up"] == 1 and any("1 print(s) made, 4 from the cache" in n for n in rep3.notes)
    assert (recs3["14"].reason, recs3["14"].evidence["same_audio"]["kept"]) == ("duplicate", "freesound_10")
    assert out3[0][1] != out[0][1]  # the kept copy's group grew: its partition's key changed
    # the same decisions as a run that looks everything up
    (cfg.work_dir / "duplicates" / "pairs.json").write_text("damaged")
    recs4, _, rep4 = _run(cfg, parts, "d")
    assert rep4.counts["looked_up"] == 5
    assert {r: (x.status, x.reason, x.evidence.get("same_audio", {}).get("kept")) for r, x in recs4.items()} == \
        {r: (x.status, x.reason, x.evidence.get("same_audio", {}).get("kept")) for r, x in recs3.items()}


def test_the_index_built_in_blocks_is_the_index_built_whole(monkeypatch):
    from curation.dedup import match
    from curation.dedup.prints import Print

    rng = np.random.default_rng(0)
    ps = [Print(str(i), 30.0, rng.integers(0, 4000, 400).astype(np.int32),
                np.sort(rng.integers(0, 2000, 400)).astype(np.int32)) for i in range(200)]
    whole = match.Index(ps, max_refs=30)
    monkeypatch.setattr(match, "BLOCK", 777)
    blocks = match.Index(ps, max_refs=30)
    assert len(whole.common) > 0 and len(whole) < sum(len(p.hashes) for p in ps)
    assert np.array_equal(whole.packed, blocks.packed) and np.array_equal(whole.common, blocks.common)


def test_reuploads_under_other_authors_wait_for_review(tmp_path, audio):
    cfg = _cfg(tmp_path)
    parts = [[_record("20", audio["song0"], author="ann"), _record("21", audio["near-mp3"], author="bob")]]
    recs, _, rep = _run(cfg, parts, "a")
    assert rep.counts["reupload_groups"] == 1
    kept = recs["20"]
    assert kept.evidence["same_audio"]["other_authors"] is True
    assert {a["author"] for a in kept.evidence["same_audio"]["authors"]} == {"ann", "bob"}
    after, queue, _ = run_review(list(recs.values()), cfg, tmp_path / "review")
    by_id = {r.id: r for r in after}
    assert (by_id["20"].status, by_id["20"].reason) == ("review", "reupload_other_author")
    assert (by_id["21"].status, by_id["21"].reason) == ("excluded", "duplicate")
    assert [q["reason"] for q in queue] == ["reupload_other_author"]
    assert {c["record"] for c in queue[0]["evidence"]["copies"]} == {"freesound_21"}
    # a reviewer clears the copy under bob's name: the next run keeps it, and it is included
    ledger = tmp_path / "decisions.csv"
    ledger.write_text("source,id,decision,reviewer,note\nfreesound,21,clear,rev,bob is the author\n")
    cfg.copyright.review_decisions = ledger
    recs, _, _ = _run(cfg, parts, "b")
    assert recs["21"].status == "pending" and recs["20"].reason == "duplicate"
    after, queue, _ = run_review(list(recs.values()), cfg, tmp_path / "review")
    assert {r.id: r.status for r in after} == {"20": "excluded", "21": "included"}
    assert queue == []


def test_a_recording_that_holds_evaluation_audio_is_out(tmp_path, audio):
    clips = tmp_path / "eval-audio"
    clips.mkdir()
    (clips / "clip-7.wav").write_bytes(audio["clip"].read_bytes())
    cfg = _cfg(tmp_path, eval_audio_dirs=[clips])
    recs, _, rep = _run(cfg, [[_record("30", audio["song0"]), _record("31", audio["song1"])]], "a")
    assert (recs["30"].status, recs["30"].reason) == ("excluded", "eval_overlap")
    clip = recs["30"].evidence["eval_overlap"]["clips"][0]
    assert clip["clip"] == "clip-7.wav" and 6.5 <= clip["shared_seconds"] <= 9.0 and abs(clip["at_seconds"] - 6) < 0.6
    assert recs["31"].status == "pending"
    assert "holds clip-7.wav" in explain({}, recs["30"].evidence)[0]


def test_keep_quality_keeps_the_lossless_copy_whatever_its_obligations(tmp_path, audio):
    wav = lambda: _record("70", audio["song0"], license="cc-by")  # noqa: E731  (44.1 kHz wav)
    mp3 = lambda: _record("71", audio["near-mp3"], license="cc0")  # noqa: E731  (22.05 kHz mp3)
    recs, _, _ = _run(_cfg(tmp_path / "a"), [[wav(), mp3()]], "a")
    assert recs["70"].reason == "duplicate" and recs["71"].status == "pending"  # fewest obligations
    recs, _, _ = _run(_cfg(tmp_path / "b", keep="quality"), [[wav(), mp3()]], "a")
    assert recs["71"].reason == "duplicate" and recs["70"].status == "pending"
    assert recs["71"].evidence["same_audio"]["kept"] == "freesound_70"


def test_the_kept_copy_is_stable_across_three_runs(tmp_path, audio, monkeypatch):
    import curation.release.versions as versions

    cfg = _cfg(tmp_path)
    released: dict[str, list[str]] = {}
    monkeypatch.setattr(versions, "published_assignment", lambda _out: released)
    a = lambda: _record("50", audio["song0"], license="cc-by")  # noqa: E731
    b = lambda: _record("40", audio["near-mp3"], license="cc0")  # noqa: E731
    # run 1: only A; it is released
    recs, _, _ = _run(cfg, [[a()]], "1")
    assert recs["50"].status == "pending"
    released["shard-0"] = ["freesound_50"]
    # run 2: B comes, with fewer obligations and a lower id: the released A stays, B is the copy
    recs, _, _ = _run(cfg, [[a(), b()]], "2")
    assert recs["50"].status == "pending" and recs["40"].reason == "duplicate"
    assert recs["40"].evidence["same_audio"]["kept"] == "freesound_50"
    # run 3: A is gone from the source: B is kept
    recs, _, _ = _run(cfg, [[b()]], "3")
    assert recs["40"].status == "pending" and "same_audio" not in recs["40"].evidence


def test_the_config_keys(tmp_path):
    from curation.config import ConfigError, load_config

    base = 'output_dir = "out"\n[music]\ncheckpoint = "c.pth"\n[fma]\ntracks_csv = "t.csv"\naudio_dir = "."\n'
    (tmp_path / "t.csv").write_text("x\n")
    (tmp_path / "c.pth").write_bytes(b"x")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(base + '[copyright]\nspotify_tracks_csv = "t.csv"\n[dedup]\nexcerpt_min_share = 0.8\neval_audio_dirs = ["."]\n'
                        'derived = false\n')
    cfg = load_config(cfg_path)
    assert cfg.dedup.excerpt_min_share == 0.8 and cfg.dedup.eval_audio_dirs == [tmp_path] and cfg.dedup.derived is False
    assert Config(path=tmp_path / "x.toml", output_dir=tmp_path).dedup.derived is True
    cfg_path.write_text(base + '[copyright]\nspotify_tracks_csv = "t.csv"\n[dedup]\neval_audio_dirs = ["nowhere"]\n')
    with pytest.raises(ConfigError, match="eval_audio_dirs"):
        load_config(cfg_path)
    cfg_path.write_text(base + '[copyright]\nspotify_tracks_csv = "t.csv"\n[dedup]\nexcerpt_min_share = 0\n')
    with pytest.raises(ConfigError, match="excerpt_min_share"):
        load_config(cfg_path)
    cfg_path.write_text(base + '[copyright]\nspotify_tracks_csv = "t.csv"\n[dedup]\nkeep = "newest"\n')
    with pytest.raises(ConfigError, match="dedup.keep"):
        load_config(cfg_path)


def test_a_generated_clip_that_holds_a_training_recording_is_reported(tmp_path, audio):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.dedup.memorised import memorised

    cfg = _cfg(tmp_path)
    recs = [_record("60", audio["song0"]), _record("61", audio["song1"])]
    _run(cfg, [recs], "a")  # the duplicates step leaves their prints in the cache
    (cfg.output_dir / "manifests").mkdir(parents=True)
    pq.write_table(pa.table({"source": ["freesound"] * 2, "id": ["60", "61"], "status": ["included"] * 2,
                             "audio_sha256": [r.evidence["audio"]["sha256"] for r in recs]}),
                   cfg.output_dir / "manifests" / "records.parquet")
    copied = tmp_path / "generated.wav"  # 8 s of song1 from 4 s on, after 3 s of something else
    ff("-ss", "4", "-t", "8", "-i", audio["song1"], tmp_path / "part.wav")
    ff("-t", "3", "-i", audio["other-take"], "-i", tmp_path / "part.wav", "-filter_complex",
       "[0][1]concat=n=2:v=0:a=1", "-ac", "1", "-ar", "44100", copied)
    got = memorised(cfg, [copied, audio["song2"]])
    assert got["references"] == 2
    first, second = got["clips"]
    assert [m["record"] for m in first["records"]] == ["freesound_61"]
    m = first["records"][0]
    assert 6.5 <= m["shared_seconds"] <= 8.5 and abs(m["at_seconds"] - 4) < 0.6 and abs(m["clip_at_seconds"] - 3) < 0.6
    assert second == {"clip": "song2.wav", "records": []}

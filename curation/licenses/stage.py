"""The license stage: each record's license, gen-AI preference and attribution decided (`terms`: what a
license string means)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from .. import record_table as rt
from ..config import Config
from ..sources import fma as fma_src
from ..stage import Stage
from . import terms as licenses


# Licenses whose terms ask that each use name the author, link the work and name the license.
NEEDS_ATTRIBUTION = frozenset({"cc-by", "sampling+"})


def _license_of(license_raw: str, source: str, fma_license_url: str) -> tuple[licenses.LicenseDecision, str, str]:
    """The record's license class, why it cannot be trusted ("" when it can), and FMA's
    license URL from raw_tracks.csv ("" without one). FMA's license title is checked against
    that URL, which names the exact license; where both are given they must agree."""
    dec = licenses.classify(license_raw)
    url = (fma_license_url or "").strip()
    if source != "fma" or not url:
        return dec, "", ""
    by_url = licenses.license_terms(url)
    if dec.license == "missing":
        return licenses.LicenseDecision(url, by_url.license), "", url
    return dec, licenses.terms_conflict(licenses.license_terms(license_raw), by_url), url


def _ev_field(table, column: str, key: str):
    """One key of a JSON evidence column, parsed once per distinct value."""
    if column not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return rt.per_distinct(table, [column], lambda row: {
        "v": None if row[column] is None else str((json.loads(row[column]) or {}).get(key) or "") or None},
        {"v": pa.string()})["v"]


def _exclude_unsafe_urls(table):
    """A record whose work URL is not an http(s) link (javascript:, data:, spaces, quotes) is
    excluded, `url_unsafe`: the URL is published in the attribution and shown as a link."""
    from ..safe_text import encode_url, safe_href

    url = table.column("url")
    # an http(s) URL with raw spaces, tabs or quotes is the same URL percent-encoded
    odd = pc.and_(pc.match_substring_regex(url, r"^[Hh][Tt][Tt][Pp][Ss]?://"),
                  pc.match_substring_regex(url, r"[\s\"'<>\\`\x00-\x1f\x7f]"))
    if pc.any(odd).as_py():
        raw = url.to_pylist()
        flags = odd.to_pylist()
        table = rt.where(odd, pa.array([encode_url(u) if f else u for u, f in zip(raw, flags)], pa.string()),
                         table, "url")
        table = rt.where(odd, pa.array([rt.ev_json(u) if f else None for u, f in zip(raw, flags)], pa.string()),
                         table, rt.EV + "url_raw")
        url = table.column("url")
    unsafe = pc.and_(rt.pending(table), pc.and_(pc.not_equal(url, ""), pc.invert(
        pc.match_substring_regex(url, r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\"'<>\\`\x00-\x1f\x7f]+$"))))
    if not pc.any(unsafe).as_py():
        return table
    detail = pa.array([rt.ev_json(f"the work's URL is not an http(s) link: {u[:200]!r}")
                       if m and safe_href(u) is None else None
                       for u, m in zip(url.to_pylist(), unsafe.to_pylist())], pa.string())
    table = rt.where(unsafe, detail, table, rt.EV + "detail")
    return rt.exclude(table, unsafe, "url_unsafe")


def licenses_table(table, cfg: Config):
    """The license stage over a table: license class, Freesound's gen-AI preference against
    what the release declares, and whether the record can be attributed as its license asks.
    Every decision depends on a few repeated values, so each is made once per distinct value."""
    rel = cfg.release
    src = table.column("source")
    is_fs = pc.and_(pc.equal(src, "freesound"), pc.invert(pc.starts_with(table.column("id"), "malformed:")))

    def genai(row):
        g = licenses.genai_decision(row["gen_ai_preference"], bool(row["genai_present"]), rel.open_source_model,
                                    rel.noncommercial, cfg.freesound.require_genai_preference)
        return {"ev": rt.ev_json({"preference": row["gen_ai_preference"], "present": bool(row["genai_present"]),
                                  "rule": g.rule, "release_open_source_model": rel.open_source_model,
                                  "release_noncommercial": rel.noncommercial}),
                "reason": g.reason}

    g = rt.per_distinct(table, ["gen_ai_preference", "genai_present"], genai,
                        {"ev": pa.string(), "reason": pa.string()}, mask=is_fs)
    table = rt.where(is_fs, g["ev"], table, "ev_genai")

    pend = rt.pending(table)
    table = rt.set_column(table, "_fma_license_url", _ev_field(table, "ev_fma_raw", "license_url"))
    table = rt.set_column(table, "_attribution_detail", _ev_field(table, "ev_attribution", "detail"))
    table = rt.set_column(table, "_url_derived", pc.equal(
        pc.fill_null(_ev_field(table, "ev_attribution", "url_source"), ""), fma_src.URL_DERIVED))
    table = rt.set_column(table, "_url_empty", pc.equal(table.column("url"), ""))
    table = rt.set_column(table, "_genai_reason", g["reason"])

    def decide(row):
        dec, conflict, fma_url = _license_of(row["license_raw"], row["source"], row["_fma_license_url"] or "")
        license_url = licenses.deed_url(fma_url or row["license_raw"]) if dec.license != "missing" else ""
        ev = {"raw": row["license_raw"], "class": dec.license, "allowed": dec.allowed}
        if fma_url:
            ev["license_url_raw"] = fma_url
        ev["license_url"] = license_url
        out = {"license": dec.license, "ev_license": rt.ev_json(ev)}
        if conflict:
            license_url = ""  # two statements disagree: name no deed
            out.update(reason="license_conflict", ev_detail=rt.ev_json(
                f"tracks.csv title {row['license_raw']!r} and raw_tracks.csv license_url {fma_url!r} disagree: "
                f"{conflict}"))
        elif dec.license == "missing":
            out["reason"] = "license_missing"
        elif dec.license == "unknown":
            out["reason"] = "license_unknown"
        elif not dec.allowed:
            out["reason"] = "license_not_allowed"
        elif row["_genai_reason"]:
            out.update(reason=row["_genai_reason"], ev_gen_ai_preference=rt.ev_json(row["gen_ai_preference"]))
        elif dec.license in NEEDS_ATTRIBUTION:
            missing = []
            if row["_url_empty"]:
                missing.append(row["_attribution_detail"] or "no URL of the work")
            elif row["_url_derived"] and not cfg.fma.derived_urls:
                missing.append("the URL was derived, and [fma] derived_urls = false")
            if not license_url:
                missing.append(f"the license title {row['license_raw']!r} names no version and no license URL is given")
            if missing:
                out.update(reason="attribution_incomplete", ev_detail=rt.ev_json("; ".join(missing)))
        out["license_url"] = license_url
        return out

    outs = {"license": pa.string(), "license_url": pa.string(), "ev_license": pa.string(), "reason": pa.string(),
            "ev_detail": pa.string(), "ev_gen_ai_preference": pa.string()}
    d = rt.per_distinct(table, ["source", "license_raw", "_fma_license_url", "_genai_reason", "gen_ai_preference",
                                "_url_empty", "_url_derived", "_attribution_detail"], decide, outs, mask=pend)
    table = table.drop_columns(["_fma_license_url", "_attribution_detail", "_url_derived", "_url_empty",
                                "_genai_reason"])
    for col in ("license", "license_url", "ev_license"):
        table = rt.where(pend, d[col], table, col)
    excluded = pc.and_(pend, pc.is_valid(d["reason"]))
    for col in ("ev_detail", "ev_gen_ai_preference"):
        has = pc.and_(excluded, pc.is_valid(d[col]))
        if pc.any(has).as_py():
            table = rt.where(has, d[col], table, col)
    table = rt.where(excluded, "excluded", table, "status")
    table = rt.where(excluded, d["reason"], table, "reason")
    table = _exclude_unsafe_urls(table)
    if rt.EV + "license_changed_from" in table.column_names:
        # a sound fetched again under a license it may no longer be used under (see _latest)
        changed = pc.and_(pc.fill_null(pc.equal(table.column("reason"), "license_not_allowed"), False),
                          pc.and_(excluded, pc.is_valid(table.column(rt.EV + "license_changed_from"))))
        if pc.any(changed).as_py():
            table = rt.where(changed, "license_changed", table, "reason")
    return table


def _licenses(cfg, info, progress):
    return lambda t, rep: licenses_table(t, cfg)


def explain(row: dict, ev: dict) -> list[str]:
    """The license, attribution and gen-AI preference as read, for `curate explain`."""
    out: list[str] = []
    lic = ev.get("license")
    if lic:
        out.append(f"  license: raw {lic['raw']!r} -> {lic['class']} ({'allowed' if lic['allowed'] else 'rejected'})"
                   + (f", license URL from raw_tracks.csv {lic['license_url_raw']!r}" if lic.get("license_url_raw") else "")
                   + (f", deed {lic['license_url']}" if lic.get("license_url") else ""))
    att = ev.get("attribution")
    if att is not None:
        src = att.get("url_source") or "none"
        out.append(f"  attribution: url {row['url'] or '(none)'} (source: {src})"
                   + (f"; {att['detail']}" if att.get("detail") else "")
                   + ("  [DERIVED: check before publishing]" if fma_src.url_was_derived(ev) else ""))
    genai = ev.get("genai")
    if genai:
        shown = repr(genai["preference"]) if genai.get("present") else "absent"
        out.append(f"  gen_ai_preference: {shown}; release declares open_source_model="
                   f"{str(genai['release_open_source_model']).lower()}, noncommercial="
                   f"{str(genai['release_noncommercial']).lower()}; rule: {genai['rule']}")
    return out


#: The reasons this stage may set, and what each means.
LICENSES_REASONS = {
    "license_missing": "no license given",
    "license_unknown": "license not recognised with certainty",
    "license_not_allowed": "license is not CC0, CC BY or CC Sampling+",
    "license_conflict": "the license title and the license URL name different licenses (or versions)",
    "license_changed": "the uploader changed the license to one not allowed (seen when the sound was fetched again)",
    "genai_opt_out": "the uploader opted out of generative AI training (gen_ai_preference)",
    "genai_noncommercial_only": "uploader allows only noncommercial open-source models; release is commercial",
    "genai_closed_model": "uploader allows only open-source models; the release does not declare one",
    "genai_preference_unknown": "gen_ai_preference value not one of Freesound's four: fail closed",
    "genai_preference_missing": "no gen_ai_preference in the response and require_genai_preference is set",
    "attribution_incomplete": "the license asks for attribution and no real URL (or license version) is known",
    "url_unsafe": "the work's URL is not an http(s) link (javascript:, data:, ...): never published or shown as a link",
}


LICENSES = Stage(
    name="licenses",
    version=3,
    reads=("source", "id", "license_raw", "gen_ai_preference", "genai_present", "url", "status",
           "ev_fma_raw", "ev_attribution", "ev_license_changed_from"),
    writes=("license", "license_url", "url", "status", "reason", "ev_license", "ev_genai", "ev_detail",
            "ev_gen_ai_preference", "ev_url_raw"),
    reasons=LICENSES_REASONS,
    settings=lambda cfg, info: (cfg.release, cfg.freesound.require_genai_preference, cfg.fma.derived_urls),
    setup=_licenses,
    explain=explain,
)

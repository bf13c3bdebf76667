"""License normalisation: raw license strings to a small set of classes.

Only ``cc0``, ``cc-by`` and ``sampling+`` pass. Everything else, including anything
not recognised with certainty, gets a rejected class. The parser is deliberately
strict: a free-text title passes only when every word in it is accounted for, so
"Attribution, no AI use" is ``unknown`` rather than ``cc-by``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOWED = frozenset({"cc0", "cc-by", "sampling+"})

#: Every class :func:`classify` can return.
CLASSES = (
    "cc0",
    "cc-by",
    "sampling+",
    "cc-by-nc",
    "cc-by-sa",
    "cc-by-nd",
    "cc-by-nc-sa",
    "cc-by-nc-nd",
    "nc-sampling+",
    "sampling",
    "pdm",
    "missing",
    "unknown",
)

# Freesound's `gen_ai_preference`: exactly these four values exist in its source
# (sounds/models.py); `no-additional-preferences` is the default every sound carries.
GENAI_DEFAULT = "no-additional-preferences"
GENAI_OPEN = "open-source-models"
GENAI_NONCOMMERCIAL = "noncommercial-open-source-models"
GENAI_NO = "no-gen-ai"
GENAI_VALUES = (GENAI_DEFAULT, GENAI_OPEN, GENAI_NONCOMMERCIAL, GENAI_NO)


@dataclass(frozen=True)
class LicenseDecision:
    raw: str
    license: str

    @property
    def allowed(self) -> bool:
        return self.license in ALLOWED


_VERSION = r"(?:[0-9]+(?:\.[0-9]+)?)"
# Path of a deed or legal code on creativecommons.org, with optional jurisdiction
# port (e.g. /licenses/by/3.0/nl/) and optional deed.xx / legalcode suffix.
_CC_PATH = re.compile(
    r"^/(?P<kind>licenses|publicdomain)/(?P<code>[a-z+\-]+)/(?P<version>" + _VERSION + r")/"
    r"(?:[a-z]{2}(?:-[a-z]{2})?/)?"
    r"(?:(?:deed(?:\.[a-z]{2}(?:[-_][a-z]{2,4})?)?|legalcode(?:\.[a-z]{2}(?:[-_][a-z]{2,4})?)?)/?)?$"
)
_URL_CODES = {
    ("publicdomain", "zero"): "cc0",
    ("publicdomain", "mark"): "pdm",
    ("licenses", "by"): "cc-by",
    ("licenses", "by-nc"): "cc-by-nc",
    ("licenses", "by-sa"): "cc-by-sa",
    ("licenses", "by-nd"): "cc-by-nd",
    ("licenses", "by-nc-sa"): "cc-by-nc-sa",
    ("licenses", "by-nc-nd"): "cc-by-nc-nd",
    ("licenses", "by-nd-nc"): "cc-by-nc-nd",
    ("licenses", "sampling+"): "sampling+",
    ("licenses", "nc-sampling+"): "nc-sampling+",
    ("licenses", "sampling"): "sampling",
}


def _classify_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or host not in (
        "creativecommons.org",
        "www.creativecommons.org",
    ):
        return "unknown"
    if parts.query or parts.fragment or parts.username or parts.port:
        return "unknown"
    path = parts.path.lower()
    if not path.endswith("/") and not re.search(r"/(deed|legalcode)[^/]*$", path):
        path += "/"
    m = _CC_PATH.match(path)
    if not m:
        return "unknown"
    return _URL_CODES.get((m["kind"], m["code"]), "unknown")


# Words that may appear in a license title without changing its meaning.
_NEUTRAL = {
    "creative", "commons", "cc", "license", "licence", "licensed", "international",
    "unported", "generic", "universal", "version", "v", "the", "under", "a", "deed",
    "public", "legal", "code",
    # jurisdiction ports that appear in published titles ("... 3.0 United States")
    "united", "states", "us", "usa", "uk", "england", "wales", "scotland", "germany",
    "france", "netherlands", "spain", "italy", "canada", "australia", "brazil", "japan",
}
_ELEMENT_WORDS = {
    "attribution": "by", "by": "by",
    "noncommercial": "nc", "nc": "nc", "non": "non", "commercial": "commercial",
    "noderivatives": "nd", "noderivs": "nd", "nd": "nd", "no": "no",
    "derivatives": "derivs", "derivs": "derivs", "derivative": "derivs", "works": "works",
    "sharealike": "sa", "sa": "sa", "share": "share", "alike": "alike",
    "sampling": "sampling", "plus": "plus",
    "zero": "zero", "cc0": "cc0", "0": "zero",
    "domain": "domain", "dedication": "dedication", "mark": "mark",
}


def _tokens(text: str) -> list[str]:
    t = text.lower().replace("sampling+", "sampling plus ").replace("cc-0", "cc0")
    t = re.sub(r"\bccby\b", "cc by", t)
    t = re.sub(r"[\-_/,;:()\[\]]+", " ", t)
    return [w for w in re.split(r"\s+", t.strip()) if w]


# FMA's title for CC BY-NC-ND 3.0 carries Creative Commons' old nickname for it.
_MUSIC_SHARING = re.compile(r"\(\s*aka\s+music\s+sharing\s*\)", re.I)


def _classify_text(raw: str) -> str:
    if _MUSIC_SHARING.search(raw):
        rest = _classify_text(_MUSIC_SHARING.sub(" ", raw))
        return rest if rest == "cc-by-nc-nd" else "unknown"
    words = _tokens(raw)
    if not words:
        return "missing"
    elems: list[str] = []
    for w in words:
        if re.fullmatch(r"\d+\.\d+|[1-4]", w) and w != "0":
            continue  # a version number
        if w in _NEUTRAL:
            continue
        if w in _ELEMENT_WORDS:
            elems.append(_ELEMENT_WORDS[w])
            continue
        return "unknown"
    # Fold multi-word elements into their codes.
    s = " ".join(elems)
    for pat, code in (
        (r"\bnon commercial\b", "nc"),
        (r"\bno derivs works\b|\bno derivs\b", "nd"),
        (r"\bshare alike\b", "sa"),
        (r"\bsampling plus\b", "sampling+"),
        (r"\bdomain dedication\b", "dedication"),
    ):
        s = re.sub(pat, code, s)
    toks = s.split()
    tset = set(toks)
    if len(toks) != len(tset):
        # "Attribution Attribution" and the like: not something we can read with certainty.
        return "unknown"
    if tset & {"non", "commercial", "no", "derivs", "works", "share", "alike", "plus", "sampling"}:
        return "unknown"
    nc, nd, sa = "nc" in tset, "nd" in tset, "sa" in tset
    if "sampling+" in tset:
        rest = tset - {"sampling+", "nc"}
        if rest:
            return "unknown"
        return "nc-sampling+" if nc else "sampling+"
    if tset & {"zero", "cc0"}:
        return "cc0" if tset <= {"zero", "cc0", "dedication"} else "unknown"
    if tset == {"mark"} or tset == {"domain", "mark"}:
        return "pdm"
    if tset == {"dedication"}:
        return "cc0"  # "Public Domain Dedication" (the CC0 deed's title)
    if "by" in tset or nc or nd or sa:
        if tset - {"by", "nc", "nd", "sa"}:
            return "unknown"
        if nd and sa:
            return "unknown"  # contradictory
        code = "cc-by" + ("-nc" if nc else "") + ("-nd" if nd else "") + ("-sa" if sa else "")
        return code
    return "unknown"


# The reverse of _URL_CODES: where each class's deed lives.
_DEED_PATHS = {cls: f"{kind}/{code}" for (kind, code), cls in _URL_CODES.items() if code != "by-nd-nc"}
# Classes with one version only: a title that names no version still names the deed.
_ONLY_VERSION = {"cc0": "1.0", "sampling+": "1.0", "nc-sampling+": "1.0", "pdm": "1.0"}
# Jurisdiction ports named in license titles ("... 3.0 United States"), as CC writes them in URLs.
_JURISDICTION_WORDS = [
    (("united", "states"), "us"), (("usa",), "us"), (("us",), "us"), (("uk",), "uk"), (("england",), "uk"),
    (("wales",), "uk"), (("scotland",), "scotland"), (("netherlands",), "nl"), (("germany",), "de"),
    (("france",), "fr"), (("spain",), "es"), (("italy",), "it"), (("canada",), "ca"), (("australia",), "au"),
    (("brazil",), "br"), (("japan",), "jp"),
]


@dataclass(frozen=True)
class LicenseTerms:
    """A license as far as a raw value names it: class, version ("" when not named) and
    jurisdiction port ("" for international/unported)."""

    license: str
    version: str
    jurisdiction: str


def license_terms(raw: object) -> LicenseTerms:
    dec = classify(raw)
    text = dec.raw.strip()
    if re.match(r"^https?://", text, re.I) or text.lower().startswith(("www.", "creativecommons.org")):
        path = urlsplit(text if "://" in text else "https://" + text).path.lower()
        m = re.match(r"^/(?:licenses|publicdomain)/[a-z+\-]+/(" + _VERSION + r")/(?:([a-z]{2}(?:-[a-z]{2})?)/)?", path)
        if m and dec.license not in ("unknown", "missing"):
            return LicenseTerms(dec.license, m.group(1), m.group(2) or "")
        return LicenseTerms(dec.license, "", "")
    words = _tokens(text)
    version = next((w for w in words if re.fullmatch(r"\d\.\d", w)), "")
    jurisdiction = ""
    for seq, code in _JURISDICTION_WORDS:
        if any(tuple(words[i:i + len(seq)]) == seq for i in range(len(words))):
            jurisdiction = code
            break
    return LicenseTerms(dec.license, version, jurisdiction)


def deed_url(raw: object) -> str:
    """The https deed URL of exactly the license a raw value names (class, version and port),
    or "" when the value does not name one version of an allowed or known license."""
    t = license_terms(raw)
    where = _DEED_PATHS.get(t.license)
    version = t.version or _ONLY_VERSION.get(t.license, "")
    if where is None or not version:
        return ""
    return f"https://creativecommons.org/{where}/{version}/" + (f"{t.jurisdiction}/" if t.jurisdiction else "")


def terms_conflict(a: LicenseTerms, b: LicenseTerms) -> str:
    """Why two statements of one recording's license disagree ("" when they agree): another
    class, or another version or port where both name one."""
    if a.license != b.license:
        return f"{a.license} vs {b.license}"
    if a.version and b.version and a.version != b.version:
        return f"version {a.version} vs {b.version}"
    if a.jurisdiction and b.jurisdiction and a.jurisdiction != b.jurisdiction:
        return f"jurisdiction {a.jurisdiction} vs {b.jurisdiction}"
    return ""


def classify(raw: object) -> LicenseDecision:
    """Normalise one raw license value (deed URL, Freesound name, FMA title)."""
    if raw is None or (isinstance(raw, float) and raw != raw):
        return LicenseDecision("", "missing")
    text = str(raw)
    stripped = text.strip()
    if not stripped:
        return LicenseDecision(text, "missing")
    if re.match(r"^[a-z][a-z0-9+.\-]*://", stripped, re.I) or stripped.lower().startswith(
        ("www.", "creativecommons.org")
    ):
        if not re.match(r"^https?://", stripped, re.I):
            stripped = "https://" + stripped
        return LicenseDecision(text, _classify_url(stripped))
    return LicenseDecision(text, _classify_text(stripped))


@dataclass(frozen=True)
class GenAIDecision:
    """What Freesound's `gen_ai_preference` says about this release, and which rule said it."""

    reason: str | None  # a reason code when the record must stay out, else None
    rule: str  # the rule that decided, in words, for the manifest and `curate explain`


def genai_decision(preference: object, present: bool, open_source_model: bool, noncommercial: bool,
                   require_preference: bool = False) -> GenAIDecision:
    """Decide one Freesound sound's `gen_ai_preference` against what the release declares:
    whether the model's weights are published (`open_source_model`) and whether it is for
    noncommercial use only (`noncommercial`). A value that is not one of Freesound's four
    fails closed."""
    if not present or preference is None:
        if require_preference:
            return GenAIDecision("genai_preference_missing",
                                 "absent: the response has no gen_ai_preference and require_genai_preference is set")
        return GenAIDecision(None, "absent: treated as the default, no-additional-preferences "
                                   "(a response from before the field existed)")
    p = str(preference).strip()
    if p == GENAI_DEFAULT:
        return GenAIDecision(None, "no-additional-preferences: allowed")
    if p == GENAI_OPEN:
        if open_source_model:
            return GenAIDecision(None, "open-source-models: allowed, the release declares an open-source model")
        return GenAIDecision("genai_closed_model", "open-source-models: the release does not declare an open-source model")
    if p == GENAI_NONCOMMERCIAL:
        if not open_source_model:
            return GenAIDecision("genai_closed_model", "noncommercial-open-source-models: the release does not "
                                                       "declare an open-source model")
        if not noncommercial:
            return GenAIDecision("genai_noncommercial_only", "noncommercial-open-source-models: the release is "
                                                             "not declared noncommercial")
        return GenAIDecision(None, "noncommercial-open-source-models: allowed, the release declares an "
                                   "open-source, noncommercial model")
    if p == GENAI_NO:
        return GenAIDecision("genai_opt_out", "no-gen-ai: the uploader opted out of generative AI training")
    return GenAIDecision("genai_preference_unknown", f"{p[:60]!r} is not one of Freesound's four values: fail closed")

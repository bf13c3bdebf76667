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

# Freesound's `gen_ai_preference` values.
GENAI_NO = "no-gen-ai"
GENAI_NONCOMMERCIAL = "noncommercial-open-source-models"


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


def _classify_text(raw: str) -> str:
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


def genai_exclusion(preference: object, release_noncommercial: bool) -> str | None:
    """Reason code when Freesound's `gen_ai_preference` forbids this use, else None."""
    if preference is None or (isinstance(preference, float) and preference != preference):
        return None
    p = str(preference).strip().lower()
    if p in ("", "none", "null"):
        return None
    if p == GENAI_NO:
        return "genai_opt_out"
    if p == GENAI_NONCOMMERCIAL:
        return None if release_noncommercial else "genai_noncommercial_only"
    if p in ("any", "all", "yes", "allow", "allowed"):
        return None
    # A value we do not know: fail closed.
    return "genai_preference_unknown"

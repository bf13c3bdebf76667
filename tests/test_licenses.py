import pytest

from curation.licenses.terms import GENAI_VALUES, classify, deed_url, genai_decision, license_terms, terms_conflict
from tests.conftest import curate

CASES = [
    # Freesound deed URLs, http or https, with or without deed.xx
    ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/deed.de", "cc0"),
    ("https://creativecommons.org/licenses/by/4.0/", "cc-by"),
    ("http://creativecommons.org/licenses/by/3.0/", "cc-by"),
    ("https://creativecommons.org/licenses/by/3.0/deed.pt_BR", "cc-by"),
    ("http://creativecommons.org/licenses/by/3.0/nl/", "cc-by"),
    ("http://creativecommons.org/licenses/sampling+/1.0/", "sampling+"),
    ("http://creativecommons.org/licenses/nc-sampling+/1.0/", "nc-sampling+"),
    ("http://creativecommons.org/licenses/by-nc/3.0/", "cc-by-nc"),
    ("https://creativecommons.org/licenses/by-nc/4.0/", "cc-by-nc"),
    ("https://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa"),
    ("https://creativecommons.org/licenses/by-nd/4.0/", "cc-by-nd"),
    ("https://creativecommons.org/licenses/by-nc-nd/4.0/legalcode", "cc-by-nc-nd"),
    ("creativecommons.org/licenses/by/4.0/", "cc-by"),
    # not on creativecommons.org, or odd: fail closed
    ("https://creativecommons.org.evil.example/licenses/by/4.0/", "unknown"),
    ("https://example.com/licenses/by/4.0/", "unknown"),
    ("ftp://creativecommons.org/licenses/by/4.0/", "unknown"),
    ("https://creativecommons.org/licenses/by/4.0/?x=1", "unknown"),
    ("https://creativecommons.org/licenses/foo/4.0/", "unknown"),
    # Freesound license names
    ("Creative Commons 0", "cc0"),
    ("Attribution", "cc-by"),
    ("Attribution NonCommercial", "cc-by-nc"),
    ("Sampling+", "sampling+"),
    # FMA free-text titles
    ("Attribution-NonCommercial-ShareAlike 3.0 International", "cc-by-nc-sa"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", "cc-by-nc-nd"),
    ("Attribution-NoDerivatives 4.0 International", "cc-by-nd"),
    ("Attribution-Noncommercial-Share Alike 3.0 United States", "cc-by-nc-sa"),
    # FMA's real title for BY-NC-ND 3.0, with Creative Commons' old nickname; the nickname on another license is not read
    ("Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International", "cc-by-nc-nd"),
    ("Attribution (aka Music Sharing)", "unknown"),
    ("Creative Commons Attribution 4.0", "cc-by"),
    ("CC0 1.0 Universal", "cc0"),
    ("Public Domain Mark 1.0", "pdm"),
    # common spellings
    ("CC BY 4.0", "cc-by"),
    ("cc-by", "cc-by"),
    ("CC-BY-NC 4.0", "cc-by-nc"),
    ("ccby", "cc-by"),
    ("CC0", "cc0"),
    # anything else
    ("", "missing"),
    ("   ", "missing"),
    ("All rights reserved", "unknown"),
    ("Attribution, no AI use", "unknown"),
    ("Free Art License", "unknown"),
    ("Attribution Attribution", "unknown"),
    ("FMA-Limited: Download Only", "unknown"),
]


@pytest.mark.parametrize("raw,expected", CASES)
def test_classify(raw, expected):
    d = classify(raw)
    assert d.license == expected
    assert d.allowed == (expected in {"cc0", "cc-by", "sampling+"})


def test_missing_values():
    assert classify(None).license == "missing"
    assert classify(float("nan")).license == "missing"


# (value, present, open_source_model, noncommercial, require) -> reason
GENAI = [
    ("no-additional-preferences", True, False, False, False, None),
    ("no-additional-preferences", True, True, False, False, None),
    ("open-source-models", True, True, False, False, None),
    ("open-source-models", True, False, False, False, "genai_closed_model"),
    ("open-source-models", True, False, True, False, "genai_closed_model"),
    ("noncommercial-open-source-models", True, True, True, False, None),
    ("noncommercial-open-source-models", True, True, False, False, "genai_noncommercial_only"),
    ("noncommercial-open-source-models", True, False, True, False, "genai_closed_model"),
    ("noncommercial-open-source-models", True, False, False, False, "genai_closed_model"),
    ("no-gen-ai", True, True, True, False, "genai_opt_out"),
    ("no-gen-ai", True, True, False, False, "genai_opt_out"),
    ("", False, True, False, False, None),
    ("", False, True, False, True, "genai_preference_missing"),
    ("", True, True, False, False, "genai_preference_unknown"),
    ("No-Gen-AI", True, True, False, False, "genai_preference_unknown"),
    ("any", True, True, False, False, "genai_preference_unknown"),
    ("something-new", True, True, True, False, "genai_preference_unknown"),
]


@pytest.mark.parametrize("pref,present,open_model,noncommercial,require,expected", GENAI)
def test_genai_preference_against_the_release_declaration(pref, present, open_model, noncommercial, require,
                                                         expected):
    d = genai_decision(pref, present, open_model, noncommercial, require)
    assert d.reason == expected
    # the rule names the value it read (or its absence)
    assert (pref in d.rule) if present and pref else ("absent" in d.rule or "not one of" in d.rule)


def test_the_four_values_are_freesounds_own():
    # exactly the choices of Freesound's sounds/models.py, with the default first
    assert GENAI_VALUES == ("no-additional-preferences", "open-source-models", "noncommercial-open-source-models",
                            "no-gen-ai")


@pytest.mark.parametrize("raw,deed", [
    ("http://creativecommons.org/licenses/by/3.0/", "https://creativecommons.org/licenses/by/3.0/"),
    ("http://creativecommons.org/licenses/by/3.0/nl/", "https://creativecommons.org/licenses/by/3.0/nl/"),
    ("https://creativecommons.org/licenses/by/4.0/deed.de", "https://creativecommons.org/licenses/by/4.0/"),
    ("http://creativecommons.org/publicdomain/zero/1.0/", "https://creativecommons.org/publicdomain/zero/1.0/"),
    ("http://creativecommons.org/licenses/sampling+/1.0/", "https://creativecommons.org/licenses/sampling+/1.0/"),
    ("Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    ("Attribution-Noncommercial-Share Alike 3.0 United States",
     "https://creativecommons.org/licenses/by-nc-sa/3.0/us/"),
    ("Attribution-Noncommercial-No Derivative Works 2.0 UK: England ",
     "https://creativecommons.org/licenses/by-nc-nd/2.0/uk/"),
    ("CC0 1.0 Universal", "https://creativecommons.org/publicdomain/zero/1.0/"),
    ("Attribution", ""),  # names no version: no deed can be named
    ("http://freemusicarchive.org/FMA_License", ""),
])
def test_deed_url_names_the_exact_license(raw, deed):
    assert deed_url(raw) == deed


def test_license_title_and_url_conflicts():
    t = license_terms
    assert terms_conflict(t("Attribution"), t("http://creativecommons.org/licenses/by/4.0/")) == ""
    assert terms_conflict(t("Attribution-NonCommercial-ShareAlike 3.0 International"),
                          t("http://creativecommons.org/licenses/by-nc-sa/3.0/")) == ""
    assert terms_conflict(t("Attribution-Noncommercial-Share Alike 3.0 United States"),
                          t("http://creativecommons.org/licenses/by-nc-sa/3.0/us/")) == ""
    assert "cc-by-nc" in terms_conflict(t("Attribution 3.0"), t("http://creativecommons.org/licenses/by-nc/3.0/"))
    assert "version" in terms_conflict(t("Attribution 3.0"), t("http://creativecommons.org/licenses/by/4.0/"))
    assert "jurisdiction" in terms_conflict(t("Attribution 3.0 United States"),
                                            t("http://creativecommons.org/licenses/by/3.0/nl/"))


def test_cli_classify_one_row_per_line_in_order():
    lines = ["Attribution", "", "https://creativecommons.org/licenses/by-nc/4.0/", "a,b \"quoted\"", "CC0"]
    proc = curate("licenses", "classify", input="\n".join(lines) + "\n")
    import csv
    import io

    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == ["raw", "license", "allowed"]
    assert [r[0] for r in rows[1:]] == lines
    assert [r[1:] for r in rows[1:]] == [
        ["cc-by", "true"], ["missing", "false"], ["cc-by-nc", "false"], ["unknown", "false"], ["cc0", "true"],
    ]

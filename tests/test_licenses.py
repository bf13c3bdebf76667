import pytest

from curation.licenses import classify, genai_exclusion
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


@pytest.mark.parametrize(
    "pref,noncommercial,expected",
    [
        (None, False, None),
        ("", False, None),
        ("no-gen-ai", False, "genai_opt_out"),
        ("no-gen-ai", True, "genai_opt_out"),
        ("noncommercial-open-source-models", False, "genai_noncommercial_only"),
        ("noncommercial-open-source-models", True, None),
        ("something-new", False, "genai_preference_unknown"),
    ],
)
def test_genai_preference(pref, noncommercial, expected):
    assert genai_exclusion(pref, noncommercial) == expected


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

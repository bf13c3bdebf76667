"""Generator A: artist names from syllables, titles from a 55-word list; true matches
varied as FMA might spell them (suffixes, feat., accents, punctuation, typos, artist order,
case); hard negatives: the same title by another artist, generic titles, the artist's other
songs. Shares no code with the matcher."""
from __future__ import annotations

import numpy as np
import pandas as pd

SYL = ("ka ri mo ne la to vi sa de lu ra pe zo mi ta no be ko fa gu shi ra yo el an or is us "
       "bar ten vel dor mar kin sol ric ton lem").split()
WORDS = ("love night heart fire dream light rain summer city blue river road home time dance sky "
         "gold shadow echo storm wild sweet broken silent golden electric lonely ocean moon star "
         "paper glass stone velvet neon winter autumn morning midnight highway garden mirror "
         "thunder ghost angel devil heaven sugar honey dust smoke").split()
GENERIC = ["Intro", "Outro", "Untitled", "Interlude", "Untitled 1", "Track 1", "Demo", "Theme", "Skit"]
ACCENTS = {"e": "é", "a": "á", "o": "ö", "u": "ü", "i": "í", "n": "ñ"}


def make_words(rng, n, pool):
    return " ".join(rng.choice(pool, size=n)).title()


def artist_name(rng) -> str:
    n = rng.integers(1, 3)
    parts = ["".join(rng.choice(SYL, size=rng.integers(2, 4))).capitalize() for _ in range(n)]
    name = " ".join(parts)
    return ("The " + name) if rng.random() < 0.1 else name


def typo(rng, s: str) -> str:
    letters = [i for i, c in enumerate(s) if c.isalpha()]
    if len(letters) < 3:
        return s
    i = int(rng.choice(letters[:-1]))
    kind = rng.integers(0, 3)
    if kind == 0 and i + 1 < len(s) and s[i + 1].isalpha():  # transposition: Lonely -> Lnoely
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    if kind == 1:  # deletion
        return s[:i] + s[i + 1 :]
    return s[:i] + ("e" if s[i] != "e" else "a") + s[i + 1 :]  # substitution


def make_catalogue(rng, n: int) -> tuple[pd.DataFrame, list[str]]:
    artists = list(dict.fromkeys(artist_name(rng) for _ in range(n // 3)))
    rows = []
    for i in range(n):
        a = artists[rng.integers(len(artists))]
        if rng.random() < 0.12:  # a collaboration
            a = a + ";" + artists[rng.integers(len(artists))]
        r = rng.random()
        if r < 0.02:
            title = GENERIC[rng.integers(len(GENERIC))]
        else:
            title = make_words(rng, rng.integers(1, 5), WORDS)
            if r < 0.08:
                title += rng.choice([" - Remastered 2011", " (Live)", " - Radio Edit", " (feat. Guest)"])
        rows.append((f"sp{i:07d}", a, "Album " + make_words(rng, 2, WORDS), title))
    return pd.DataFrame(rows, columns=["track_id", "artists", "album_name", "track_name"]), artists


def vary(rng, title: str, artists: str) -> tuple[str, str, str]:
    """A true match as FMA might spell it; returns title, artist and the variation's name."""
    base = title.split(" - ")[0].split(" (")[0]
    names = artists.split(";")
    kind = rng.choice(["exact", "suffix", "feat", "amp", "accent", "punct", "title_typo", "artist_typo",
                       "order", "comma", "case"])
    t, a = base, " & ".join(names)
    if kind == "suffix":
        t = base + rng.choice([" (Remastered 2011)", " - Radio Edit", " (Live at the Roxy)", " - 2015 Version",
                               " (Acoustic Version)", " [Extended Mix]"])
    elif kind == "feat":
        t = base + " (feat. " + make_words(rng, 1, SYL).capitalize() + ")"
    elif kind == "amp":
        a = " and ".join(names)
    elif kind == "accent":
        t = "".join(ACCENTS.get(c, c) if rng.random() < 0.3 else c for c in base)
    elif kind == "punct":
        t = base.replace(" ", rng.choice([" - ", ", ", "... ", "! "]), 1) + rng.choice(["!", "?", "'", ""])
    elif kind == "title_typo":
        t = typo(rng, base)
    elif kind == "artist_typo":
        a = typo(rng, a)
    elif kind == "order":
        a = " & ".join(reversed(names))
    elif kind == "comma":
        a = ", ".join(reversed(names) if rng.random() < 0.5 else names)
    elif kind == "case":
        t, a = base.upper(), a.lower()
    return t, a, str(kind)


def make_queries(rng, cat: pd.DataFrame, artists: list[str], n: int, positives: float = 0.1):
    rows = []
    cat_titles = cat["track_name"].to_numpy()
    cat_artists = cat["artists"].to_numpy()
    n_pos = int(n * positives)
    for i in range(n):
        if i < n_pos:
            j = rng.integers(len(cat))
            t, a, kind = vary(rng, cat_titles[j], cat_artists[j])
            rows.append((str(i + 1), t, a, True, kind))
            continue
        r = rng.random()
        if r < 0.08:  # same title, another artist
            j = rng.integers(len(cat))
            rows.append((str(i + 1), cat_titles[j].split(" - ")[0], artist_name(rng) + " Unknown", False, "same_title"))
        elif r < 0.14:  # generic title, another artist
            rows.append((str(i + 1), GENERIC[rng.integers(len(GENERIC))], artist_name(rng) + " Unknown", False,
                         "generic_title"))
        elif r < 0.22:  # an artist's other song
            a = artists[rng.integers(len(artists))]
            rows.append((str(i + 1), make_words(rng, 3, WORDS) + " " + make_words(rng, 2, SYL), a, False,
                         "other_song"))
        else:
            rows.append((str(i + 1), make_words(rng, rng.integers(1, 4), WORDS) + " " + make_words(rng, 1, SYL),
                         artist_name(rng) + " Unknown", False, "unrelated"))
    q = pd.DataFrame(rows, columns=["id", "title", "artist", "label", "kind"])
    return q.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def make(n_queries: int, n_catalogue: int, seed: int):
    rng = np.random.default_rng(seed)
    cat, artists = make_catalogue(rng, n_catalogue)
    return cat, make_queries(rng, cat, artists, n_queries)

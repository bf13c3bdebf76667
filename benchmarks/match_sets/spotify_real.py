"""Set C: real rows of the Spotify tracks table (`../shared/real/spotify/dataset.partial.csv`,
23,677 rows), split so that labels need no matcher.

Artists are split in two by a hash of the first credited artist. The catalogue holds the
first group's rows, less one song (title) in five of each artist's songs, held out.
- true matches: catalogue rows, as published or varied (version suffix added or dropped,
  artists joined with "&" or ",", case, accents, one typo);
- negatives, all real: the second group's rows whose artists appear nowhere in the first
  (real common titles by real other artists), and the held-out songs of catalogue artists
  whose base title (lower case, cut at " - " and " (") none of that artist's catalogue rows
  has (the artist's other songs).
Shares no code with the matcher or the generators.
"""
from __future__ import annotations

import hashlib
import random
import unicodedata
from pathlib import Path

import pandas as pd

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "real" / "spotify" / "dataset.partial.csv"


def base(t: str) -> str:
    """Lower case, cut at " - " and " (", letters and digits only, accents dropped."""
    t = unicodedata.normalize("NFD", t.split(" - ")[0].split(" (")[0].lower())
    return "".join(c for c in t if c.isalnum() and unicodedata.category(c) != "Mn")


def bucket(name: str) -> int:
    return hashlib.sha1(name.strip().lower().encode()).digest()[0] % 10


def make(n_queries: int = 0, n_catalogue: int = 0, seed: int = 7, source: Path = SOURCE):
    r = random.Random(seed)
    df = pd.read_csv(source, dtype=str, keep_default_na=False)[["track_id", "artists", "album_name", "track_name"]]
    df = df[(df["artists"] != "") & (df["track_name"] != "")].drop_duplicates(["artists", "track_name"])
    first = df["artists"].str.split(";").str[0]
    in_a = first.map(bucket) < 7
    a_rows, b_rows = df[in_a].copy(), df[~in_a].copy()
    a_rows["base"] = a_rows["track_name"].map(base)
    a_rows["first"] = first[in_a]
    held = set()
    for _, g in a_rows.groupby("first"):
        titles = sorted(set(g["base"]))
        if len(titles) >= 2:
            held.update((g["first"].iat[0], t) for t in r.sample(titles, max(1, len(titles) // 5)))
    is_held = [(f, b) in held for f, b in zip(a_rows["first"], a_rows["base"])]
    cat = a_rows[[not h for h in is_held]]
    out = a_rows[is_held]
    names_a = {n.strip().lower() for a in a_rows["artists"] for n in a.split(";")}
    cat_bases = {(n.strip().lower(), b) for a, b in zip(cat["artists"], cat["base"]) for n in a.split(";")}
    qs = []
    # the artists' other songs (negatives unless a version of it stayed in the catalogue)
    for _, row in out.iterrows():
        pos = any((n.strip().lower(), row["base"]) in cat_bases for n in row["artists"].split(";"))
        qs.append((row["track_name"], row["artists"].replace(";", " & "), pos, "held_out_song"))
    # other artists' songs
    for _, row in b_rows.iterrows():
        if any(n.strip().lower() in names_a for n in row["artists"].split(";")):
            continue
        qs.append((row["track_name"], row["artists"].replace(";", ", "), False, "other_artist"))
    n_neg = len(qs)
    for _, row in cat.sample(n=min(len(cat), max(1, n_neg // 4)), random_state=seed).iterrows():
        t, names = row["track_name"], row["artists"].split(";")
        kind = r.choice(["as_is", "suffix", "joined", "case", "accents", "typo"])
        a = ";".join(names)
        if kind == "suffix":
            t = t.split(" - ")[0].split(" (")[0] if " - " in t or " (" in t else t + r.choice([" - Remastered", " (Live)", " - Radio Edit"])
        elif kind == "joined":
            a = r.choice([" & ", ", "]).join(names)
        elif kind == "case":
            t, a = t.upper(), a.lower()
        elif kind == "accents":
            t = "".join(c for c in unicodedata.normalize("NFD", t) if unicodedata.category(c) != "Mn")
        elif kind == "typo":
            letters = [i for i, c in enumerate(t) if c.isalpha()]
            if len(letters) >= 5:
                i = r.choice(letters[1:-1])
                t = t[:i] + t[i + 1 :]
        qs.append((t, a, True, kind))
    q = pd.DataFrame(qs, columns=["title", "artist", "label", "kind"])
    q.insert(0, "id", [str(i + 1) for i in range(len(q))])
    return cat[["track_id", "artists", "album_name", "track_name"]].reset_index(drop=True), q

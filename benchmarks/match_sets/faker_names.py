"""Generator B: names and words from Faker (five locales, so accents are real), built to
hold the false positives an outside check found: common titles by two artists who share
only a filler word ("Amber Collective" / "Delta Collective", "The X" / "The Y"), credits of
several artists of which one word overlaps, and the same artist's other song sharing a word
("Golden Fire" / "Golden Tufe"). True matches are varied independently of generator A.
Shares no code with the matcher or with generator A."""
from __future__ import annotations

import random
import unicodedata

import pandas as pd
from faker import Faker

FILLERS = ["Collective", "Band", "Orchestra", "Quartet", "Trio", "Ensemble", "Project", "Sound System",
           "Brothers", "Crew", "Experience", "Allstars"]
PREFIXES = ["The", "DJ", "Lil", "MC", "Big", "Young"]
COMMON_TITLES = ["Love", "Intro", "Outro", "Home", "Echo", "Interlude", "Untitled", "Theme", "Forever", "Alone",
                 "Stay", "Run", "Dreams", "Tonight", "Hello", "Rain", "Fire", "Gold", "Paradise", "Heaven",
                 "Track 1", "Track 2", "Track 3", "Part 1", "Part 2", "Reprise", "Prelude", "Lullaby", "Home Again",
                 "Falling", "Summer", "Closer", "Breathe", "Wild", "Blue"]
SUFFIXES = [" - Remastered 2011", " - Live", " - Radio Edit", " (Live)", " - 2009 Remaster", " (Acoustic)",
            " - Single Version", " (Extended Mix)"]
KEYS = "qwertyuiopasdfghjklzxcvbnm"


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.fake = Faker(["en_US", "de_DE", "es_ES", "fr_FR", "it_IT"])
        self.fake.seed_instance(seed)

    def word(self) -> str:
        return self.fake.word().capitalize()

    def artist(self) -> str:
        r = self.r.random()
        if r < 0.35:
            return self.fake.name()
        if r < 0.6:
            return f"{self.word()} {self.r.choice(FILLERS)}"
        if r < 0.8:
            return f"{self.r.choice(PREFIXES)} {self.word() if self.r.random() < 0.5 else self.fake.first_name()}"
        return self.fake.last_name()

    def title(self) -> str:
        if self.r.random() < 0.12:
            return self.r.choice(COMMON_TITLES)
        return " ".join(w.capitalize() for w in self.fake.words(self.r.randint(1, 4)))

    def typo(self, s: str) -> str:
        idx = [i for i, c in enumerate(s) if c.isalpha()]
        if len(idx) < 4:
            return s
        i = self.r.choice(idx[1:-1])
        op = self.r.randrange(3)
        if op == 0:
            return s[:i] + s[i + 1] + s[i] + s[i + 2 :] if s[i + 1].isalpha() else s[:i] + s[i + 1 :]
        if op == 1:
            return s[:i] + s[i + 1 :]
        c = self.r.choice(KEYS.replace(s[i].lower(), ""))
        return s[:i] + c + s[i + 1 :]


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def base_title(t: str) -> str:
    return t.split(" - ")[0].split(" (")[0]


def make(n_queries: int, n_catalogue: int, seed: int):
    g = Gen(seed)
    artists = list(dict.fromkeys(g.artist() for _ in range(n_catalogue // 3)))
    rows = []
    for i in range(n_catalogue):
        a = g.r.choice(artists)
        if g.r.random() < 0.15:
            a += ";" + g.r.choice(artists)
        t = g.title()
        if g.r.random() < 0.08:
            t += g.r.choice(SUFFIXES)
        rows.append((f"fk{i:07d}", a, g.word() + " " + g.word(), t))
    cat = pd.DataFrame(rows, columns=["track_id", "artists", "album_name", "track_name"])
    # (base title, one credited artist) of every catalogue row: a negative that hits one is a collision
    seen = {(strip_accents(base_title(t).lower()), strip_accents(x.lower()))
            for t, a in zip(cat["track_name"], cat["artists"]) for x in a.split(";")}
    by_filler = {}
    for a in artists:
        for f in FILLERS + PREFIXES:
            if f in a.split():
                by_filler.setdefault(f, []).append(a)

    qs = []
    n_pos = n_queries // 10
    for i in range(n_queries):
        if i < n_pos:
            j = g.r.randrange(len(cat))
            t, names = base_title(cat.at[j, "track_name"]), cat.at[j, "artists"].split(";")
            kind = g.r.choice(["as_is", "suffix", "feat", "accents", "case", "title_typo", "artist_typo", "joined",
                               "order", "drop_the", "credit_feat", "credit_feat_unclosed"])
            a = " & ".join(names)
            if kind == "as_is":
                t = cat.at[j, "track_name"]
            elif kind == "suffix":
                t += g.r.choice(SUFFIXES)
            elif kind == "feat" and len(names) > 1:
                t, a = f"{t} (feat. {names[1]})", names[0]
            elif kind == "accents":
                t, a = strip_accents(t), strip_accents(a)
            elif kind == "case":
                t, a = t.upper(), a.lower()
            elif kind == "title_typo":
                t = g.typo(t)
            elif kind == "artist_typo":
                a = g.typo(a)
            elif kind == "joined":
                a = g.r.choice([", ", " and ", " / "]).join(names)
            elif kind == "order":
                a = ", ".join(reversed(names))
            elif kind == "drop_the" and a.startswith("The "):
                a = a[4:]
            elif kind in ("credit_feat", "credit_feat_unclosed"):
                # a guest in the credit, as FMA writes it: "Artist (feat. Guest)", and the same
                # with its bracket never closed (FMA's field cut short)
                guest = cat.at[g.r.randrange(len(cat)), "artists"].split(";")[0]
                a = f"{names[0]} (feat. {guest}" + (")" if kind == "credit_feat" else "")
            qs.append((str(i + 1), t, a, True, str(kind)))
            continue
        r = g.r.random()
        j = g.r.randrange(len(cat))
        t, a0 = base_title(cat.at[j, "track_name"]), cat.at[j, "artists"].split(";")[0]
        if r < 0.3:  # a common title by another artist sharing a filler word with one who has it
            t = g.r.choice(COMMON_TITLES)
            f = g.r.choice(list(by_filler))
            a, kind = (f"{g.word()} {f}" if f in FILLERS else f"{f} {g.word()}"), "filler_artist"
        elif r < 0.45:  # the same artist's other song, sharing a word
            words = t.split()
            words[g.r.randrange(len(words))] = g.word()
            t, a, kind = " ".join(words), a0, "other_song"
        elif r < 0.55:  # several artists, one word of which overlaps
            w = a0.split()[-1]
            a, kind = f"{g.fake.name()} & {g.word()} {w}", "credit_overlap"
        elif r < 0.65:  # the same title, another artist
            a, kind = g.artist(), "same_title"
        else:
            t, a, kind = g.title(), g.artist(), "unrelated"
        label = any((strip_accents(base_title(t).lower()), strip_accents(x.lower())) in seen for x in a.split(" & "))
        qs.append((str(i + 1), t, a, label, kind if not label else kind + "_collision"))
    q = pd.DataFrame(qs, columns=["id", "title", "artist", "label", "kind"])
    return cat, q.sample(frac=1.0, random_state=seed).reset_index(drop=True)

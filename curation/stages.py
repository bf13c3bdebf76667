"""The stages, in the order the flow runs them, and the table of reasons assembled from them.

Ingest makes the partitions; each per-partition stage is one `Stage` (curation/stage.py),
defined in its stage's folder, that says what it reads, writes and may decide, what keys its
completion marker, and what it loads once per worker; the duplicates step (between music and
copyright), review and the release are `FanIn` steps over every partition at once. The flow (flows/curate.py) runs this list; adding a stage
is adding its module and one line here."""
from __future__ import annotations

from .copyright.stage import COPYRIGHT
from .dedup.duplicates import DUPLICATES
from .dedup.stage import EVAL_SETS
from .licenses.stage import LICENSES
from .music.stage import MUSIC
from .quality.stage import QUALITY
from .release.stage import RELEASE
from .review.stage import REVIEW
from .sources.ingest import INGEST
from .stage import FanIn, Stage

#: What runs over each partition, in order.
PER_PARTITION: tuple[Stage, ...] = (LICENSES, EVAL_SETS, MUSIC, QUALITY, COPYRIGHT)
#: What runs between ingest and review, in order: the per-partition stages, and the duplicates
#: step over every partition at once (after the audio is checked, before copyright).
BETWEEN: tuple[Stage | FanIn, ...] = (LICENSES, EVAL_SETS, MUSIC, QUALITY, DUPLICATES, COPYRIGHT)
#: Every step, in the order a run takes them.
ALL: tuple[Stage | FanIn, ...] = (INGEST, *BETWEEN, REVIEW, RELEASE)
BY_NAME = {s.name: s for s in PER_PARTITION}


def _assemble(steps) -> tuple[dict[str, str], dict[str, str]]:
    meanings: dict[str, str] = {}
    owner: dict[str, str] = {}
    for s in steps:
        for code, meaning in s.reasons.items():
            if code in owner:
                raise RuntimeError(f"reason {code} is declared by both {owner[code]} and {s.name}")
            meanings[code], owner[code] = meaning, s.name
    return meanings, owner


#: Every reason code a record can carry (a value of the manifest's `reason` column; the empty
#: string means "included"), with its meaning, and the step that sets it.
REASONS, REASON_STEP = _assemble(ALL)

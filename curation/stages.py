"""The per-partition stages, in the order the flow runs them: each one `Stage` (curation/stage.py),
defined in its stage's folder, that says what it reads, writes and may decide, what keys its
completion marker, and what it loads once per worker. The flow (flows/curate.py) runs this list;
adding a stage is adding its module and one line here."""
from __future__ import annotations

from .copyright.stage import COPYRIGHT
from .licenses.stage import LICENSES
from .music.stage import MUSIC
from .stage import Stage

#: What runs over each partition, in order.
PER_PARTITION: tuple[Stage, ...] = (LICENSES, MUSIC, COPYRIGHT)
BY_NAME = {s.name: s for s in PER_PARTITION}

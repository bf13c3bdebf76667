"""The run configuration: one TOML file, validated up front.

Relative paths are relative to the config file. A bad value stops the run with a
:class:`ConfigError` that names the key (and the path, for paths).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config problem, worded for the person who wrote the file."""


@dataclass
class FreesoundAPIConfig:
    query: str = ""
    filter: str = ""
    base_url: str = "https://freesound.org/apiv2"
    page_size: int = 150
    max_pages: int = 0  # pages a run fetches at most; 0: no limit
    daily_budget: int = 2000  # API requests per sliding 24 h, all runs together (Freesound's default limit)
    per_minute: int = 60  # API requests per minute (Freesound's default limit)
    # Sounds fetched this many days ago or more are fetched again (oldest first, with the budget
    # new uploads leave) to see changed licenses, gen-AI preferences and deletions; 0: never.
    refresh_days: float = 30.0
    # Each run also searches this many days behind the cursor for sounds never fetched: a sound
    # is indexed only once moderated, which can take weeks, and keeps its upload time; 0: never.
    lookback_days: float = 30.0
    token_env: str = "FREESOUND_API_TOKEN"
    token_secret_block: str = ""  # name of a Prefect Secret block
    oauth_token_env: str = "FREESOUND_OAUTH_TOKEN"  # originals need OAuth2
    download: str = "preview"  # preview | original
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0


@dataclass
class FreesoundConfig:
    pages_dir: Path | None = None
    audio_dir: Path | None = None
    api: FreesoundAPIConfig | None = None
    # true: a sound whose response lacks gen_ai_preference is excluded (genai_preference_missing)
    # rather than treated as Freesound's default
    require_genai_preference: bool = False


@dataclass
class FMAConfig:
    tracks_csv: Path | None = None
    audio_dir: Path | None = None
    # FMA's raw_tracks.csv: the track page URLs and license URLs that tracks.csv lacks
    raw_tracks_csv: Path | None = None
    # false: a CC BY track whose URL had to be derived (raw_tracks.csv has no track_url) is
    # excluded as attribution_incomplete instead of attributed with the derived URL
    derived_urls: bool = True


@dataclass
class MusicConfig:
    checkpoint: Path | None = None
    labels_csv: Path | None = None
    threshold: float = 0.15
    min_music_seconds: float = 30.0
    # Second rule, off at 0: a clip shorter than min_music_seconds is music when at least
    # this fraction of its frames is music.
    min_music_fraction: float = 0.0
    batch_size: int = 8
    # Audio in one model call, which bounds the activations' memory (a 62 s input needs about
    # 250 MB on the CPU); 0 picks 64 s on the CPU and 512 s on a GPU.
    max_batch_seconds: float = 0.0
    workers: int = 2  # decode/resample processes beside the model; 0 decodes in the main process
    chunk_seconds: float = 60.0  # longer recordings are scored in chunks of this length
    # ... after these first chunks (seconds): the first minute is cut finer so that scoring can
    # stop at 31, 41, 51 or 61 s once a recording is music. Both `measure` modes cut the same.
    first_chunks: list = field(default_factory=lambda: [31.0, 10.0, 10.0, 10.0])
    # "decide": score a recording until the rule is settled (music once min_music_seconds of
    # frames pass; a recording shorter than that, with min_music_fraction = 0, is never music
    # and is not scored); music_seconds is then a lower bound. "full": score every second.
    # Decisions are the same either way.
    measure: str = "decide"
    # What the model is for, per source: "score" runs it; "source" takes every recording of
    # the source as music without it (the audio is still decoded and checked). The defaults
    # are what the copyright stage needs: it checks every FMA track against the catalogue
    # whatever the model says, and sends only Freesound music to audio identification.
    fma: str = "source"
    freesound: str = "score"
    context_seconds: float = 1.0  # audio either side of a chunk that the model sees but is not counted
    device: str = "auto"  # auto | cpu | cuda
    top_labels: int = 3
    cache_dir: Path | None = None  # default $CURATION_MUSIC_CACHE_DIR or OUT/work/music_cache; may be shared between runs


@dataclass
class HttpIdConfig:
    """A commercial audio identification service behind a generic HTTP adapter."""

    endpoint: str = ""
    file_field: str = "file"  # multipart field the audio is uploaded in
    fields: dict = field(default_factory=dict)  # more form fields; "{source}", "{id}", "{url}" are filled in
    auth_header: str = "Authorization"
    auth_prefix: str = "Bearer "
    token_env: str = "AUDIO_ID_TOKEN"
    token_secret_block: str = ""  # a Prefect Secret block, when the variable is not set
    match_path: str = "matched"  # dotted path in the JSON answer: true / a non-empty list means a match
    evidence_paths: dict = field(default_factory=dict)  # name -> dotted path, copied into the evidence
    min_interval_s: float = 1.0  # rate limit: at least this long between requests
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0


@dataclass
class AcoustIdConfig:
    """AcoustID lookups of Chromaprint fingerprints (curation/copyright/acoustid.py)."""

    endpoint: str = "https://api.acoustid.org/v2/lookup"
    key_env: str = "ACOUSTID_API_KEY"  # the application key
    key_secret_block: str = ""  # a Prefect Secret block, when the variable is not set
    min_score: float = 0.8  # a result at least this sure sends the recording to review
    fpcalc: str = "fpcalc"
    max_seconds: int = 120  # fingerprint the first two minutes, as AcoustID's clients do
    min_interval_s: float = 0.34  # AcoustID asks for at most 3 requests a second
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0


@dataclass
class AcrCloudConfig:
    """ACRCloud's identify API (curation/copyright/acrcloud.py)."""

    endpoint: str = ""  # e.g. https://identify-eu-west-1.acrcloud.com/v1/identify (your project's host)
    access_key_env: str = "ACRCLOUD_ACCESS_KEY"
    access_key_secret_block: str = ""
    access_secret_env: str = "ACRCLOUD_ACCESS_SECRET"
    access_secret_secret_block: str = ""
    sample_seconds: float = 12.0  # ACRCloud advises samples under 15 s
    min_interval_s: float = 1.0
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0


@dataclass
class CopyrightConfig:
    spotify_tracks_csv: Path | None = None
    review_decisions: Path | None = None
    audio_backend: str = "review"  # review | fingerprint | http | acoustid | acrcloud
    fingerprint_index: Path | None = None  # built with `curate fingerprint index`
    # a fingerprint match must be this unlikely by chance (estimated false-match probability)
    fingerprint_max_false_match: float = 1e-10  # fingerprint.MAX_FALSE_MATCH
    http: HttpIdConfig | None = None
    acoustid: AcoustIdConfig | None = None
    acrcloud: AcrCloudConfig | None = None
    # metadata matching (see curation/copyright/metadata_match.py): the title equal or one
    # typo away, and the best credited artist's weighted word overlap at least artist_min, or
    # artist_common_title for a title that common_title_artists catalogue artists use or that
    # is short_title_chars long or less
    artist_min: float = 0.75
    artist_common_title: float = 0.9
    common_title_artists: int = 3
    short_title_chars: int = 5


@dataclass
class DedupConfig:
    # Published lists of public evaluation sets cut from Freesound (ESC-50, UrbanSound8K, FSD50K,
    # Clotho, DCASE Task 6, WavCaps, FSDKaggle2018, or plain `source,id` CSVs; see
    # curation/dedup/eval_lists.py): a sound one names is excluded (`eval_set`).
    eval_lists: list[Path] = field(default_factory=list)
    # Folders of evaluation audio (clips cut from Freesound sounds, ids unknown): a recording
    # that holds one is excluded (`eval_overlap`).
    eval_audio_dirs: list[Path] = field(default_factory=list)
    # An excerpt is a copy when it covers at least this share of the shorter recording.
    excerpt_min_share: float = 0.9
    # Also group copies played up to 5% faster or slower, stretched or moved by up to one
    # semitone (kind `derived`); false: only exact, near and excerpt copies.
    derived: bool = True
    # Where prints are kept between runs (by audio content); default OUT/work/prints.
    cache_dir: Path | None = None
    # Which copy of a group is kept (after a reviewer's clear and the last release's copy):
    # "obligations" (CC0, CC BY, CC Sampling+, then the lowest id) or "quality" (lossless,
    # then the higher sample rate, then obligations).
    keep: str = "obligations"


@dataclass
class QualityConfig:
    """What the samples say (curation/quality): each reason "exclude", "flag" (kept, noted in the
    sample metadata) or "off", and its threshold. Defaults from real files (README: Quality)."""

    silent: str = "exclude"  # audio_silent: this share of 50 ms frames below -60 dBFS, or more
    silent_min_share: float = 0.98
    dead_channel: str = "exclude"  # audio_dead_channel: one channel this far below -60 dBFS while another plays
    dead_channel_dbfs: float = -70.0
    clipped: str = "flag"  # audio_clipped: this share of samples in runs at full scale, or more
    clipped_min_share: float = 0.002
    low_bandwidth: str = "flag"  # audio_low_bandwidth: content stops below this share of the Nyquist frequency
    min_bandwidth_share: float = 0.4
    phase_inverted: str = "flag"  # audio_phase_inverted: the channels' correlation below 150 Hz this low, or lower
    max_correlation: float = -0.5
    dc_offset: str = "flag"  # audio_dc_offset: median 1 s mean this far from zero, or more
    max_dc_offset: float = 0.1


@dataclass
class ReleaseConfig:
    shard_max_records: int = 1000
    shard_dir: Path | None = None  # default OUT/release/shards; may be an object store URL
    name: str = "Curated CC audio"  # the dataset's name on its card
    # A CSV `source,id,reason,requested_at`: records that leave the next release for good.
    takedowns: Path | None = None
    # What the release declares, against which Freesound's gen_ai_preference is read:
    open_source_model: bool = True  # the trained model's weights are published
    noncommercial: bool = False  # the model is for noncommercial use only


@dataclass
class TrainingConfig:
    enabled: bool = False
    model_config: Path | None = None
    steps: int = 4
    batch_size: int = 2
    prompt: str = "ambient field recording with birds"
    seconds: float = 1.0
    generation_steps: int = 4
    hf_home: Path | None = None  # a Hugging Face cache holding the T5 weights (offline)
    pretrained_ckpt_path: Path | None = None  # e.g. Stable Audio Open 1.0's model.safetensors
    seed: int = 42


@dataclass
class DeploymentConfig:
    """`curate deploy`: the Prefect deployment of this config's flow."""

    name: str = "daily"
    work_pool: str = "curation"
    cron: str = "0 3 * * *"  # every day at 03:00
    timezone: str = "UTC"
    interval_seconds: int = 0  # > 0: every this many seconds instead of the cron schedule


@dataclass
class Config:
    path: Path
    output_dir: Path
    freesound: FreesoundConfig = field(default_factory=FreesoundConfig)
    fma: FMAConfig = field(default_factory=FMAConfig)
    music: MusicConfig = field(default_factory=MusicConfig)
    copyright: CopyrightConfig = field(default_factory=CopyrightConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    task_runner: str = "local"  # local | dask
    dask_address: str = ""
    # Records a partition holds: the unit each stage task reads, writes, retries and skips.
    partition_records: int = 100_000
    # Processes that parse saved Freesound pages at ingest (0: one per core).
    ingest_workers: int = 0

    @property
    def work_dir(self) -> Path:
        return self.output_dir / "work"

    # Paths the work area keeps (partitions, audio files, settings in completion markers) are
    # written relative to the output folder ($OUT) or the config's folder ($CONFIG) where they
    # lie under one, so a copied or moved folder resumes instead of starting over.
    def portable(self, p) -> str:
        from .storage import is_remote, url

        if p is None or p == "":
            return ""
        if is_remote(p) or "://" in str(p):
            return url(p)
        s = str(p)
        if s.startswith(("$OUT/", "$CONFIG/")) or s in ("$OUT", "$CONFIG"):
            return s
        path = Path(s)
        for token, root in (("$OUT", self.output_dir), ("$CONFIG", self.path.parent)):
            if isinstance(root, Path):
                try:
                    rel = path.relative_to(root)
                except ValueError:
                    continue
                return token if str(rel) == "." else f"{token}/{rel.as_posix()}"
        return s

    def resolve(self, s):
        """A path `portable` wrote, back to a path (a store URL as a UPath)."""
        from .storage import as_path

        s = str(s or "")
        for token, root in (("$OUT", self.output_dir), ("$CONFIG", self.path.parent)):
            if s == token:
                return root
            if s.startswith(token + "/"):
                return as_path(f"{root}/{s[len(token) + 1:]}") if not isinstance(root, Path) \
                    else root / s[len(token) + 1:]
        return as_path(s) if s else None

    @property
    def shard_dir(self) -> Path:
        return self.release.shard_dir if self.release.shard_dir is not None else self.output_dir / "release" / "shards"


# Paths that may be object store URLs (s3://bucket/key, through fsspec): the inputs, the
# output folder and the shard folder. The rest (models, indexes, review decisions) are local.
URL_KEYS = {"output_dir", "freesound.pages_dir", "freesound.audio_dir", "fma.tracks_csv", "fma.audio_dir",
            "fma.raw_tracks_csv", "copyright.spotify_tracks_csv", "release.shard_dir",
            "release.takedowns"}


def _path_value(name: str, value: Any, base: Path):
    """A config path: a URL (for the keys in URL_KEYS) as a UPath, else relative to the config."""
    from .storage import as_path, is_url

    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key '{name}' must be a non-empty path string")
    if is_url(value):
        if name not in URL_KEYS:
            raise ConfigError(f"config key '{name}' must be a local path, not a URL ({value})")
        scheme = value.split("://", 1)[0]
        try:
            import fsspec

            fsspec.get_filesystem_class(scheme)
        except (ImportError, ValueError) as e:
            raise ConfigError(f"config key '{name}': no filesystem for '{scheme}://' ({e})") from None
        return as_path(value)
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _check_exists(name: str, p, want_dir: bool) -> None:
    try:
        ok = p.is_dir() if want_dir else p.is_file()
    except Exception as e:  # a store that cannot be reached or refuses the credentials
        raise ConfigError(f"config key '{name}': cannot read {p}: {type(e).__name__}: {e}") from None
    if not ok:
        try:
            other = p.is_file() if want_dir else p.is_dir()
        except Exception:
            other = False
        if other:
            raise ConfigError(f"config key '{name}': {p} is a {'file' if want_dir else 'folder'}, "
                              f"expected a {'folder' if want_dir else 'file'}")
        raise ConfigError(f"config key '{name}': {'folder' if want_dir else 'file'} not found: {p}")


def _fill(obj: Any, table: dict, section: str, base: Path, *, required_dirs=(), required_files=(), check=True):
    known = obj.__dataclass_fields__
    for key, value in table.items():
        name = f"{section}.{key}" if section else key
        if key not in known:
            raise ConfigError(f"unknown config key '{name}'")
        current = getattr(obj, key)
        ftype = known[key].type
        if str(ftype).startswith("list[Path"):
            if not isinstance(value, list):
                raise ConfigError(f"config key '{name}' must be a list of paths, got {type(value).__name__} {value!r}")
            setattr(obj, key, [_path_value(f"{name}[{i}]", v, base) for i, v in enumerate(value)])
            continue
        if "Path" in str(ftype):
            setattr(obj, key, _path_value(name, value, base))
            continue
        expected = type(current) if current is not None else str
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(
                f"config key '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
            )
        setattr(obj, key, value)
    for key in required_dirs if check else ():
        if getattr(obj, key) is not None:
            _check_exists(f"{section}.{key}", getattr(obj, key), True)
    for key in required_files if check else ():
        if getattr(obj, key) is not None:
            _check_exists(f"{section}.{key}", getattr(obj, key), False)


# Tables inside sections ([freesound.api], [copyright.http]) and the type each fills.
_SUBTABLES = {"freesound": {"api": FreesoundAPIConfig},
              "copyright": {"http": HttpIdConfig, "acoustid": AcoustIdConfig, "acrcloud": AcrCloudConfig}}


# Top-level integer keys and the least value each may take.
_COUNTS = {"partition_records": 1, "ingest_workers": 0}


def load_config(path: str | Path, check_inputs: bool = True) -> Config:
    """The config at `path`, validated. `check_inputs=False` (for verbs that read only the
    output folder: explain, audit) does not require the input files and folders to exist."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    base = path.resolve().parent
    if "output_dir" not in data:
        raise ConfigError("config key 'output_dir' is required")
    cfg = Config(path=path.resolve(), output_dir=_path_value("output_dir", data.pop("output_dir"), base))

    sections = {
        "freesound": (cfg.freesound, ("pages_dir", "audio_dir"), ()),
        "fma": (cfg.fma, ("audio_dir",), ("tracks_csv", "raw_tracks_csv")),
        "music": (cfg.music, (), ("checkpoint", "labels_csv")),
        "copyright": (cfg.copyright, ("fingerprint_index",), ("spotify_tracks_csv", "review_decisions")),
        "dedup": (cfg.dedup, (), ()),  # the lists are read whole before a run (curation/inputs.py)
        "quality": (cfg.quality, (), ()),
        "release": (cfg.release, (), ("takedowns",)),
        "training": (cfg.training, ("hf_home",), ("model_config", "pretrained_ckpt_path")),
        "deployment": (cfg.deployment, (), ()),
    }
    for key, value in data.items():
        if key in ("task_runner", "dask_address"):
            if not isinstance(value, str):
                raise ConfigError(f"config key '{key}' must be a string")
            setattr(cfg, key, value)
            continue
        if key in _COUNTS:
            if not isinstance(value, int) or isinstance(value, bool) or value < _COUNTS[key]:
                raise ConfigError(f"config key '{key}' must be an integer >= {_COUNTS[key]}")
            setattr(cfg, key, value)
            continue
        if key not in sections:
            raise ConfigError(f"unknown config key '{key}'")
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a table ([{key}])")
        obj, dirs, files = sections[key]
        table = dict(value)
        for sub, factory in _SUBTABLES.get(key, {}).items():
            if sub in table:
                inner = table.pop(sub)
                if not isinstance(inner, dict):
                    raise ConfigError(f"config key '{key}.{sub}' must be a table")
                setattr(obj, sub, factory())
                _fill(getattr(obj, sub), inner, f"{key}.{sub}", base)
        _fill(obj, table, key, base, required_dirs=dirs, required_files=files, check=check_inputs)

    q = cfg.quality
    for name in ("silent", "dead_channel", "clipped", "low_bandwidth", "phase_inverted", "dc_offset"):
        if getattr(q, name) not in ("exclude", "flag", "off"):
            raise ConfigError(f"config key 'quality.{name}' must be 'exclude', 'flag' or 'off'")
    for name in ("silent_min_share", "clipped_min_share", "min_bandwidth_share"):
        if not 0.0 <= getattr(q, name) <= 1.0:
            raise ConfigError(f"config key 'quality.{name}' must be in [0, 1]")
    d = cfg.dedup
    if d.keep not in ("obligations", "quality"):
        raise ConfigError("config key 'dedup.keep' must be 'obligations' or 'quality'")
    if not 0.0 < d.excerpt_min_share <= 1.0:
        raise ConfigError("config key 'dedup.excerpt_min_share' must be in (0, 1]")
    for folder in d.eval_audio_dirs if check_inputs else ():
        if not Path(folder).is_dir():
            raise ConfigError(f"config key 'dedup.eval_audio_dirs': not a folder: {folder}")
    if cfg.task_runner not in ("local", "dask"):
        raise ConfigError("config key 'task_runner' must be 'local' or 'dask'")
    fs = cfg.freesound
    if fs.api is None and (fs.pages_dir is None) != (fs.audio_dir is None):
        raise ConfigError("config keys 'freesound.pages_dir' and 'freesound.audio_dir' go together")
    if fs.api is not None and fs.api.download not in ("preview", "original"):
        raise ConfigError("config key 'freesound.api.download' must be 'preview' or 'original'")
    if fs.api is not None and (fs.api.daily_budget < 1 or fs.api.per_minute < 0 or fs.api.refresh_days < 0
                               or fs.api.lookback_days < 0):
        raise ConfigError("config keys 'freesound.api.daily_budget' (>= 1), 'freesound.api.per_minute' "
                          "(>= 0, 0: no pacing), 'freesound.api.refresh_days' and 'freesound.api.lookback_days' (>= 0) "
                          "are out of range")
    if fs.api is not None and not 1 <= fs.api.page_size <= 150:
        raise ConfigError("config key 'freesound.api.page_size' must be between 1 and 150")
    if (cfg.fma.tracks_csv is None) != (cfg.fma.audio_dir is None):
        raise ConfigError("config keys 'fma.tracks_csv' and 'fma.audio_dir' go together")
    if fs.pages_dir is None and fs.api is None and cfg.fma.tracks_csv is None:
        raise ConfigError("nothing to ingest: configure [freesound] and/or [fma]")
    m = cfg.music
    if m.checkpoint is None:
        raise ConfigError("config key 'music.checkpoint' is required (run `curate models fetch`)")
    if m.labels_csv is None:  # the AudioSet class list the package ships
        from .data import audioset_labels_csv

        m.labels_csv = audioset_labels_csv()
    if not 0.0 < m.threshold <= 1.0:
        raise ConfigError("config key 'music.threshold' must be in (0, 1]")
    if m.min_music_seconds <= 0:
        raise ConfigError("config key 'music.min_music_seconds' must be positive")
    if not 0.0 <= m.min_music_fraction <= 1.0:
        raise ConfigError("config key 'music.min_music_fraction' must be in [0, 1] (0 turns the rule off)")
    if m.batch_size < 1 or m.workers < 0:
        raise ConfigError("config keys 'music.batch_size' (>= 1) and 'music.workers' (>= 0) are out of range")
    if m.chunk_seconds < 2 or not 0 <= m.context_seconds <= m.chunk_seconds / 2:
        raise ConfigError("config keys 'music.chunk_seconds' (>= 2) and 'music.context_seconds' "
                          "(0 to chunk_seconds / 2) are out of range")
    if not isinstance(m.first_chunks, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 2 for x in m.first_chunks):
        raise ConfigError("config key 'music.first_chunks' must be a list of chunk lengths in seconds, each >= 2")
    m.first_chunks = [float(x) for x in m.first_chunks]
    if m.measure not in ("decide", "full"):
        raise ConfigError("config key 'music.measure' must be 'decide' or 'full'")
    for src in ("fma", "freesound"):
        if getattr(m, src) not in ("score", "source"):
            raise ConfigError(f"config key 'music.{src}' must be 'score' or 'source'")
    if m.device not in ("auto", "cpu", "cuda"):
        raise ConfigError("config key 'music.device' must be 'auto', 'cpu' or 'cuda'")
    if cfg.fma.tracks_csv is not None and cfg.copyright.spotify_tracks_csv is None:
        raise ConfigError("config key 'copyright.spotify_tracks_csv' is required when [fma] is set")
    if cfg.copyright.audio_backend not in ("review", "fingerprint", "http", "acoustid", "acrcloud"):
        raise ConfigError("config key 'copyright.audio_backend' must be 'review', 'fingerprint', 'http', "
                          "'acoustid' or 'acrcloud'")
    if cfg.copyright.audio_backend == "acrcloud" and (cfg.copyright.acrcloud is None
                                                     or not cfg.copyright.acrcloud.endpoint):
        raise ConfigError("config key 'copyright.acrcloud.endpoint' is required with audio_backend = 'acrcloud' "
                          "(your project's host, e.g. https://identify-eu-west-1.acrcloud.com/v1/identify)")
    if cfg.copyright.audio_backend == "http" and (cfg.copyright.http is None or not cfg.copyright.http.endpoint):
        raise ConfigError("config key 'copyright.http.endpoint' is required with audio_backend = 'http'")
    if cfg.copyright.audio_backend == "fingerprint" and cfg.copyright.fingerprint_index is None:
        raise ConfigError("config key 'copyright.fingerprint_index' is required with audio_backend = 'fingerprint'")
    d = cfg.deployment
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", d.name) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*",
                                                                                     d.work_pool):
        raise ConfigError("config keys 'deployment.name' and 'deployment.work_pool' must be names "
                          "(letters, digits, '.', '_', '-')")
    if "deployment" in data:  # Prefect's own schedule type says what it accepts
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=d.cron, timezone=d.timezone)
        except ValidationError as e:
            raise ConfigError(f"config keys 'deployment.cron' / 'deployment.timezone': "
                              f"{e.errors()[0]['msg']}") from None
        if d.interval_seconds < 0:
            raise ConfigError("config key 'deployment.interval_seconds' must be >= 0 (0: the cron schedule)")
    if cfg.release.shard_max_records < 1:
        raise ConfigError("config key 'release.shard_max_records' must be >= 1")
    if cfg.training.enabled and cfg.training.model_config is None:
        raise ConfigError("config key 'training.model_config' is required when training is enabled")
    from .storage import is_remote

    if cfg.training.enabled and is_remote(cfg.shard_dir):
        raise ConfigError("training reads the shards from a local folder: with training enabled, "
                          "'output_dir' / 'release.shard_dir' must be local paths")
    return cfg

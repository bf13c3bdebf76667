"""The dataset card (README.md) of a release version, in the Hugging Face dataset-card format:
a YAML header the Hub reads (licenses, size, task, where the data files are), then the text."""
from __future__ import annotations

import re

import yaml

from .writers import sample_features_yaml

# Our license classes as the Hub's license identifiers (CC BY by deed version).
_HUB_BY = {"1.0": "cc-by-1.0", "2.0": "cc-by-2.0", "2.5": "cc-by-2.5", "3.0": "cc-by-3.0", "4.0": "cc-by-4.0"}
SAMPLING_PLUS = ("cc-sampling-plus-1.0", "https://creativecommons.org/licenses/sampling+/1.0/")


def hub_license(license_class: str, deed_url: str) -> str:
    if license_class == "cc0":
        return "cc0-1.0"
    if license_class == "cc-by":
        m = re.search(r"/licenses/by/([0-9.]+)/", deed_url or "")
        return _HUB_BY.get(m.group(1), "other") if m else "other"
    return "other"  # CC Sampling+ has no Hub identifier


def size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    for limit, name in bounds:
        if n < limit:
            return name
    return "10M<n<100M"


def _classes(info: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for per in info["licenses"].values():
        for cls, n in per.items():
            out[cls] = out.get(cls, 0) + n
    return out


def dataset_card(info: dict) -> str:
    hub = sorted({hub_license(c, u) for u, c in _deed_classes(info)})
    header = {
        "pretty_name": f"{info.get('name') or 'Curated CC audio'} ({info['version']})",
        "license": hub if len(hub) > 1 else hub[0] if hub else "other",
        "size_categories": [size_category(info["records"]["total"])],
        "task_categories": ["text-to-audio"],
        "tags": ["audio", "webdataset", "creative-commons", "freesound", "free-music-archive"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.tar"}]}],
        # declared, so that a loader infers nothing from the first shard (whose records may all
        # have empty tags, say)
        "dataset_info": {"features": sample_features_yaml()},
    }
    if "sampling+" in _classes(info):
        header["license_name"], header["license_link"] = SAMPLING_PLUS
    mm = info.get("music_model") or {}
    by_source = info["records"]["by_source"]
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        f"# {info.get('name') or 'Curated CC audio'}, release {info['version']}",
        "",
        f"{info['records']['total']} recordings, {info['seconds']['hours']} hours, in "
        f"{info['shards']['count']} WebDataset shards (`shards/*.tar`: `KEY.flac`, 44.1 kHz stereo, and "
        "`KEY.json`, the text prompt and the record's metadata)."
        + (f" Parent version: {info['parent']}." if info.get("parent") else " First version."),
        "",
        "| source | recordings | seconds | licenses |",
        "|---|---|---|---|",
    ]
    for source in sorted(by_source):
        lic = ", ".join(f"{k} {v}" for k, v in info["licenses"].get(source, {}).items())
        lines.append(f"| {source} | {by_source[source]} | {info['seconds']['by_source'].get(source, 0)} | {lic} |")
    lines += [
        "",
        "## Sources",
        "- Freesound (freesound.org), through its APIv2: sounds, their licenses and uploaders' "
        "generative-AI preferences.",
        "- The Free Music Archive (`fma_metadata/tracks.csv`): full tracks and their licenses.",
        "",
        "## How recordings were chosen",
        "- Only CC0, CC BY and CC Sampling+ licenses; any other license, and any license that could not "
        "be read with certainty, is out. A Freesound uploader's gen-AI preference is read against what "
        f"this release declares (open-source model: {info['release_declares']['open_source_model']}, "
        f"noncommercial only: {info['release_declares']['noncommercial']}).",
        "- Music detection: the PANNs AudioSet classifier; a recording with at least 30 s of frames whose "
        "music-class probability is at least 0.15 counts as music.",
        f"  Music model checkpoint sha256: `{mm.get('sha256', '')}`"
        + (" (RANDOMLY INITIALISED: the music decisions of this release are not real)" if mm.get("random_init")
           else "" if mm.get("published") else " (not the published PANNs checkpoint)") + ".",
        "- Copyright: FMA titles and artists are matched against a copyright metadata catalogue, Freesound "
        "music against an audio identification backend; suspected matches stay out until a person clears "
        "them.",
        f"- Takedowns applied: {len(info.get('takedowns') or [])} (listed in `release.json`).",
        f"- Config sha256: `{info['config_sha256']}`. Every record of the run, with why it is in or out: "
        "`manifest.parquet`.",
        "",
        "## Attribution",
        "CC BY and CC Sampling+ require credit. `freesound_attribution.csv` and `fma_attribution.csv` give, "
        "for every recording, `id,title,author,license,url` (Stable Audio Open's layout), the license deed "
        "(`license_url`), the license as the source wrote it and whether the URL was derived. Publish them "
        "with anything trained on this data.",
        "",
        "## Loading",
        "With Hugging Face datasets, from this folder (the features come from this card's header):",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("path/to/this/folder", split="train")   # streaming=True works too',
        "```",
        "With stable-audio-tools: `dataset_config.json` (type `wds`, the shards beside it; the prompt is "
        "each sample's `text`), from this folder:",
        "```sh",
        "python train.py --dataset-config dataset_config.json --model-config model_config.json ...",
        "```",
        "",
        "## Integrity",
        "`sha256sum -c SHA256SUMS` checks every file; `curate release verify DIR` also checks that the "
        "attribution and the shards match one to one and that every record is allowed under the current "
        "manifest.",
        "",
        "## Takedown requests",
        "To have a recording removed, send its source, id and the reason to the publisher of this release. "
        "It is added to the takedown list (`[release] takedowns`), leaves the next version and stays out of "
        "every later one.",
        "",
    ]
    return "\n".join(lines)


def _deed_classes(info: dict) -> set[tuple[str, str]]:
    """(deed URL, class) pairs: a deed URL names its class (creativecommons.org paths)."""
    out = set()
    for url in info["license_deeds"]:
        if "/publicdomain/zero/" in url:
            out.add((url, "cc0"))
        elif "/licenses/by/" in url:
            out.add((url, "cc-by"))
        elif "sampling+" in url:
            out.add((url, "sampling+"))
        else:
            out.add((url, "other"))
    return out

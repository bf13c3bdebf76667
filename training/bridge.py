"""The stable-audio-tools bridge: fine-tune on the release shards, generate a clip.

Training runs in a child process (`python -m training.run`) so the Hugging Face
environment is set before transformers loads, and so a crash there cannot take the
curation run with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from curation.atomic import atomic_write_text
from curation.config import TrainingConfig

from .t5cache import t5_cache_info


class TrainingError(RuntimeError):
    pass


def fingerprint(shard_dir: Path, tc: TrainingConfig) -> str:
    h = hashlib.sha256()
    for tar in sorted(Path(shard_dir).glob("*.tar")):
        h.update(tar.name.encode())
        h.update(hashlib.sha256(tar.read_bytes()).digest())
    h.update(Path(tc.model_config).read_bytes())
    h.update(json.dumps([tc.steps, tc.batch_size, tc.prompt, tc.seconds, tc.generation_steps, tc.seed,
                         str(tc.pretrained_ckpt_path or "")]).encode())
    return h.hexdigest()


def _outputs(out_dir: Path) -> dict[str, str]:
    """sha256 of the files a finished training leaves (checkpoint and generated audio)."""
    import hashlib

    out = {}
    for name in ("model.ckpt", "generated.wav"):
        p = out_dir / name
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
    return out


def train_and_generate(dataset_config: Path, tc: TrainingConfig, out_dir: Path, log_path: Path | None = None) -> dict:
    """Fine-tune on a release version (its stable-audio-tools `dataset_config.json`, the file a
    user trains on it with) and generate; skipped when the same shards and settings were done
    before."""
    from curation.release.versions import resolve_dataset_config

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        ds_config = resolve_dataset_config(dataset_config)
        shard_dir = Path(ds_config["datasets"][0]["path"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise TrainingError(f"{dataset_config}: not a readable stable-audio-tools dataset config ({e})") from None
    if not any(shard_dir.glob("*.tar")):
        raise TrainingError(f"no shards in {shard_dir}: nothing to train on")
    fp = fingerprint(shard_dir, tc)
    done = out_dir / "done.json"
    if done.exists():
        try:
            prev = json.loads(done.read_text())
            if prev.get("fingerprint") == fp and (out_dir / "generated.wav").exists() \
                    and prev.get("outputs") == _outputs(out_dir):  # the files it made, unchanged
                return {**prev, "skipped": True}
        except (ValueError, AttributeError, OSError):
            pass  # a record that cannot be trusted: train again
    job = {
        "shard_dir": str(shard_dir), "dataset_config": ds_config, "model_config": str(tc.model_config), "out_dir": str(out_dir),
        "steps": tc.steps, "batch_size": tc.batch_size, "prompt": tc.prompt, "seconds": tc.seconds,
        "generation_steps": tc.generation_steps, "seed": tc.seed,
        "pretrained_ckpt_path": str(tc.pretrained_ckpt_path) if tc.pretrained_ckpt_path else None,
    }
    job_path = out_dir / "job.json"
    atomic_write_text(job_path, json.dumps(job, indent=2))
    env = dict(os.environ)
    if tc.hf_home is not None:
        env["HF_HOME"] = str(tc.hf_home)
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("WANDB_MODE", "disabled")
    env["PYTHONHASHSEED"] = "0"
    repo_root = Path(__file__).resolve().parent.parent
    log_path = log_path or out_dir / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, "-m", "training.run", str(job_path)], env=env, cwd=repo_root,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise TrainingError(f"training failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    report = json.loads((out_dir / "train_report.json").read_text())
    report["t5"] = t5_cache_info(tc.hf_home)
    report["fingerprint"] = fp
    report["outputs"] = _outputs(out_dir)
    atomic_write_text(done, json.dumps(report, indent=2, sort_keys=True))
    return {**report, "skipped": False}

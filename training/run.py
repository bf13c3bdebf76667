"""Fine-tune a stable-audio-tools `diffusion_cond` model on the release shards and
generate one clip. Run as `python -m training.run JOB.json` (see training/bridge.py),
in its own process so the Hugging Face environment (HF_HOME, offline mode) is set
before transformers is imported.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    import numpy as np
    import pytorch_lightning as pl
    import soundfile as sf
    import torch
    from stable_audio_tools.data.dataset import create_dataloader_from_config
    from stable_audio_tools.inference.generation import generate_diffusion_cond
    from stable_audio_tools.models import create_model_from_config
    from stable_audio_tools.models.utils import copy_state_dict, load_ckpt_state_dict
    from stable_audio_tools.training import create_training_wrapper_from_config

    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    model_config = json.loads(Path(job["model_config"]).read_text())
    pretrained = job.get("pretrained_ckpt_path") or model_config.pop("pretrained_ckpt_path", None)
    model_config.pop("pretrained_ckpt_path", None)
    pl.seed_everything(job["seed"], workers=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    t0 = time.time()
    model = create_model_from_config(model_config)
    if pretrained:
        copy_state_dict(model, load_ckpt_state_dict(pretrained))
    sr, size = model_config["sample_rate"], model_config["sample_size"]
    # the version's own dataset_config.json (its paths made absolute), as a user trains on it
    dataset_config = dict(job.get("dataset_config") or {
        "dataset_type": "wds", "datasets": [{"id": "release", "path": job["shard_dir"]}], "random_crop": True})
    dataset_config["epoch_steps"] = job["steps"]
    loader = create_dataloader_from_config(
        dataset_config, batch_size=job["batch_size"], sample_size=size, sample_rate=sr,
        audio_channels=model_config.get("audio_channels", 2), num_workers=1,
    )
    wrapper = create_training_wrapper_from_config(model_config, model)
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_steps=job["steps"],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        precision="16-mixed" if device == "cuda" else "32-true",
    )
    trainer.fit(wrapper, loader)
    t_train = time.time() - t0

    ckpt = out / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "model_config": model_config}, ckpt)

    t1 = time.time()
    model.to(device).eval()
    seconds = float(job["seconds"])
    gen_size = min(size, int(round(seconds * sr)))
    ratio = model.pretransform.downsampling_ratio if model.pretransform is not None else 1
    gen_size = max(ratio, gen_size // ratio * ratio)
    audio = generate_diffusion_cond(
        model, steps=job["generation_steps"], cfg_scale=3,
        conditioning=[{"prompt": job["prompt"], "seconds_start": 0, "seconds_total": seconds}],
        sample_size=gen_size, seed=job["seed"], device=device,
    )
    clip = audio[0].float().clamp(-1, 1).cpu().numpy().T
    sf.write(out / "generated.wav", clip, sr, subtype="PCM_16")
    report = {
        "steps": trainer.global_step,
        "train_seconds": round(t_train, 2),
        "generate_seconds": round(time.time() - t1, 2),
        "generated": {"file": "generated.wav", "sample_rate": sr, "frames": int(clip.shape[0]),
                      "channels": int(clip.shape[1]), "prompt": job["prompt"],
                      "peak": float(np.abs(clip).max()) if clip.size else 0.0},
        "checkpoint": "model.ckpt",
        "pretrained_ckpt_path": pretrained,
        "device": device,
    }
    (out / "train_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

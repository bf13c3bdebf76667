"""An offline Hugging Face cache for the T5 conditioner.

stable-audio-tools' T5 conditioner accepts only fixed names (`t5-base`, ...) and calls
`from_pretrained(name)`. With `HF_HUB_OFFLINE=1`, a cache at
`HF_HOME/hub/models--t5-base/snapshots/<rev>/` (plus `refs/main`) is enough.

`build_random_t5_cache` makes such a cache holding a *randomly initialised* T5
encoder of the real width (d_model 768 for t5-base) and a small word-level
tokenizer: for tests and the offline demo only. It leaves a `RANDOM_INIT` marker so
everything downstream can say so.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

T5_DIMS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024}
REVISION = "0" * 40
MARKER = "RANDOM_INIT"

_WORDS = (
    "a an the of and with in on at for to from by is are field recording music ambient bird birds "
    "rain water wind forest city street night noise drum drums guitar piano synth bass loop beat "
    "electronic rock pop jazz folk classical hip hop techno house experimental sound sounds voice "
    "tags genre freesound fma recording recordings soft loud fast slow dark bright calm texture pad "
    "tone chord melody rhythm percussion"
).split()


def snapshot_dir(hf_home: Path, name: str = "t5-base") -> Path:
    return Path(hf_home) / "hub" / f"models--{name.replace('/', '--')}" / "snapshots" / REVISION


def build_random_t5_cache(hf_home: Path, name: str = "t5-base", seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    snap = snapshot_dir(hf_home, name)
    if (snap / MARKER).exists() and (snap / "config.json").exists():
        return snap
    snap.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(_WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(snap)

    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=len(vocab), d_model=T5_DIMS[name], d_kv=32, d_ff=256, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    T5EncoderModel(cfg).save_pretrained(snap)
    (snap / MARKER).write_text("randomly initialised T5 encoder: NOT the real t5-base weights\n")
    refs = snap.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(REVISION)
    return snap


def t5_cache_info(hf_home: Path | None, name: str = "t5-base") -> dict:
    """Whether the cache holds a random stand-in, and the weights' checksum."""
    if hf_home is None:
        return {"hf_home": None}
    snap = snapshot_dir(hf_home, name)
    weights = snap / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
    return {"hf_home": str(hf_home), "random_init": (snap / MARKER).exists(), "sha256": sha}

"""Secrets (API tokens, keys): from an environment variable, or else a Prefect Secret block.
Callers say what is missing in their own words; the value never goes into evidence or logs."""
from __future__ import annotations

import os


def read_secret(env: str, block: str = "") -> str:
    """The value of `env`, or else of the Prefect Secret block `block`; "" when neither."""
    value = os.environ.get(env, "") if env else ""
    if not value and block:
        from prefect.blocks.system import Secret

        value = Secret.load(block).get()
    return str(value or "")

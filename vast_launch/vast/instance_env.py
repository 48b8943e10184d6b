"""What an instance is created with: its launch id, its environment (secrets only here, never in the
onstart), and its hard deadline on a given offer."""

from __future__ import annotations

import os

from ..config import LaunchConfig
from ..store import STORE_SECRETS

SECRET_ENV = ("WANDB_API_KEY", "VL_GIT_TOKEN", *STORE_SECRETS)


def redact(env: dict) -> dict:
    return {k: ("***redacted***" if k in SECRET_ENV and v else v) for k, v in env.items()}


def offer_deadline(cfg: LaunchConfig, start: float, offer: dict, spent_usd: float = 0.0) -> tuple[int, str]:
    """The instance's hard deadline on this offer: max_hours, or earlier where what is left of max_cost_usd
    (after `spent_usd`, what earlier attempts of the launch cost) runs out."""
    deadline, why = start + cfg.lifecycle.max_hours * 3600, "deadline"
    dph = float(offer.get("dph_total") or 0)
    if cfg.lifecycle.max_cost_usd is not None and dph > 0:
        budget_end = start + max(cfg.lifecycle.max_cost_usd - spent_usd, 0.0) / dph * 3600
        if budget_end < deadline:
            deadline, why = budget_end, "budget"
    return int(deadline), why


def instance_env(
    cfg: LaunchConfig,
    launch_id: str,
    commit: str,
    offer: dict,
    wandb_mode: str,
    extra: dict,
    deadline: tuple[int, str],
    send_git_token: bool = True,
) -> tuple[dict, dict]:
    """(env for the create call, the secrets in it). Secrets go in env, never in the onstart; the git
    token only where the instance fetches over the network (not from the local cloud's file remote)."""
    env = {
        "VL_DEADLINE": str(deadline[0]),
        "VL_DEADLINE_WHY": deadline[1],
        "VL_LAUNCH_ID": launch_id,
        "VL_NAME": cfg.name,
        "VL_COMMIT": commit,
        "VL_OFFER_ID": str(offer.get("id")),
        "VL_MACHINE_ID": str(offer.get("machine_id")),
        "VL_GPU_NAME": str(offer.get("gpu_name")),
        "VL_NUM_GPUS": str(offer.get("num_gpus")),
        "VL_DPH_TOTAL": f"{float(offer.get('dph_total') or 0):.4f}",
        "WANDB_PROJECT": cfg.wandb.project,
        "WANDB_MODE": wandb_mode,
        "VASTAI_NO_UPDATE_CHECK": "1",
    }
    if cfg.wandb.entity:
        env["WANDB_ENTITY"] = cfg.wandb.entity
    env.update({k: str(v) for k, v in extra.items()})
    found = {}
    if wandb_mode == "online" and os.environ.get("WANDB_API_KEY"):
        found["WANDB_API_KEY"] = os.environ["WANDB_API_KEY"]
    token = os.environ.get("VAST_LAUNCH_GIT_TOKEN")
    if token and send_git_token:
        found["VL_GIT_TOKEN"] = token
    env.update(found)
    return env, found

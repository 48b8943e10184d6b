"""What a create call sends for one attempt of a launch: its label, its environment (secrets only there,
never in the onstart), the payload, and how a dry run and the confirmation show it.

`Launcher` is a `Creating`: the methods here use its config, ledger, store and options.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional

from ..protocol import FOLLOW_LEASE_SECONDS, Label
from ..store import STORE_SECRETS, credentials
from ..targets.base import LaunchResult
from .instance_env import instance_env, offer_deadline, redact
from .offers import RankedOffer, billed_rates
from .onstart import assert_no_secrets
from .options import Attempt

if TYPE_CHECKING:
    from ..config import LaunchConfig
    from ..ledger import Ledger
    from ..store import StoreSpec
    from .options import LaunchOptions


class Creating:
    cfg: LaunchConfig
    ledger: Ledger
    opts: LaunchOptions
    store: Optional[StoreSpec]
    rents_this_machine: bool
    wandb_mode: str
    auto_shutdown: bool
    will_follow: bool
    echo: Callable[[str], None]

    def _offer_summary(self, best: RankedOffer, deadline: int) -> str:
        o, life = best.offer, self.cfg.lifecycle
        rates = billed_rates(o, self.cfg.resources)
        budget = f", budget ${life.max_cost_usd:g}" if life.max_cost_usd is not None else ""
        return (
            f"Rent offer {o.get('id')} ({o.get('gpu_name')} x{o.get('num_gpus')}) at ${rates['dph_total']:.3f}/h"
            f"{' (bid)' if self.cfg.resources.interruptible else ''}, hard deadline "
            f"{datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M UTC} ({life.max_hours:g} h){budget}?"
        )

    def _instance_env(self, at: Attempt, offer: dict, deadline: tuple[int, str]) -> tuple[dict, dict]:
        # --local fetches from a path: the git token stays on this machine
        env, found = instance_env(
            self.cfg,
            at.launch_id,
            at.commit,
            offer,
            self.wandb_mode,
            self.opts.extra_env,
            deadline,
            send_git_token=not self.rents_this_machine,
        )
        env["VL_ATTEMPT"] = str(at.attempt)
        if self.store is not None and not self.store.is_dir:
            found.update({k: v for k, v in credentials().items() if k in STORE_SECRETS})
            env.update(found)
        return env, found

    def _label_text(self, at: Attempt, deadline: int) -> str:
        """Its label at create: who launched it and its deadline; and, for a launch about to be followed that has
        no outputs store, the first lease of 'someone follows' (the instance may finish before it is seen running)."""
        label = Label(at.launch_id, self.ledger.workspace(), deadline)
        if self.will_follow and self.store is None and self.auto_shutdown:
            label.followed_until = time.time() + FOLLOW_LEASE_SECONDS
        return label.text()

    def _dry_run(self, at: Attempt, best: RankedOffer, spec, onstart, bootstrap, boot_env) -> LaunchResult:
        deadline = offer_deadline(self.cfg, time.time(), best.offer, at.spent_usd)
        env, found = self._instance_env(at, best.offer, deadline)
        assert_no_secrets(onstart + bootstrap, found)
        payload = self._payload(self._label_text(at, deadline[0]), {**env, **boot_env}, onstart)
        payload["env"] = redact(payload["env"])
        for key in boot_env:  # shown below, unpacked
            payload["env"][key] = "(the bootstrap below, zlib+base64)"
        shown = {
            "launch_id": at.launch_id,
            "offer": best.offer,
            "why": best.reason,
            "wandb_group": at.group,
            "deadline": deadline[0],
            "deadline_why": deadline[1],
            "auto_shutdown": self.auto_shutdown,
            "outputs": self.store.as_dict() if self.store else None,
            "create_payload": payload,
        }
        self.echo("DRY RUN: nothing is rented.")
        self.echo(json.dumps(shown, indent=2, default=str))
        self.echo(f"--- onstart ({len(onstart)} of 4000 characters) ---")
        self.echo(onstart)
        self.echo(f"--- bootstrap it unpacks from VL_BOOT_* ({len(bootstrap)} characters) ---")
        self.echo(bootstrap)
        return LaunchResult(launch_id=at.launch_id, state="dry-run", dry_run=shown)

    def _payload(self, label: str, env: dict, onstart: str) -> dict:
        res = self.cfg.resources
        return {
            "client_id": "me",
            "image": res.image,
            "env": env,
            "disk": res.disk_gb,
            "label": label,
            "onstart": onstart,
            "runtype": "ssh ssh_proxy",
            "cancel_unavail": True,
            "price": res.bid_price if res.interruptible else None,
        }

"""The Vast target, and the embedded local cloud (the same launch path on this machine): what the commands
ask of them (targets/base.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Optional
from urllib.parse import urlsplit

from ..errors import UserError
from ..launcher_process import launcher_alive
from ..protocol import label_for, launch_id_of
from ..states import TERMINAL
from ..store import StoreSpec, problems
from ..targets.base import LaunchRequest, Target
from . import looking
from .options import LaunchOptions
from .provider import DestroyUnconfirmed, ProviderError
from .teardown import destroy_and_record, instances_by_label

DEFAULT_URL = "https://console.vast.ai"
SETTLE_TIMEOUT_S = 5.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class VastTarget(Target):
    name = "vast"
    instances_are = "an instance on Vast"
    disks_go_with_instances = True

    def provider(self, url: Optional[str] = None, quick: bool = False):
        """quick: for settling before a command shows something, a provider that does not answer costs one
        short wait (SETTLE_TIMEOUT_S), not the minute and a half of retries a launch may spend."""
        from ..credentials import find_api_key

        key = find_api_key()
        if not key:
            raise UserError("no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`")
        from .sdk import VastProvider  # the vastai SDK takes a third of a second to import: only with a key

        bounds = dict(attempts=1, max_seconds=SETTLE_TIMEOUT_S, timeout=SETTLE_TIMEOUT_S) if quick else {}
        return VastProvider(key, url or os.environ.get("VAST_URL"), on_retry=self.retry_notice, **bounds)

    def provider_for(self, row: dict):
        return self.provider(row.get("provider_url"))

    def quick_provider_for(self, row: dict):
        return self.provider(row.get("provider_url"), quick=True)

    # --- before anything is rented ----------------------------------------------------------------
    def reaches_this_machine(self, provider_url: Optional[str] = None) -> bool:
        """Only `local-cloud serve` on this machine: Vast's instances cannot read a path here."""
        return urlsplit(provider_url or os.environ.get("VAST_URL") or DEFAULT_URL).hostname in LOOPBACK_HOSTS

    def check(self, cfg, report, dry_run: bool = False) -> None:
        from ..credentials import find_api_key
        from ..gitcheck import cloneable_from_anywhere

        if report.repo_url and not cloneable_from_anywhere(report.repo_url) and not self.reaches_this_machine():
            report.failures.append(
                f"the remote {report.repo_url} is a path on this machine: an instance on Vast cannot clone it "
                "(push to an https or ssh remote, or set code.repo)"
            )
        if not find_api_key():
            if dry_run:
                report.warnings.append("no Vast API key: the dry run shows the query and the onstart, but no offer")
            else:
                report.failures.append("no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`")

    def launch(self, cfg, ledger, request: LaunchRequest, echo):
        from ..credentials import find_api_key
        from .launcher import Launcher

        provider = None if request.dry_run and not find_api_key() else self.provider()
        launcher = Launcher(cfg, provider, ledger, LaunchOptions.of(request), echo=echo)
        return launcher.resume(ledger.get(request.resume["id"])) if request.resume else launcher.run()

    def offers(self, cfg, limit: int) -> tuple[str, list]:
        from .offers import build_query, describe_query, rank_offers

        q, order, otype = build_query(cfg.resources)
        return describe_query(q), rank_offers(self.provider().search(q, order, otype, cfg.resources.disk_gb), cfg.resources)[:limit]

    # --- a launch's life --------------------------------------------------------------------------
    def settle(self, ledger, rows: list[dict]) -> list[str]:
        from .settle import settle

        return settle(ledger, rows, self.quick_provider_for)

    def logs(self, ledger, row, tail, follow, via, identity, echo) -> None:
        if not row.get("instance_id"):
            raise UserError(f"no instance known for {row['id']!r} (see `vast-launch status`)")
        from ..states import ENDED_BY_DESTROY

        provider = None if row["state"] in ENDED_BY_DESTROY else self.provider_for(row)
        looking.show_log(ledger, row, provider, tail, follow, via, identity, echo)

    def ssh(self, row, command, identity) -> int:
        if not row.get("instance_id"):
            raise UserError(f"no instance known for {row['id']!r} (see `vast-launch status`)")
        return looking.shell(self.provider_for(row), row, command, identity)

    def down(self, ledger, row, yes: bool, echo) -> str:
        """Destroy the launch's instance after checking it is ours; what happened (the `down` command has
        settled the row)."""
        provider = self.provider_for(row)
        iid = row.get("instance_id")
        if not iid:
            found = instances_by_label(provider, row["id"])
            if not found:
                if ledger.get(row["id"])["state"] not in TERMINAL:
                    ledger.finish(row["id"], "aborted", "down: no instance exists for this launch")
                return "no instance exists for this launch"
            iid = found[0].id
        inst = provider.show(int(iid))
        if inst is None:
            self.settle(ledger, [ledger.get(row["id"])])
            if ledger.get(row["id"])["state"] not in TERMINAL:  # gone, waiting for recovery: it is not to be recovered
                ledger.finish(
                    row["id"], "destroyed", f"instance {iid} gone without a result; not recovered: ended by `vast-launch down`"
                )
            return f"instance {iid} was already gone"
        if launch_id_of(inst.label) != row["id"]:
            raise UserError(f"instance {iid} carries label {inst.label!r}, not {label_for(row['id'])!r}: not destroyed")
        if not yes and sys.stdin.isatty():
            import click

            click.confirm(
                f"Destroy instance {iid} ({inst.gpu_name}, {inst.status}, ${inst.dph_total:.3f}/h) of {row['id']}?", abort=True
            )
        final = ledger.get(row["id"])["state"] not in TERMINAL
        try:
            destroy_and_record(provider, ledger, row["id"], int(iid), "destroyed by `vast-launch down`", final=final)
        except DestroyUnconfirmed:
            raise
        except ProviderError as exc:
            raise UserError(f"instance {iid} was NOT destroyed: {exc}")
        return f"instance {iid} destroyed (confirmed gone)"

    def reconcile(self, ledger, since, until) -> tuple[dict, list[str]]:
        """Billed amounts from Vast's invoices for launches whose bill is not frozen; frozen once settled."""
        from ..credentials import find_api_key
        from ..reports.cost import SETTLE_SECONDS, reconcile, unbilled_launches

        if not find_api_key():
            n = unbilled_launches(ledger, since, until, self.name, count_only=True)
            return {}, [f"{n} launch(es) not reconciled: no Vast API key (billed shown as unknown)"] if n else []
        billed, notes, now = {}, [], time.time()
        by_url: dict[str, list[str]] = {}
        for row in unbilled_launches(ledger, since, until, self.name):
            by_url.setdefault(row["provider_url"], []).append(row["id"])
        for url, ids in by_url.items():
            try:
                settled = lambda r: bool(r["ended_at"]) and now - r["ended_at"] > SETTLE_SECONDS  # noqa: E731
                billed.update(reconcile(ledger, ids, self.provider(url).invoices, settled=settled))
            except (ProviderError, OSError) as exc:
                notes.append(f"{len(ids)} launch(es) on {url} not reconciled: {exc}")
        return billed, notes

    def supervisor(self, ledger, echo):
        from .recovery import Supervisor

        return Supervisor(ledger, self.provider_for, lambda row: self.resume_detached(ledger, row, echo), echo)

    def resume_detached(self, ledger, row: dict, echo):
        """The next attempt of a launch nobody follows (a supervisor's recovery): rented as its own launcher
        would have rented it (its config, profile, W&B mode, --env), then left to run, detached."""
        from ..config import load_config
        from .launcher import Launcher

        extra = row["extra"] if isinstance(row.get("extra"), dict) else {}
        cfg = load_config(row["config_path"])
        if cfg.config_hash() != row.get("config_hash"):
            echo(f"WARNING: {row['config_path']} changed since {row['id']} was launched: its next attempt uses it as it is now")
        request = LaunchRequest(
            auto_shutdown=extra.get("auto_shutdown"),
            follow=False,
            profile=row.get("profile"),
            wandb_mode=extra.get("wandb_mode"),
            extra_env=dict(extra.get("extra_env") or {}),
        )
        return Launcher(cfg, self.provider_for(row), ledger, LaunchOptions.of(request), echo=echo).resume(row)

    def reap(self, ledger, grace, loading, stuck, all_workspaces: bool, go_ahead, recover=None):
        from . import reaper

        provider = self.provider()
        if recover is not None:  # launches that may go on elsewhere do, before anything of theirs looks stuck to the reaper
            self.supervisor(ledger, recover).pass_once()
        self.settle(ledger, [r for r in ledger.launches(active_only=True) if r["provider_url"] == provider.url])
        found, left = reaper.plan(provider, ledger, grace, loading, stuck, all_workspaces=all_workspaces)
        if found and go_ahead(found):
            reaper.reap(provider, ledger, found)
        return found, left

    def store_problems(self, spec: StoreSpec, provider_url: Optional[str] = None) -> list[str]:
        return problems(spec, self.reaches_this_machine(provider_url), self.instances_are)


class LocalTarget(VastTarget):
    """The embedded local cloud: this machine rented out, inside the launcher's own process."""

    name = "local"
    flag = "--local"
    default_wandb_mode = "offline"
    disks_go_with_instances = False  # its outputs go to a store under the state dir by default
    follows_by_default = True
    asks_before_renting = False  # this machine, free unless --price

    def reaches_this_machine(self, provider_url: Optional[str] = None) -> bool:
        return True

    def check(self, cfg, report, dry_run: bool = False) -> None:
        pass  # no account, and its instances clone from this machine

    def launch(self, cfg, ledger, request: LaunchRequest, echo):
        from ..localcloud import LocalCloud
        from ..state_dir import private_dir
        from .local import LocalLauncher, local_home
        from .sdk import VastProvider

        price = float(request.options.get("price") or 0.0)
        root = private_dir(local_home() / "cloud")  # the first launch may create the state dir itself
        with LocalCloud(root=root, price_dph=price, keep_destroyed=False) as lc:
            echo(f"local cloud at {lc.url} (this machine, ${price:.3f}/h)")
            launcher = LocalLauncher(cfg, VastProvider(lc.api_key, lc.url), ledger, LaunchOptions.of(request), echo=echo)
            try:
                result = launcher.resume(ledger.get(request.resume["id"])) if request.resume else launcher.run()
            finally:
                lc.close()
                for row in ledger.launches(active_only=True):  # every launch on this cloud ended with it
                    if row["target"] == self.name and row["provider_url"] == lc.url:
                        ledger.finish(
                            row["id"], "destroyed", "the embedded local cloud ended with its launcher; the instance ended with it"
                        )
        if result.state == "running":
            row = ledger.get(result.launch_id)
            result.state, result.end_reason = row["state"], row["end_reason"]
            echo(f"the local cloud ended with this launcher, and instance {result.instance_id} with it")
        return result

    def offers(self, cfg, limit: int) -> tuple[str, list]:
        raise UserError("the local cloud's offers live inside a launch: `vast-launch offers` asks Vast")

    def settle(self, ledger, rows: list[dict]) -> list[str]:
        from .settle import settle_local

        settle_local(ledger, rows)
        return []

    def logs(self, ledger, row, tail, follow, via, identity, echo) -> None:
        from .local import local_workdir

        if row["state"] not in TERMINAL and launcher_alive(row):  # its launcher runs elsewhere: the files are here
            text = looking.local_log(local_workdir(row))
            if text is not None:
                echo("\n".join(text.splitlines()[-tail:]))
                return
        looking.show_log(ledger, row, None, tail, follow, via, identity, echo)

    def ssh(self, row, command, identity) -> int:
        raise UserError(
            f"{row['id']} runs on the embedded local cloud of its launcher: no SSH endpoint (`vast-launch logs {row['id']}`)"
        )

    def down(self, ledger, row, yes: bool, echo) -> str:
        """A local launch lives inside its launcher: end that launcher, which ends its cloud and instance."""
        if launcher_alive(row):
            pid = int(row["extra"]["launcher_pid"])
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 60
            while launcher_alive(row) and time.time() < deadline:
                time.sleep(0.1)
            if launcher_alive(row):
                raise UserError(f"its launcher (pid {pid}) is still running 60 s after SIGTERM")
            self.settle(ledger, [ledger.get(row["id"])])
            return f"its launcher (pid {pid}) was stopped; the local cloud and its instance ended with it"
        self.settle(ledger, [row])
        return "it ran on the embedded local cloud, which ended with its launcher; nothing is left running"

    def reconcile(self, ledger, since, until) -> tuple[dict, list[str]]:
        return {}, []  # its bill is frozen when the launch ends

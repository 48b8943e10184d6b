"""What every stage shares: data pairs, the training loop, checkpoints, DDP."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..utils.wandb_context import WandbContext

TRAIN_SEED_STRIDE = 7919


def stage_seed(profile: dict, rank: int, base: int) -> int:
    """A generator seed: per rank, and moved by the profile's train_seed (0 keeps the former seeds)."""
    return base + rank + TRAIN_SEED_STRIDE * profile["train_seed"]


@dataclass
class StageEnv:
    cfg: dict  # the whole config
    profile: dict  # train.profiles[<profile>]
    out: Path  # run directory shared by the stages
    device: torch.device
    data: dict
    ctx: WandbContext
    rank: int = 0
    world: int = 1
    summary: dict = field(default_factory=dict)

    def section(self, name: str) -> dict:
        return dict(self.profile[name])

    def seed(self, base: int) -> int:
        return stage_seed(self.profile, self.rank, base)

    @property
    def amp(self) -> bool:
        return self.profile["amp"] and self.device.type == "cuda"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def stage_dir(self, stage: str) -> Path:
        d = self.out / stage
        d.mkdir(parents=True, exist_ok=True)
        return d


def one_step_pairs(traj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, T+1, nx] -> inputs u(t) and targets u(t+dt), each [n*T, nx]."""
    nx = traj.shape[-1]
    return traj[:, :-1].reshape(-1, nx).contiguous(), traj[:, 1:].reshape(-1, nx).contiguous()


def maybe_ddp(model: nn.Module, env: StageEnv) -> nn.Module:
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return model


def maybe_compile(model: nn.Module, env: StageEnv) -> nn.Module:
    if env.profile["compile"] and env.device.type == "cuda":
        return torch.compile(model)
    return model


def train_loop(
    stage: str,
    params,
    n_items: int,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    env: StageEnv,
    iters: int,
    batch: int,
    lr: float,
    after_step: Callable[[], None] | None = None,
    log_every: int = 10,
    state: dict[str, Any] | None = None,
) -> list[float]:
    """Adam with cosine decay; each rank draws its own shard of every batch. Returns logged losses.

    state: what a mid-stage checkpoint must hold besides the optimizer (modules, torch.Generators): with
    the profile's checkpoint_every, rank 0 writes one every that many steps and at the end, and a loop that
    finds one continues from it as if it had not stopped (on one process, bit for bit; under DDP the other
    ranks take rank 0's batch generator)."""
    params = list(params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, iters) / iters)))
    gen = torch.Generator().manual_seed(env.seed(env.profile["data"]["seed"] * 1000 + 17))
    per_rank = max(1, batch // env.world)
    resumable = Resumable(partial_path(env.out, stage), {**(state or {}), "batches": gen}, opt, sched)
    start, losses, window = resumable.load(env)
    if start:
        print(f"[ups] {stage}: resuming at step {start}/{iters} from {resumable.path.name}", flush=True)
    env.summary[f"{stage}/resumed_from_step"] = start
    env.summary[f"{stage}/steps_run"] = iters - start
    t0 = time.time()
    every = env.profile.get("checkpoint_every") or 0
    for it in range(start + 1, iters + 1):
        idx = torch.randint(0, n_items, (per_rank,), generator=gen).to(env.device)
        with env.autocast():
            loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if after_step:
            after_step()
        window.append(loss.item())
        if it % log_every == 0 or it == iters:
            mean = sum(window) / len(window)
            losses.append(mean)
            window = []
            env.ctx.log_training_metrics(
                stage, {"loss": mean, "lr": sched.get_last_lr()[0], "samples_per_s": (it - start) * batch / (time.time() - t0)}, it
            )
            if env.rank == 0 and (it % (log_every * 10) == 0 or it == iters):
                print(f"[ups] {stage} step {it}/{iters} loss {mean:.4g}", flush=True)
        if every and (it % every == 0 or it == iters) and env.rank == 0:
            resumable.save(it, losses, window)  # at the end too: a restart then skips a finished loop
    return losses


def partial_path(out: Path, loop: str) -> Path:
    """Where a training loop keeps its mid-stage checkpoint; a finished stage's are removed (`drop_partials`)."""
    return out / "partial" / f"{loop}.pt"


def drop_partials(out: Path, stage: str) -> None:
    for path in (out / "partial").glob(f"{stage}*.pt"):
        path.unlink(missing_ok=True)


class Resumable:
    """A training loop's mid-stage checkpoint: complete or absent (written aside, then renamed)."""

    def __init__(self, path: Path, state: dict[str, Any], opt, sched):
        self.path, self.state, self.opt, self.sched = path, state, opt, sched

    def save(self, it: int, losses: list[float], window: list[float]) -> None:
        held = {k: (v.get_state() if isinstance(v, torch.Generator) else unwrap(v).state_dict()) for k, v in self.state.items()}
        save_checkpoint(
            self.path, it=it, losses=losses, window=window, state=held, opt=self.opt.state_dict(), sched=self.sched.state_dict()
        )

    def load(self, env: StageEnv) -> tuple[int, list[float], list[float]]:
        if not self.path.exists():
            return 0, [], []
        ck = torch.load(self.path, map_location=env.device, weights_only=False)
        for k, v in self.state.items():
            if isinstance(v, torch.Generator):
                v.set_state(ck["state"][k].cpu())  # a CUDA generator's state is a CPU tensor too
            else:
                unwrap(v).load_state_dict(ck["state"][k])
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        return int(ck["it"]), list(ck["losses"]), list(ck["window"])


def save_checkpoint(path: Path, **state: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(env: StageEnv, stage: str) -> dict:
    path = env.out / stage / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"stage {stage!r} has no checkpoint at {path}: run it first")
    return torch.load(path, map_location=env.device, weights_only=False)


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)

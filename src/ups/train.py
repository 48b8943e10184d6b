"""`ups-train --config configs/burgers.yaml --profile smoke [--stage NAME|all] [--out DIR]`.

Stages run in order and each leaves a checkpoint and a done-marker; `--stage all` after an
interruption resumes from the first unfinished stage. With more than one process requested
(`--nproc`, default: the visible GPUs), it re-runs itself under torchrun (DDP, rank-0 logging).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from .stages import BY_NAME, NAMES  # the one list of stages (torch-free)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="ups-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: ups-train --config configs/burgers.yaml --profile smoke --stage all --out runs/dev",
    )
    p.add_argument("--config", required=True, help="the launch YAML (uses name, wandb, train.profiles)")
    p.add_argument("--profile", default=None, help="train.profiles entry (default: train.profile)")
    p.add_argument("--stage", default="all", help=f"one of {', '.join(NAMES)} or 'all'")
    p.add_argument("--out", default="runs/train", help="run directory shared by the stages")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile value, e.g. --set operator.iters=50"
    )
    p.add_argument("--force", action="store_true", help="rerun stages that are already done")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="only evaluate the finished stages again (no training, no W&B): rewrites eval.json and eval_val.json",
    )
    p.add_argument("--nproc", type=int, default=None, help="processes for DDP (default: visible GPUs)")
    return p.parse_args(argv)


def load_profile(config: str, profile: str | None, overrides: list[str]) -> tuple[dict, str, dict]:
    cfg = yaml.safe_load(Path(config).read_text())
    train = cfg.get("train") or {}
    name = profile or train.get("profile") or "smoke"
    profiles = train.get("profiles") or {}
    if name not in profiles:
        raise SystemExit(f"ups-train: profile {name!r} is not in train.profiles ({sorted(profiles)})")
    prof = json.loads(json.dumps(profiles[name]))
    for item in overrides:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"ups-train: --set {item!r}: expected KEY=VALUE")
        node = prof
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    from .profile import ProfileError, validate

    try:
        prof = validate(prof)
    except ProfileError as exc:
        raise SystemExit("\n".join(f"ups-train: profile {name}: {p}" for p in exc.problems))
    return cfg, name, prof


class NoLogging:
    """The W&B context's place when only evaluating again: the results go to the eval files alone."""

    def set_summary(self, values: dict) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass


def stage_list(stage: str) -> list[str]:
    if stage == "all":
        return list(NAMES)
    if stage not in NAMES:
        raise SystemExit(f"ups-train: unknown stage {stage!r}; choose from {', '.join(NAMES)} or all")
    return [stage]


def relaunch_under_torchrun(nproc: int) -> None:
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    # torchrun would take our --nproc for an abbreviation of its own --nproc-per-node: drop it.
    forwarded, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            forwarded.append(arg)
    args = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "ups.train", *forwarded]
    os.execv(args[0], args)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, profile_name, prof = load_profile(args.config, args.profile, args.set)
    stages = stage_list(args.stage)

    import torch

    want_cuda = prof["device"] == "cuda"
    if want_cuda and not torch.cuda.is_available():
        print("[ups] WARNING: profile asks for cuda but no GPU is visible; running on CPU", file=sys.stderr)
        want_cuda = False
    nproc = args.nproc if args.nproc is not None else (torch.cuda.device_count() if want_cuda else 1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if nproc > 1 and world == 1:
        relaunch_under_torchrun(nproc)
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if want_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if want_cuda else "cpu")
    if want_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    from .stages.common import stage_seed

    torch.manual_seed(stage_seed(prof, rank, prof["data"]["seed"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from .data.burgers import DataSpec, load_or_generate
    from .stages.common import StageEnv, drop_partials
    from .stages.evaluate import evaluate
    from .utils.wandb_context import WandbContext

    t_start = time.time()
    spec = DataSpec(**prof["data"])
    data, cached = load_or_generate(spec, device=device if want_cuda else None)
    if rank == 0:
        print(
            f"[ups] data {spec.key()} ({'cache' if cached else 'generated'}): train {tuple(data['train'].shape)}, "
            f"test {tuple(data['test'].shape)}",
            flush=True,
        )
    run_cfg = {**cfg, "profile": profile_name, "train_profile": prof}
    if args.evaluate:
        if world > 1 or not all((out / s / "done").exists() for s in stages):
            raise SystemExit("ups-train: --evaluate needs finished stages and one process; train them first")
        for name in ("eval.json", "eval_val.json"):
            (out / name).unlink(missing_ok=True)
        env = StageEnv(cfg=run_cfg, profile=prof, out=out, device=device, data=data, ctx=NoLogging(), rank=0, world=1)
        evaluate(env, tuple(dict.fromkeys(m for stage in stages for m in BY_NAME[stage].evaluates)))  # each method once
        return 0
    for stage in stages:
        marker = out / stage / "done"
        if marker.exists() and not args.force:
            if rank == 0:
                print(f"[ups] {stage}: already done ({marker}); skipped", flush=True)
            continue
        t0 = time.time()
        with WandbContext(run_cfg, stage, run_dir=out, rank=rank) as ctx:
            env = StageEnv(cfg=run_cfg, profile=prof, out=out, device=device, data=data, ctx=ctx, rank=rank, world=world)
            result = BY_NAME[stage].runner()(env)
            if world > 1:
                torch.distributed.barrier()
            if rank == 0:
                result.update({k.split("/", 1)[1]: v for k, v in env.summary.items() if k.split("/", 1)[0] == stage})
                result["seconds"] = time.time() - t0
                result.update({f"eval_{k}": v["nrmse"] for k, v in evaluate(env, BY_NAME[stage].evaluates).items()})
                ctx.set_summary({f"{stage}/{k}": v for k, v in result.items()})
                ctx.log_artifact(out / stage / "checkpoint.pt", name=f"{stage}-checkpoint")
                (out / stage / "result.json").write_text(json.dumps(result, indent=2))
                marker.write_text(f"{time.time()}\n")
                drop_partials(out, stage)
                print(
                    f"[ups] {stage}: done in {result['seconds']:.1f} s (loss {result['loss_first']:.4g} -> {result['loss_last']:.4g})",
                    flush=True,
                )
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(f"[ups] total {time.time() - t_start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

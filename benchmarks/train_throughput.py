"""Operator training samples/s: this project's FNO against the `neuraloperator` package's FNO (the
baseline), matched and measured in the same run.

Matched: the same data, batch, width, depth and kept Fourier modes (neuraloperator keeps n_modes // 2 + 1
modes of the last dimension, so it gets n_modes = 2 * modes - 2), a single-layer lifting, a two-layer
projection of twice the width, a linear skip and a grid channel in both, and no channel MLP or
soft-gating in either. The parameter counts and kept modes are printed; they differ only by what remains
different in the blocks (this project's block adds an identity residual). Runs are interleaved (the
order alternates every repetition), each after its own warm-up; the ratio is taken per repetition and
reported as its median and spread.

Usage (the baseline installs without its dependencies, so that pip does not replace the pinned torch):
  pip install --no-deps --target /tmp/neuralop neuraloperator==2.0.0 tensorly tensorly-torch opt-einsum scipy
  PYTHONPATH=/tmp/neuralop python benchmarks/train_throughput.py [--device cuda] [--amp] [--compile]
"""

import argparse
import statistics
import time

import torch

from ups.models.fno import OperatorNet


class NeuralopOperator(torch.nn.Module):
    """The same u -> u + FNO(u) map, with neuraloperator's FNO inside, configured like ours."""

    def __init__(self, width, modes, layers):
        super().__init__()
        from neuralop.models import FNO

        self.fno = FNO(
            n_modes=(2 * modes - 2,),
            in_channels=1,
            out_channels=1,
            hidden_channels=width,
            n_layers=layers,
            lifting_channel_ratio=0,  # one linear lifting layer, as ours
            projection_channel_ratio=2,
            use_channel_mlp=False,
            fno_skip="linear",
            positional_embedding="grid",
        )

    def forward(self, u):
        return u + self.fno(u.unsqueeze(1)).squeeze(1)

    def kept_modes(self) -> int:
        return int(self.fno.fno_blocks.convs[0].weight.shape[-1])  # the spectral weight's last dimension


def parameters(model) -> int:
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


class Trainer:
    def __init__(self, model, x, y, batch, device, amp):
        self.model, self.x, self.y, self.batch, self.device, self.amp = model, x, y, batch, device, amp
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.g = torch.Generator().manual_seed(0)

    def step(self):
        idx = torch.randint(0, len(self.x), (self.batch,), generator=self.g).to(self.device)
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.amp):
            loss = torch.mean((self.model(self.x[idx]).float() - self.y[idx]) ** 2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def samples_per_s(self, iters, warmup):
        for _ in range(warmup):
            self.step()
        sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            self.step()
        sync()
        return iters * self.batch / (time.perf_counter() - t0)


def spread(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"median {statistics.median(values):10.1f}  IQR {q[0]:.1f}..{q[2]:.1f}  min {min(values):.1f}  max {max(values):.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--modes", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before each run")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved runs of each model")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    a = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(4096, a.nx, device=a.device)
    y = torch.roll(x, 1, dims=-1)
    try:
        theirs = NeuralopOperator(a.width, a.modes, a.layers).to(a.device)
    except ImportError as exc:
        raise SystemExit(f"the baseline is missing ({exc}); see the usage in this file's docstring")
    ours = OperatorNet(a.width, a.modes, a.layers).to(a.device)
    print(
        f"device {a.device}, nx {a.nx}, width {a.width}, layers {a.layers}, batch {a.batch}, amp {a.amp}, "
        f"compile {a.compile}, threads {torch.get_num_threads()}"
    )
    print(f"kept Fourier modes: ups {a.modes}, neuraloperator {theirs.kept_modes()}")
    print(f"parameters: ups {parameters(ours):,}, neuraloperator {parameters(theirs):,}")
    trainers = {}
    for name, model in (("ups", ours), ("neuraloperator", theirs)):
        trainers[name] = Trainer(torch.compile(model) if a.compile else model, x, y, a.batch, a.device, a.amp)
    rates = {"ups": [], "neuraloperator": []}
    for r in range(a.repeats):
        order = ("ups", "neuraloperator") if r % 2 == 0 else ("neuraloperator", "ups")
        for name in order:
            rates[name].append(trainers[name].samples_per_s(a.iters, a.warmup))
    ratios = [u / n for u, n in zip(rates["ups"], rates["neuraloperator"])]
    print(f"neuraloperator FNO samples/s: {spread(rates['neuraloperator'])}  (baseline)")
    print(f"ups FNO samples/s:            {spread(rates['ups'])}")
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(
        f"ratio ups / neuraloperator, per repetition: median {statistics.median(ratios):.2f}x, "
        f"IQR {q[0]:.2f}..{q[2]:.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x (n={len(ratios)})"
    )


if __name__ == "__main__":
    main()

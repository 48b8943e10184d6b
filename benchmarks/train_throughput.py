"""Operator training samples/s: our FNO against the `neuraloperator` package's FNO (the baseline),
on the same data, batch, width, modes and depth, measured in the same run.

Usage: pip install neuraloperator; python benchmarks/train_throughput.py [--device cuda] [--iters 100]
"""

import argparse
import time

import torch

from ups.models.fno import OperatorNet


def samples_per_s(model, x, y, iters, batch, device):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = torch.mean((model(x[idx]) - y[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return iters * batch / (time.perf_counter() - t0)


class NeuralopOperator(torch.nn.Module):
    """The same u -> u + FNO(u) map, with neuraloperator's FNO inside."""

    def __init__(self, width, modes, layers):
        super().__init__()
        from neuralop.models import FNO

        self.fno = FNO(n_modes=(modes,), hidden_channels=width, in_channels=1, out_channels=1, n_layers=layers)

    def forward(self, u):
        return u + self.fno(u.unsqueeze(1)).squeeze(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--modes", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50)
    a = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(4096, a.nx, device=a.device)
    y = torch.roll(x, 1, dims=-1)
    ours = samples_per_s(OperatorNet(a.width, a.modes, a.layers).to(a.device), x, y, a.iters, a.batch, a.device)
    try:
        base = samples_per_s(NeuralopOperator(a.width, a.modes, a.layers).to(a.device), x, y, a.iters, a.batch, a.device)
    except ImportError:
        raise SystemExit("install the baseline first: pip install neuraloperator")
    print(f"device {a.device}, nx {a.nx}, width {a.width}, modes {a.modes}, layers {a.layers}, batch {a.batch}")
    print(f"neuraloperator FNO : {base:10.0f} samples/s (baseline)")
    print(f"ups FNO            : {ours:10.0f} samples/s")
    print(f"ratio              : {ours / base:10.2f}x")


if __name__ == "__main__":
    main()

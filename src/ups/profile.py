"""The training profile's schema: every value the stages read, its type, bounds and default, in one place.

No torch here. `ups-train` validates the profile (and every `--set`) before it imports torch; the JSON
Schema written from it (`python -m ups.profile > src/ups/profile.schema.json`) lets `vast-launch check`
refuse a typo such as `operator.itres` before anything is rented, without importing this package.
"""

from __future__ import annotations

import difflib
import json
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _int(default: int, description: str, ge: int = 1) -> int:
    return Field(default, ge=ge, description=description)


def _pos(default: float, description: str) -> float:
    return Field(default, gt=0, description=description)


class Data(_Section):
    convention: Literal["unit", "pdebench"] = Field(
        "unit",
        description="unit: diffusion nu, sine initial states, a spectral reference solver; pdebench: PDEBench's "
        "Burgers (diffusion nu/pi, its random initial states, a finite-volume reference solver); see docs/pdebench.md",
    )
    nx: int = _int(64, "grid points the surrogate sees", ge=8)
    solver_nx: int = _int(128, "grid points of the reference solver (downsampled to nx)", ge=8)
    n_train: int = _int(128, "training trajectories")
    n_val: int = _int(16, "validation trajectories (tuning and tests)")
    n_test: int = _int(16, "held-out test trajectories (the report)")
    n_steps: int = _int(20, "frames per trajectory after the initial state")
    dt: float = _pos(0.05, "time between frames")
    nu: float = _pos(0.01, "viscosity")
    seed: int = _int(0, "seed of the data and of training", ge=0)
    solver_dt: float = _pos(0.0025, "the spectral reference solver's time step (the finite-volume one keeps a CFL limit)")


class Operator(_Section):
    modes: int = _int(16, "Fourier modes kept")
    width: int = _int(32, "channels")
    layers: int = _int(4, "Fourier layers")
    iters: int = _int(300, "optimizer steps")
    batch: int = _int(64, "batch size")
    lr: float = _pos(3e-3, "learning rate")


class Hybrid(_Section):
    iters: int = _int(0, "optimizer steps of the hybrid operator, trained in the operator stage after the FNO (0: none)", ge=0)
    coarsen: int = _int(2, "the coarse grid has data.nx / coarsen cells")
    width: int = _int(32, "channels of the correction and lift networks")
    layers: int = _int(4, "periodic convolutions of each network")
    kernel: int = _int(5, "their kernel: a stencil of layers * (kernel // 2) cells either side")
    batch: int = _int(16, "batch size (trajectory windows)")
    lr: float = _pos(1e-3, "learning rate")
    unroll: list[int] = Field(
        default_factory=lambda: [1, 4, 8],
        min_length=1,
        description="frames unrolled through the solver per loss, in equal shares of the steps (a schedule)",
    )
    solver_grad: bool = Field(True, description="gradients through the solver between frames (false: the ablation)")
    learned_lift: bool = Field(True, description="a learned lift to the scoring grid (false: the MC-limited linear one)")


class DiffusionResidual(_Section):
    width: int = _int(48, "channels of the denoiser")
    layers: int = _int(4, "layers of the denoiser")
    iters: int = _int(500, "optimizer steps")
    batch: int = _int(64, "batch size")
    lr: float = _pos(2e-3, "learning rate")
    sampler_steps: int = _int(8, "Heun steps of the refiner at evaluation")
    sigma_min: float = _pos(0.002, "smallest noise level")
    sigma_max: float = _pos(20.0, "largest noise level")
    mse_iters: int = _int(
        0, "optimizer steps of the ablation: the same network as a deterministic corrector trained by MSE (0: none)", ge=0
    )


class ConsistencyDistill(_Section):
    iters: int = _int(250, "optimizer steps")
    batch: int = _int(64, "batch size")
    lr: float = _pos(1e-3, "learning rate")
    ema: float = Field(0.95, gt=0, lt=1, description="EMA decay of the target network")
    teacher_steps: int = _int(12, "noise levels of the teacher's discretisation", ge=2)
    sigma_mid: float = _pos(0.5, "the second step's noise level (2-step sampling)")


class Eval(_Section):
    rollout_steps: int = _int(10, "autoregressive steps of the rollout")
    n_test: int = _int(16, "test trajectories evaluated (the validation split is evaluated whole)")
    seeds: int = _int(1, "sampling seeds of the stochastic methods (refiner, distilled); results average them")
    baselines: bool = Field(True, description="also evaluate persistence and the classical solver at 0.5x, 1x, 2x, 4x the grid")
    timing_runs: int = _int(3, "timed rollouts of each method; its ms per rollout is the fastest (a shared machine's noise)")
    reference_floor: bool = Field(
        True, description="the reference scheme on twice its cells, on the test split (PDEBench convention; the slowest baseline)"
    )


class Profile(_Section):
    model_config = ConfigDict(json_schema_extra={"title": "ups training profile"})  # merged with _Section's
    device: Literal["cpu", "cuda"] = Field("cpu", description="cuda: fail if no GPU is visible")
    amp: bool = Field(False, description="bf16 autocast on CUDA")
    compile: bool = Field(False, description="torch.compile on CUDA")
    train_seed: int = Field(
        0, ge=0, description="seed of initialisation, batches and noise (the data keeps data.seed): repeat a run with another"
    )
    checkpoint_every: int = Field(
        0,
        ge=0,
        description="write a mid-stage checkpoint every N optimizer steps (0: only at a stage's end); a stage that "
        "starts again (a restarted or resumed launch) continues from the last one",
    )
    data: Data = Field(default_factory=Data)
    operator: Operator = Field(default_factory=Operator)
    hybrid: Hybrid = Field(default_factory=Hybrid)
    diffusion_residual: DiffusionResidual = Field(default_factory=DiffusionResidual)
    consistency_distill: ConsistencyDistill = Field(default_factory=ConsistencyDistill)
    eval: Eval = Field(default_factory=Eval)


class ProfileError(ValueError):
    """Every problem of a profile, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Profile
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return list(model.model_fields)


def problems_of(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            known = _known_keys(err["loc"])
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
            out.append(f"{where}: unknown key{hint}")
        else:
            out.append(f"{where}: {err['msg']} (got {err['input']!r})")
    return out


def validate(profile: dict) -> dict:
    """The profile with every default filled in, or ProfileError naming each problem."""
    try:
        return Profile.model_validate(profile).model_dump()
    except ValidationError as exc:
        raise ProfileError(problems_of(exc)) from None


def json_schema() -> dict:
    return Profile.model_json_schema()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")

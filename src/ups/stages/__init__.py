"""The training stages, in order: the one list that `ups-train`, the evaluation and the profile's check are built
from. Each names its module (`ups.stages.<module>`, with `run(env) -> dict`), the profile sections it reads (each
a section class in `ups.profile`) and the methods evaluated after it. No torch here: the profile is checked before
torch is imported. Adding a stage: its module, its profile section, and a line below."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

# The solver on the surrogate's grid and the classical curve are evaluated after every stage, for paired comparisons
# (on the same machine and threads as the stage's methods, for the comparison at equal cost).
BASELINES = ("persistence", "solver_half", "solver_1x", "solver_2x", "solver_4x", "curve", "floors")


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    sections: tuple[str, ...]
    evaluates: tuple[str, ...]

    def runner(self) -> Callable:
        return importlib.import_module(f"{__name__}.{self.module}").run


STAGES = (
    Stage("operator", "operator", ("operator", "hybrid"), (*BASELINES, "operator", "hybrid")),
    Stage(
        "diffusion_residual",
        "diffusion_residual",
        ("diffusion_residual",),
        ("solver_1x", "curve", "operator", "hybrid", "corrector_mse", "refiner_1call", "refiner"),
    ),
    Stage(
        "consistency_distill",
        "consistency_distill",
        ("consistency_distill",),
        ("solver_1x", "curve", "operator", "hybrid", "refiner", "distilled_1step", "distilled_2step"),
    ),
)
NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}

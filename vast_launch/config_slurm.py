"""The `slurm:` section of the launch YAML and the command line's overrides of it: every value that reaches
an #SBATCH line or a folder name is checked here, so none can end its line or leave its folder."""

from __future__ import annotations

import re
from typing import Optional

from pydantic import Field, field_validator

from .config_base import STAGE_NAME, Strict

SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,-]*$")


SLURM_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,2})(?::([0-5]\d))?(?::([0-5]\d))?$")
SLURM_MEMORY = re.compile(r"^\d+(?:\.\d+)?[KMGT]?$", re.I)


def slurm_walltime(value: str) -> str:
    """The walltime as sbatch takes it, or ValueError (shared by the config and --walltime)."""
    if not SLURM_WALLTIME.match(value.strip()):
        raise ValueError("expected HH:MM:SS (or D-HH:MM:SS, MM, MM:SS)")
    return value.strip()


def slurm_memory(value: str) -> str:
    """The memory as sbatch takes it (8G, 512M), or ValueError (shared by the config and --memory)."""
    if not SLURM_MEMORY.match(value.strip()):
        raise ValueError("expected a size like 8G, 96G or 512M")
    return value.strip().upper()


class SlurmStage(Strict):
    walltime: str = Field("01:00:00", description="sbatch --time, e.g. 02:00:00")
    memory: str = Field("8G", description="sbatch --mem, e.g. 96G")
    cpus: int = Field(2, ge=1, description="sbatch --cpus-per-task")
    gpus: int = Field(0, ge=0, description="sbatch --gres=gpu:N")

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str) -> str:
        return slurm_walltime(v)

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        return slurm_memory(v)


def slurm_partition(value: str) -> str:
    """A partition (or a comma-separated list) as sbatch takes it, or ValueError (config and --partition)."""
    if not SLURM_NAME.match(value):
        raise ValueError("expected a partition name: letters, digits, '_', '-', '.', ',' (nothing that could end its #SBATCH line)")
    return value


class Slurm(Strict):
    partition: Optional[str] = Field(None, max_length=256, description="sbatch --partition for every stage")
    pipelines: dict[str, dict[str, SlurmStage]] = Field(
        default_factory=dict, description="name -> {stage: resources}; each stage one job, chained with afterok"
    )

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else slurm_partition(v)

    @field_validator("pipelines")
    @classmethod
    def _pipeline_names(cls, v: dict) -> dict:
        for name in v:
            if not STAGE_NAME.match(name):
                raise ValueError(f"pipeline name {name!r}: letters, digits, '_', '-', '.' (it names folders)")
        return v

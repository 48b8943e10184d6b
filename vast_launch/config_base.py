"""What every section of the launch YAML shares: strict models (unknown keys are errors; YAML's `true`
is never a number) and the patterns names and one-line values are checked with."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

STAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's `true` is not the number 1 here (pydantic's lax mode would take it as one)."""
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            ann = cls.model_fields[info.field_name].annotation
            kinds = {ann, *get_args(ann)}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError("a number is expected, not true/false")
        return value

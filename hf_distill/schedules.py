"""Schedules for the temperature and the loss weights: a value that moves from its start to an end over training.

A schedule is written `"<name>:<end>[:<shape>]"`, e.g. `alpha_kd:1.0:cosine` (the flag `--schedules alpha_kd:1:cosine
temperature:1`). The start is the argument's own value (`--alpha_kd 5`); the end is reached at the last optimizer
step. Shapes:

- `linear`: `start + (end - start) * p`, with `p = step / (max_steps - 1)` (0 at the first optimizer step, 1 at
  the last);
- `cosine`: `start + (end - start) * (1 - cos(pi p)) / 2`, flat at both ends.

The value depends on the optimizer step alone, so every micro-batch of an accumulated step uses the same value
(accumulation stays exact) and a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Shape = Literal["linear", "cosine"]
SHAPES: tuple[str, ...] = ("linear", "cosine")


@dataclass(frozen=True)
class Schedule:
    """One scheduled value.

    Attributes:
        name (`str`): The argument it moves: `temperature` or a weight (`alpha_kd`, ...).
        end (`float`): Its value at the last step.
        shape (`str`): `"linear"` or `"cosine"`.
    """

    name: str
    end: float
    shape: Shape = "linear"

    def value(self, start: float, progress: float) -> float:
        """The value at `progress` (0 at the first step, 1 at the last; clamped to that range)."""
        p = min(max(progress, 0.0), 1.0)
        fraction = p if self.shape == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        return start + (self.end - start) * fraction


def progress(step: int, max_steps: int | None) -> float:
    """Where optimizer step `step` (0-based) lies in a run of `max_steps`: 0 at the first step, 1 at the last."""
    return min(max(step, 0) / (max_steps - 1), 1.0) if max_steps and max_steps > 1 else 0.0


def parse_schedules(entries: Sequence[str] | None, names: Sequence[str]) -> dict[str, Schedule]:
    """The schedules of a `schedules` argument, keyed by name, checked for form.

    Args:
        entries: `"<name>:<end>[:<shape>]"` strings.
        names: The names that may be scheduled.

    Raises:
        ValueError: For an unknown name or shape, an end that is not a number, or a name scheduled twice.
    """
    schedules: dict[str, Schedule] = {}
    if isinstance(entries, str):
        entries = entries.split()
    for entry in entries or []:
        parts = str(entry).split(":")
        if len(parts) not in (2, 3):
            raise ValueError(
                f"schedule {entry!r} is not '<name>:<end>[:<shape>]'; for example 'alpha_kd:1.0:cosine' moves "
                "alpha_kd from its value to 1.0 over training"
            )
        name, end_text = parts[0].strip(), parts[1].strip()
        shape = parts[2].strip() if len(parts) == 3 else "linear"
        if name not in names:
            raise ValueError(f"schedule {entry!r} names {name!r}, which cannot be scheduled; use one of {list(names)}")
        if shape not in SHAPES:
            raise ValueError(f"schedule {entry!r} has shape {shape!r}; use one of {list(SHAPES)}")
        try:
            end = float(end_text)
        except ValueError:
            raise ValueError(f"schedule {entry!r} has end value {end_text!r}, which is not a number") from None
        if name in schedules:
            raise ValueError(f"{name} is scheduled twice in {list(entries)}; keep one schedule per value")
        schedules[name] = Schedule(name, end, shape)  # type: ignore[arg-type]
    return schedules

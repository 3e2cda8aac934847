"""The command-line flags the recipes share (`recipes/glue_distill.py`, `recipes/mlm_distill.py`): which teacher,
which student, and what the report measures. Each recipe's `ModelArguments` extends `ModelFlags` with its own."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelFlags:
    teacher_model_name_or_path: str = field(metadata={"help": "Teacher: Hub id or local path."})
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A ready student. By default the student is built with make_student(teacher)."}
    )
    student_layers: list[int] | None = field(
        default=None, metadata={"help": "Teacher layers to copy into the student, e.g. 0 2 4. Default: every other."}
    )
    student_num_layers: int | None = field(default=None, metadata={"help": "Student depth, layers spread evenly."})
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id for the card's base_model when the teacher is local; by default found in its config."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Cache directory for Hub downloads."})
    latency_repeats: int = field(
        default=5, metadata={"help": "Interleaved rounds of the teacher/student CPU latency measurement; 0 skips it."}
    )

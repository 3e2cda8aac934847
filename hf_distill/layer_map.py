"""Which student layer learns from which teacher layer: the `layer_map` of the hint and attention terms.

Layers are numbered as in a model's `hidden_states` output: 0 is the embedding output, `i` the output of the `i`-th
transformer layer (1-based), so a 6-layer teacher has layers 0 to 6. A map is a list of `"student:teacher"` pairs,
e.g. `["1:2", "2:4", "3:6"]`, the form `--layer_map 1:2 2:4 3:6` takes on the command line; a `dict` `{1: 2, ...}` is
accepted from Python and stored in that form. The attention term uses the pairs of transformer layers (not 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LayerPairs = list[tuple[int, int]]


def _as_int(value: Any, entry: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"layer_map entry {entry!r} is not a 'student:teacher' pair of layer numbers, e.g. '1:2'")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"layer_map entry {entry!r} is not a 'student:teacher' pair of layer numbers, e.g. '1:2'"
        ) from None
    if number != value and str(number) != str(value).strip():
        raise ValueError(f"layer_map entry {entry!r} holds {value!r}, which is not a whole layer number")
    return number


def parse_layer_map(value: Sequence[str] | Mapping[int, int] | None) -> LayerPairs | None:
    """The pairs of a `layer_map` argument, checked for form (not yet against the models): `None` for the default.

    Raises:
        ValueError: For an entry that is not `"student:teacher"`, a negative layer, a student layer mapped twice, or
            an empty map.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if isinstance(value, Mapping):
        items = [(_as_int(s, f"{s}: {t}"), _as_int(t, f"{s}: {t}")) for s, t in value.items()]
    else:
        items = []
        # `--layer_map 1:2,2:4` arrives as one entry; commas separate pairs as spaces do.
        for entry in (part for text in value for part in str(text).replace(",", " ").split()):
            parts = str(entry).split(":")
            if len(parts) != 2:
                raise ValueError(
                    f"layer_map entry {entry!r} is not a 'student:teacher' pair, e.g. '1:2' (student layer 1 learns "
                    "from teacher layer 2); pass --layer_map 1:2 2:4 3:6"
                )
            items.append((_as_int(parts[0].strip(), entry), _as_int(parts[1].strip(), entry)))
    if not items:
        raise ValueError("layer_map is empty; give at least one 'student:teacher' pair, or leave it unset (uniform)")
    for student, teacher in items:
        if student < 0 or teacher < 0:
            raise ValueError(
                f"layer_map pair {student}:{teacher} has a negative layer; layers count from 0 (embeddings)"
            )
    students = [student for student, _ in items]
    duplicated = sorted({s for s in students if students.count(s) > 1})
    if duplicated:
        raise ValueError(
            f"layer_map maps student layer {duplicated[0]} more than once; each student layer learns from one "
            "teacher layer"
        )
    return sorted(items)


def format_layer_map(pairs: LayerPairs) -> list[str]:
    """The `"student:teacher"` strings of `pairs`, the form the arguments store and serialise."""
    return [f"{student}:{teacher}" for student, teacher in pairs]


def uniform_layer_map(student_layers: int, teacher_layers: int, *, embeddings: bool = False) -> LayerPairs:
    """Student layer `i` learns from teacher layer `i * teacher_layers // student_layers` (TinyBERT's uniform
    mapping `g(m) = m N / M`, floored when the depths do not divide), so the last layers always meet: 3 of 6 gives
    1:2, 2:4, 3:6. `embeddings=True` adds 0:0."""
    pairs = [(i, i * teacher_layers // student_layers) for i in range(1, student_layers + 1)]
    return [(0, 0), *pairs] if embeddings else pairs


def resolve_layer_map(
    pairs: LayerPairs | None, *, student_layers: int, teacher_layers: int, embeddings: bool = False
) -> LayerPairs:
    """The map to train with: `pairs` checked against the depths, or the uniform map.

    Raises:
        ValueError: For a layer beyond either model's depth, naming the valid range.
    """
    if pairs is None:
        return uniform_layer_map(student_layers, teacher_layers, embeddings=embeddings)
    for student, teacher in pairs:
        if student > student_layers:
            raise ValueError(
                f"layer_map pair {student}:{teacher} names student layer {student}, but the student has "
                f"{student_layers} layers (0 = embeddings to {student_layers})"
            )
        if teacher > teacher_layers:
            raise ValueError(
                f"layer_map pair {student}:{teacher} names teacher layer {teacher}, but the teacher has "
                f"{teacher_layers} layers (0 = embeddings to {teacher_layers})"
            )
    return pairs

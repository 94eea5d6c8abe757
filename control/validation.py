"""Pydantic validation errors, told in the words of the JSON the user wrote.

Pydantic's own locations and messages leak its internals: union members appear as path steps
(``tools.0.literal['end_call',...]``), list indices as dotted numbers, and an unknown field is
only "Extra inputs are not permitted". Here a field is written as in the body (``tools[0].url``),
union members (:data:`control.schemas.UNION_TAGS`) are left out, and an unknown field names the
fields that are allowed there and the nearest one (``events`` -> ``event_types``).

Pure: a :class:`pydantic.ValidationError` in, ``[{"field", "message"}]`` out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

_VALUE_ERROR_PREFIX = "Value error, "


def field_path(loc: Iterable[int | str], skip: frozenset[str] = frozenset()) -> str:
    """``("tools", 0, "url")`` -> ``tools[0].url``; steps in ``skip`` are left out."""
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        elif step not in skip:
            out += f".{step}" if out else step
    return out or "body"


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """Every model class an annotation can hold (through lists, dicts, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {m for arg in get_args(annotation) for m in _models_in(arg)}


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """The field names allowed at ``loc`` (a location whose last step is the unknown field)."""
    models = {root}
    for step in loc[:-1]:
        deeper = {
            m
            for model in models
            if isinstance(step, str) and step in model.model_fields
            for m in _models_in(model.model_fields[step].annotation)
        }
        models = deeper or models  # an index, a dict key or a union tag: same models
    return {name for model in models for name in model.model_fields}


def _message(error: Any, root: type[BaseModel], patterns: dict[str, str]) -> str:
    if error["type"] == "string_pattern_mismatch":
        meaning = patterns.get(str(error.get("ctx", {}).get("pattern", "")))
        if meaning:
            return f"expected {meaning}"
    if error["type"] == "extra_forbidden":
        unknown = str(error["loc"][-1])
        allowed = sorted(_fields_at(root, tuple(error["loc"])))
        text = f"unknown field {unknown!r}"
        near = difflib.get_close_matches(unknown, allowed, n=1, cutoff=0.5)
        if near:
            text += f"; did you mean {near[0]!r}?"
        return text + f" (allowed here: {', '.join(allowed)})"
    message = str(error["msg"])
    return message.removeprefix(_VALUE_ERROR_PREFIX)


def field_errors(
    exc: ValidationError,
    root: type[BaseModel],
    skip: frozenset[str] = frozenset(),
    patterns: dict[str, str] | None = None,
) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per problem, in the body's own terms; union tags in
    ``skip`` are left out of locations, ``patterns`` say what a regex asks for in words."""
    seen: set[tuple[str, str]] = set()
    out = []
    for error in exc.errors():
        item = (field_path(error["loc"], skip), _message(error, root, patterns or {}))
        if item not in seen:
            seen.add(item)
            out.append({"field": item[0], "message": item[1]})
    return out

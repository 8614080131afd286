"""Job types: the handlers a process registered, and validation of payloads against them.

A handler's payload type comes from the annotation of its first parameter (a pydantic model, or
any type pydantic can validate); its JSON Schema is published into the store so that a process
that never imported the handler can validate `add_job` against it (`validate_stored`).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import BaseModel, TypeAdapter, ValidationError

from agentqueue.errors import DuplicateHandler, InvalidArgument, PayloadInvalid
from agentqueue.models import JobOptions, JobTypeInfo

Hook = Callable[..., Awaitable[None] | None]


@dataclass(slots=True)
class HandlerSpec:
    """One registered handler and the defaults its jobs get."""

    name: str
    fn: Callable[..., Any]
    description: str
    queue: str | None
    defaults: JobOptions
    payload_type: Any
    """The annotation of the payload parameter, or None when unannotated (no validation)."""
    takes_context: bool
    is_async: bool
    examples: list[Any] = field(default_factory=list[Any])
    on_success: Hook | None = None
    on_failure: Hook | None = None
    on_timeout: Hook | None = None
    """Called as `on_timeout(job, ctx)` at the deadline; returning seconds (or calling
    `ctx.prolong`) extends it, returning None lets the attempt time out."""
    adapter: TypeAdapter[Any] | None = None

    def payload_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of the payload ({} accepts anything)."""
        if self.adapter is None:
            return {}
        return self.adapter.json_schema()

    def info(self) -> JobTypeInfo:
        """Return the description published into the store."""
        return JobTypeInfo(
            name=self.name,
            description=self.description,
            queue=self.queue or "default",
            payload_schema=self.payload_schema(),
            examples=self.examples,
            defaults=self.defaults,
        )

    def parse(self, payload: Any) -> Any:
        """Validate `payload` and return what the handler receives (a model instance for models).

        Raises:
            PayloadInvalid: with one entry per problem (location, message, type).
        """
        if self.adapter is None:
            return payload
        try:
            return self.adapter.validate_python(payload)
        except ValidationError as error:
            raise PayloadInvalid(
                self.name,
                [
                    {
                        "loc": ".".join(str(part) for part in problem["loc"]),
                        "msg": problem["msg"],
                        "type": problem["type"],
                    }
                    for problem in error.errors(include_url=False)
                ],
                schema=self.payload_schema(),
            ) from None


def build_spec(
    name: str,
    fn: Callable[..., Any],
    *,
    description: str | None,
    queue: str | None,
    defaults: JobOptions,
    examples: list[Any] | None,
    on_success: Hook | None,
    on_failure: Hook | None,
    on_timeout: Hook | None = None,
) -> HandlerSpec:
    """Inspect a handler function and describe it.

    Raises:
        InvalidArgument: the function takes no payload parameter or more than two parameters.
    """
    parameters = list(inspect.signature(fn).parameters.values())
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not positional or len(positional) > 2:
        raise InvalidArgument(
            f"handler {name!r} must take (payload) or (payload, ctx), "
            f"not {len(positional)} positional parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError) as error:
        if positional[0].annotation is inspect.Parameter.empty:
            hints = {}
        else:
            # Silently skipping validation would hand the handler unchecked dicts.
            raise InvalidArgument(
                f"cannot resolve the payload annotation of handler {name!r} ({error}); define "
                "its model at module level, where the annotation can be found"
            ) from None
    payload_type = hints.get(positional[0].name)
    adapter = None if payload_type in (None, Any) else TypeAdapter(payload_type)
    doc = inspect.getdoc(fn) or ""
    return HandlerSpec(
        name=name,
        fn=fn,
        description=description if description is not None else doc.split("\n\n")[0],
        queue=queue,
        defaults=defaults,
        payload_type=payload_type,
        takes_context=len(positional) == 2,
        is_async=inspect.iscoroutinefunction(fn),
        examples=list(examples or []),
        on_success=on_success,
        on_failure=on_failure,
        on_timeout=on_timeout,
        adapter=adapter,
    )


class Registry:
    """The handlers registered in this process, by job type."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def add(self, spec: HandlerSpec) -> None:
        """Register a handler.

        Raises:
            DuplicateHandler: the job type already has a handler.
        """
        if spec.name in self._specs:
            raise DuplicateHandler(f"job type {spec.name!r} already has a handler")
        self._specs[spec.name] = spec

    def get(self, name: str) -> HandlerSpec | None:
        """Return the handler of a job type, or None."""
        return self._specs.get(name)

    def name_of(self, fn: Callable[..., Any]) -> str:
        """Return the job type `fn` is the handler of.

        Raises:
            InvalidArgument: `fn` is not a registered handler (put `@queue.cron` above
                `@queue.handler`).
        """
        for name, spec in self._specs.items():
            if spec.fn is fn:
                return name
        raise InvalidArgument(
            f"{getattr(fn, '__name__', fn)!r} is not a handler: put @queue.cron(...) above "
            "@queue.handler(...)"
        )

    def names(self) -> list[str]:
        """Return the registered job types, sorted."""
        return sorted(self._specs)

    def infos(self) -> list[JobTypeInfo]:
        """Return the descriptions to publish into the store."""
        return [self._specs[name].info() for name in self.names()]

    def __len__(self) -> int:
        return len(self._specs)


def validate_stored(info: JobTypeInfo, payload: Any) -> None:
    """Validate a payload against a job type published by another process.

    Raises:
        PayloadInvalid: with one entry per problem.
    """
    if not info.payload_schema:
        return
    validator = jsonschema.Draft202012Validator(info.payload_schema)
    problems = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    if problems:
        raise PayloadInvalid(
            info.name,
            [
                {
                    "loc": ".".join(str(part) for part in problem.absolute_path),
                    "msg": problem.message,
                    "type": str(problem.validator),
                }
                for problem in problems
            ],
            schema=info.payload_schema,
        )


def payload_value(payload: Any) -> Any:
    """Return the JSON-ready form of a payload given as a model or plain data."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return payload


_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""`\\u0000` in JSON text that is an escape, not a literal backslash before `u0000`."""


def check_plain_json(value: Any) -> None:
    """Refuse what some store cannot keep exactly, before anything is stored, so every store
    takes or refuses the same values: not JSON (NaN, infinities, other types), nested too
    deeply to encode, strings or keys holding NUL (PostgreSQL's jsonb cannot store it) or a
    lone surrogate (not Unicode text; jsonb refuses it too).

    Raises:
        ValueError: (or TypeError) saying what is wrong.
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("a string holds NUL (\\u0000), which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate (not Unicode text)") from None

"""What an API handler returned, checked against its step's contract before it goes out.

A handler returns ``ApiResponse(status, body, headers)`` (or Motia's ``{"status", "body"}``
dict). The body of a status listed in the step's ``response_schema`` must match that schema, as
FastAPI checks its ``response_model``: a mismatch is the server's bug, never the client's, so the
client gets a 500 with a generic body and the log gets one line naming the step, the status and
the field. A handler that returns nothing (``None``) or something else is the same kind of bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surge.steps.context import ApiResponse
from surge.steps.response_schema import ResponseSchema, response_schemas

__all__ = ["BadResponse", "ResponseSchema", "response_parts", "response_schemas"]

_NOTHING = "handler returned nothing; return ApiResponse(status, body)"


class BadResponse(Exception):
    """A handler's result breaks its step's contract (the message says how); HTTP 500."""


def response_parts(
    result: Any, schemas: Mapping[int, ResponseSchema]
) -> tuple[int, Any, Mapping[str, str]]:
    """``(status, body, headers)`` of a handler's result, its body checked against ``schemas``.

    Raises:
        BadResponse: nothing or a non-response was returned, or the body does not match the
            schema of its status.
    """
    if isinstance(result, ApiResponse):
        status, body, headers = result.status, result.body, result.headers
    elif isinstance(result, Mapping) and "status" in result:
        try:
            status = int(result["status"])
        except (TypeError, ValueError):
            raise BadResponse(f"handler returned status {result['status']!r}") from None
        body, headers = result.get("body"), result.get("headers") or {}
    elif result is None:
        raise BadResponse(_NOTHING)
    else:
        raise BadResponse(
            f"handler returned {type(result).__name__}; return ApiResponse(status, body)"
        )
    schema = schemas.get(status)
    if schema is not None:
        problem = schema.problem(body)
        if problem is not None:
            raise BadResponse(
                f"response {status} does not match response_schema[{status}]: {problem}"
            )
    return status, body, headers

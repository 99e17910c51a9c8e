"""The JSON-RPC layer: every request gets an answer, even one whose params do not fit.

pygls turns a message into typed params before any handler runs; when that fails (a negative
position, a string where a number belongs) it only logs, so the client waited forever for the
answer. Such requests now get the JSON-RPC error -32602 (InvalidParams) naming what was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from cattrs import transform_error
from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)


class _Answered:
    """Stands in for a request already answered with an error: nothing more to do for it."""

    jsonrpc = None


ANSWERED = _Answered()


class EditorProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as exc:
            msg_id = data.get("id") if isinstance(data, dict) else None
            if (
                not isinstance(msg_id, (int, str))
                or isinstance(msg_id, bool)
                or "method" not in data
            ):
                raise  # a notification or a broken response: nobody waits for an answer
            method = str(data.get("method"))[:100]
            message = f"Invalid params for {method}: {_describe(exc.__cause__)}"
            log.warning("%s", message)
            self._send_response(
                msg_id, None, ResponseError(code=JsonRpcInvalidParams.CODE, message=message)
            )
            return ANSWERED

    def handle_message(self, message):
        if message is ANSWERED:
            return None
        return super().handle_message(message)


def _describe(exc: BaseException | None) -> str:
    """cattrs's validation errors in a line: ``invalid value for type, expected int @ $.position.line``."""
    if exc is None:
        return "they do not match the method's parameters"
    try:
        details = transform_error(exc, path="$")
    except Exception:  # noqa: BLE001 - not a cattrs error: say what it is
        return str(exc)[:300]
    return "; ".join(details)[:500] or str(exc)[:300]

"""Read timeouts of the ``serve`` server: uvicorn's HTTP/1.1 protocol (h11)
with a deadline for a request's head and one for its body
(:func:`timed_protocol`), and the uvicorn configuration that uses it
(:func:`uvicorn_config`).

uvicorn closes a connection that is idle after a response (its keep-alive
timeout), but not one that is opened and never sends a request, nor one that
stops in the middle of a request head or body: a few hundred such sockets
would hold the server. An ASGI app cannot see a request whose head has not
arrived, so the deadlines live in the protocol. The app answers a body that
does not arrive in time with a 408 of its own (see ``app.py``); the
protocol's body deadline, a second later, closes the connection of any
request whose body is still incomplete (a route that answered without
reading it, or a client that never reads the 408)."""

import asyncio
from typing import Any, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .requests import DEFAULT_BODY_TIMEOUT, DEFAULT_HEAD_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT

__all__ = [
    "BODY_GRACE",
    "TimedH11Protocol",
    "timed_protocol",
    "uvicorn_config",
]

# How long after the app's body deadline the protocol closes the connection:
# long enough for the app's 408 to be written first.
BODY_GRACE = 1.0


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with two deadlines, counted from when they
    start, not from the last byte (a client that sends a byte a second is
    still stopped):

    - the head: from the connection's start, or from the first byte of a
      request that follows a response on the same connection, its request
      line and headers must have arrived within ``head_timeout`` seconds;
      else the connection is answered 408 (if a part of a head came) and
      closed.
    - the body: from the end of the head, its body must have arrived within
      ``body_timeout`` + ``BODY_GRACE`` seconds; else the connection is
      closed.

    Use :func:`timed_protocol` to set the timeouts.
    """

    head_timeout = DEFAULT_HEAD_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._deadline_kind = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_deadline()

    def _update_deadline(self) -> None:
        if self.transport is None or self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Waiting for a head: after a response, uvicorn's keep-alive timer
            # covers the wait for its first byte; once bytes come, ours runs.
            if self.timeout_keep_alive_task is None or self.conn.trailing_data[0]:
                self._arm("head")
            else:
                self._disarm()
        elif state is h11.SEND_BODY:
            self._arm("body")
        else:
            self._disarm()

    def _arm(self, kind: str) -> None:
        if self._deadline is not None and self._deadline_kind == kind:
            return  # a deadline runs from its start, not from the last byte
        self._disarm()
        seconds = self.head_timeout if kind == "head" else self.body_timeout + BODY_GRACE
        self._deadline = self.loop.call_later(seconds, self._expire)
        self._deadline_kind = kind

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_kind = None, ""

    def _expire(self) -> None:
        kind, self._deadline, self._deadline_kind = self._deadline_kind, None, ""
        if self.transport is None or self.transport.is_closing():
            return
        if kind == "head" and self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            # h11 cannot send a response before it has a request: write it whole.
            detail = f"the request head did not arrive within {self.head_timeout:g} s\n".encode("ascii")
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(detail), detail)
            )
        if kind == "head":
            self.logger.info(
                "%s: closed a connection whose request head did not arrive within %g s", self._peer(), self.head_timeout
            )
        else:
            self.logger.info(
                "%s: closed a connection whose request body did not arrive within %g s", self._peer(), self.body_timeout
            )
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def timed_protocol(head_timeout: float = DEFAULT_HEAD_TIMEOUT, body_timeout: float = DEFAULT_BODY_TIMEOUT) -> type:
    """The protocol class with these deadlines (for ``uvicorn.Config(http=...)``).

    head_timeout (float): Seconds for a request's head (request line and
        headers) to arrive.
    body_timeout (float): Seconds for a request's body to arrive after its
        head (the app answers 408; the protocol closes the connection
        ``BODY_GRACE`` seconds later).
    RETURNS (type): A subclass of :class:`TimedH11Protocol`.
    """
    if head_timeout <= 0 or body_timeout <= 0:
        raise ValueError(f"the timeouts must be positive, got {head_timeout} and {body_timeout}")
    return type("TimedH11Protocol", (TimedH11Protocol,), {"head_timeout": head_timeout, "body_timeout": body_timeout})


def uvicorn_config(app: Any, **kwargs: Any) -> Any:
    """A uvicorn configuration for an app of ``make_app``: its protocol has
    the app's head and body timeouts and its keep-alive timeout
    (``app.state.timeouts``, the defaults for another app).

    app: The ASGI app.
    **kwargs: Further arguments of ``uvicorn.Config`` (host, port, log_level, ...).
    RETURNS (uvicorn.Config): The configuration.
    """
    import uvicorn

    timeouts = getattr(getattr(app, "state", None), "timeouts", None) or {}
    protocol = timed_protocol(
        timeouts.get("head_timeout", DEFAULT_HEAD_TIMEOUT), timeouts.get("body_timeout", DEFAULT_BODY_TIMEOUT)
    )
    return uvicorn.Config(
        app, http=protocol, timeout_keep_alive=timeouts.get("keep_alive_timeout", DEFAULT_KEEP_ALIVE_TIMEOUT), **kwargs
    )

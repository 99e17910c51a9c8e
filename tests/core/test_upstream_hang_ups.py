"""core.upstream.HangUps: a cancelled request's upstream connection is shut down while the stream
still waits for the upstream's next event (a long prefill), not only between events.

The upstream here is a fake: a socket server that sends its response headers and then nothing,
an upstream stuck before its first token. The real vLLM cannot be held in that state on demand
(tests/server/test_server_upstream.py covers a hang-up against it between tokens)."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from core.upstream import HangUps


@pytest.fixture
def stalled_upstream():
    """(url, closed): answers every request with SSE headers, then stays silent until the
    client closes the connection, which sets ``closed``."""
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            conn.settimeout(20)
            try:
                while conn.recv(4096):
                    pass
                closed.set()  # recv gave b"": the client shut the connection down
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", closed
    listener.close()
    thread.join(25)


def test_a_cancelled_stream_is_cut_while_it_waits_for_the_first_event(stalled_upstream):
    url, closed = stalled_upstream
    hang_ups = HangUps(period_s=0.01)
    cancel = threading.Event()
    with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        with (
            client.stream("POST", url + "/v1/completions", json={}) as response,
            hang_ups.watching(cancel, response),
        ):
            threading.Timer(0.2, cancel.set).start()
            with pytest.raises(httpx.TransportError):
                for _ in response.iter_bytes():
                    pass
    assert closed.wait(5), "the upstream never saw the connection close"


def test_a_stream_that_ends_normally_is_no_longer_watched(stalled_upstream):
    url, _ = stalled_upstream
    hang_ups = HangUps(period_s=0.01)
    cancel = threading.Event()
    with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        with client.stream("POST", url + "/v1/completions", json={}) as response:
            with hang_ups.watching(cancel, response):
                assert len(hang_ups._watched) == 1
            assert not hang_ups._watched  # a later cancel cannot shut a pooled connection


def test_the_servers_cancel_event_cuts_at_once_without_waiting_for_a_poll(stalled_upstream):
    """The API server's cancel event (set by waitress's main loop the moment the client's
    connection closes) tells HangUps itself: the cut does not wait for the next poll (an hour
    here), so a request superseded by a keystroke leaves the upstream as fast as a direct
    client's would."""
    from server.disconnect import CancelOnDisconnect

    url, closed = stalled_upstream
    hang_ups = HangUps(period_s=3600)
    cancel = CancelOnDisconnect()
    with httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        with (
            client.stream("POST", url + "/v1/completions", json={}) as response,
            hang_ups.watching(cancel, response),
        ):
            threading.Timer(0.2, cancel.set).start()
            with pytest.raises(httpx.TransportError):
                for _ in response.iter_bytes():
                    pass
    assert closed.wait(5), "the upstream never saw the connection close"


def test_a_listener_runs_once_and_at_once_when_already_set():
    from server.disconnect import CancelOnDisconnect

    calls = []
    cancel = CancelOnDisconnect()
    cancel.add_listener(lambda: calls.append("first"))
    cancel.set()
    cancel.set()
    cancel.add_listener(lambda: calls.append("late"))
    assert calls == ["first", "late"]

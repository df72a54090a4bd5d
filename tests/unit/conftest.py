"""A peer on loopback that accepts a connection and never answers: what a hung DC, WinRM host, KDC or API server is
to a client. Each test that uses it bounds how long a client may wait for one."""

import socket
import threading

import pytest


@pytest.fixture(name="hung_peer")
def fixture_hung_peer():
    """A TCP port on 127.0.0.1 that accepts every connection and never sends a byte: its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []
    stopped = threading.Event()

    def accept():
        while not stopped.is_set():
            try:
                connections.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stopped.set()
    listener.close()
    for connection in connections:
        connection.close()

"""Peers that accept a connection and never answer, on loopback: what a hung DC, WinRM host, KDC or API server is
to a client. Each test bounds how long a client may wait for one."""

import http.server
import json
import socket
import threading

import pytest


@pytest.fixture(name="hung_peer")
def fixture_hung_peer():
    """A TCP port on 127.0.0.1 that accepts every connection, reads what comes, and never sends a byte: its port."""
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


# What an API server answers to the discovery a Kubernetes client makes as it is created.
_DISCOVERY = {
    "/version": {"major": "1", "minor": "36", "gitVersion": "v1.36.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
}


@pytest.fixture(name="api_server_hung_after_discovery")
def fixture_api_server_hung_after_discovery():
    """An API server on http://127.0.0.1 that answers discovery, then leaves every other request unanswered: its URL."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            path = self.path.split("?")[0]
            if path not in _DISCOVERY:
                release.wait()
                return
            body = json.dumps(_DISCOVERY[path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()

"""An API server on loopback that answers the Kubernetes client's discovery and nothing else (the peer that never
answers at all, hung_peer, is in tests/unit/conftest.py)."""

import http.server
import json
import threading

import pytest


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

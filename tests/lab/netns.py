"""The lab's network namespaces and the forwarders between them: all the lab ever adds to this host's network.

The lab changes nothing in the host's own network namespace (no route, rule, interface or address). What must
be reachable from it (the API server) is reached through a forwarder: a process of ours that relays TCP from
127.0.0.1 of one namespace to 127.0.0.1 of another, so traffic stays on loopbacks. Namespaces are named from
the cluster they serve: ``wgmsa-<cluster>`` for its control plane, ``wgmsa-<cluster>.<anything>`` for others
(webhook pods); removing a cluster removes every namespace of either form, whoever made it.

    python -m tests.lab.netns forward LISTEN_NETNS LISTEN_PORT DIAL_NETNS DIAL_PORT   # a forwarder process
                                                                                     # (internal; "-": host)
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from tests.lab import REPO_ROOT

PREFIX = "wgmsa-"
# The namespace a forwarder starts in (the host's, when the lab starts it).
HOST = "-"
FORWARDER_MODULE = "tests.lab.netns"
# kwokctl's cluster names are DNS labels; no dot, so "wgmsa-a" never claims the namespaces of "wgmsa-a.b".
CLUSTER_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class NetnsError(Exception):
    """A namespace, process or forwarder could not be set up or removed; the message says why."""


def ip(*args):
    """Run `ip ARGS` and return its output; a failure raises NetnsError naming the command."""
    result = subprocess.run(("ip",) + args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError("ip %s failed (needs root and iproute2): %s" % (" ".join(args), result.stderr.strip()))
    return result.stdout


def cluster_netns(cluster):
    """The namespace a cluster's control plane runs in."""
    if not CLUSTER_NAME_PATTERN.match(cluster):
        raise NetnsError("cluster name %r: must be 1-32 lowercase letters, digits or '-', starting and ending with a letter or digit" % cluster)
    return PREFIX + cluster


def exists(netns):
    return os.path.exists(os.path.join("/run/netns", netns))


def create(netns, loopback_addresses=()):
    """A namespace with only its loopback up, holding loopback_addresses: no default route (idempotent)."""
    if not exists(netns):
        ip("netns", "add", netns)
    ip("-n", netns, "link", "set", "lo", "up")
    held = {info["local"] for link in json.loads(ip("-n", netns, "-j", "addr", "show", "dev", "lo")) for info in link.get("addr_info", [])}
    for address in loopback_addresses:
        if address not in held:
            ip("-n", netns, "addr", "add", address + "/32", "dev", "lo")


def command_in(netns, command):
    """command, run inside netns (everything it spawns stays there)."""
    return ["ip", "netns", "exec", netns] + list(command)


def of_cluster(netns):
    """Every namespace of the cluster whose control plane namespace is netns, its own first."""
    listing = ip("-j", "netns", "list").strip()
    names = sorted(entry["name"] for entry in json.loads(listing or "[]"))
    return [name for name in names if name == netns] + [name for name in names if name.startswith(netns + ".")]


def _state(pid):
    """The state letter of pid (R, S, Z...), or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_running(pid, marker):
    """Whether pid runs and its command line contains marker (a recorded PID can be reused after a crash)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            arguments = cmdline.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return _state(pid) not in (None, "Z") and marker.encode() in arguments


def _exiting(pid):
    """Whether pid has not finished exiting: a process closes its files (a listening socket) late in its exit,
    after its command line has already gone empty (Linux do_exit: exit_mm, then exit_files), and is a zombie after."""
    return _state(pid) not in (None, "Z", "X")


def stop(processes, timeout=10):
    """Stop each {pid: marker} that still runs what marker names: SIGTERM, then SIGKILL after timeout seconds
    (timeout 0: SIGKILL at once)."""
    # A killed process is gone at once (a zombie counts as stopped): the last wait is only for the kernel.
    steps = ((signal.SIGTERM, timeout),) if timeout else ()
    for sig, wait in steps + ((signal.SIGKILL, 5),):
        running = {pid: marker for pid, marker in processes.items() if is_running(pid, marker)}
        for pid in running:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass  # it exited since the check
        deadline = time.monotonic() + wait
        # Until each has exited, not only until its command line is gone: its port may be bound again right after.
        while any(_exiting(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.1)
    survivors = sorted(pid for pid, marker in processes.items() if is_running(pid, marker))
    if survivors:
        raise NetnsError("processes %s survived SIGKILL" % survivors)


def remove(netns):
    """Kill whatever still runs in netns (only the lab starts anything there), then delete it (idempotent).

    Callers stop gracefully first what deserves it: the namespace is going, and with it whatever runs inside.
    """
    if not exists(netns):
        return
    # Any command line matches (marker ""): a process inside our namespace is ours whatever it runs.
    stop(dict.fromkeys((int(pid) for pid in ip("netns", "pids", netns).split()), ""), timeout=0)
    # Deleting the namespace destroys its interfaces, the peers of its veths and their routes with them.
    ip("netns", "del", netns)


def start_forwarder(listen_netns, listen_port, dial_netns, dial_port, log_path):
    """Start a forwarder process (a session of its own: it outlives its starter) and return its Popen."""
    command = [sys.executable, "-m", FORWARDER_MODULE, "forward", listen_netns, str(listen_port), dial_netns, str(dial_port)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # pylint: disable=consider-using-with
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_listening(port, forwarder, log_path, timeout=10):
    """Wait until the forwarder just started accepts connections on the host's 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if forwarder.poll() is not None or time.monotonic() > deadline:
                raise NetnsError("forwarder on 127.0.0.1:%s did not start; see %s" % (port, log_path)) from None
            time.sleep(0.1)


def _pipe(source, sink):
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def forward(listen_netns, listen_port, dial_netns, dial_port):
    """Relay connections from 127.0.0.1:listen_port in listen_netns to 127.0.0.1:dial_port in dial_netns."""
    with open("/proc/self/ns/net", "rb") as own:
        own_fd = os.dup(own.fileno())

    def enter(netns):
        if netns == HOST:
            os.setns(own_fd, os.CLONE_NEWNET)
        else:
            with open(os.path.join("/run/netns", netns), "rb") as target:
                os.setns(target.fileno(), os.CLONE_NEWNET)

    # A socket stays in the namespace it was created in: listen in one, then dial from the other.
    enter(listen_netns)
    listener = socket.create_server(("127.0.0.1", listen_port))
    enter(dial_netns)
    while True:
        client, _address = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", dial_port), timeout=10)
        except OSError:
            client.close()  # nothing listens there yet (a server still starting): the client sees a reset
            continue
        upstream.settimeout(None)
        relay(client, upstream)


def relay(client, upstream):
    """Pipe both ways between two connected sockets, each chunk sent on as it arrives.

    Without TCP_NODELAY here, a response its server wrote in two parts (kube-apiserver's over about 3.5 KB) would
    hold its second part until the client's delayed ACK, 40 ms later: the servers behind do not delay (Go's
    net.TCPConn has Nagle's algorithm off by default, "SetNoDelay ... The default is true", net/tcpsock.go), and a
    direct connection to them would not either."""
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for source, sink in ((client, upstream), (upstream, client)):
        threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "forward":
        sys.exit(__doc__)
    forward(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))

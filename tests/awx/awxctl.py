"""Bring a real AWX up or down on this machine: PostgreSQL, Redis, receptor and AWX's own services.

    python -m tests.awx.awxctl up|down|status      (make awx-up, make awx-down)

AWX 24.6.1 from its pinned source (tests/awx/sources.py) runs natively with its production settings, from a
settings file of the lab's: PostgreSQL 15 and Redis 7 from Debian listen on unix sockets only, AWX's API on
127.0.0.1, receptor runs the jobs (ansible-runner worker, which starts podman with the execution environment
image of tests/awx/ee.py). Every process is started here, recorded by PID under <lab dir>/run, and stopped by
PID; nothing is installed as a service. State stays for a fast next start: `down` stops, it deletes nothing.

Two things cannot live under the lab directory, and `down` removes both:
- AWX reads receptor's configuration from the fixed path /etc/receptor/receptor.conf
  (awx/main/tasks/receptor.py), so that path is a symbolic link to the lab's file while AWX runs;
- PostgreSQL refuses to run as root and cannot enter /root, so its cluster is in /var/lib/wincontainers-gmsa-awx
  (owned by the postgres user), with a copy of the freshly migrated database kept in the lab directory: a cold
  start restores it instead of migrating for minutes. AWX's projects directory is there too (see PROJECTS_ROOT).
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.awx import awx_dir, build, ee, podman_env, sources
from tests.lab import samba
from tests.lab.build import BuildError

API_HOST = "127.0.0.1"
API_PORT = int(os.environ.get("WGMSA_AWX_PORT", "18052"))
CLUSTER_HOST_ID = "awx-lab"
RECEPTOR_CONF_LINK = "/etc/receptor/receptor.conf"
# Where job containers find the lab DC's krb5.conf (KRB5_CONFIG): a directory of the image's left alone.
JOBS_KRB5_DIR = "/etc/wincontainers-gmsa-lab"
PG_BIN = "/usr/lib/postgresql/15/bin"
# What cannot be under the lab directory (see the module's docstring).
VAR_DIR = os.environ.get("WGMSA_AWX_VAR_DIR", "/var/lib/wincontainers-gmsa-awx")
PG_ROOT = os.path.join(VAR_DIR, "postgres")
# AWX lists a manual project's playbooks only outside dot-directories such as ~/.cache: skip_directory() in
# awx/main/utils/ansible.py tests every element of the absolute path.
PROJECTS_ROOT = os.path.join(VAR_DIR, "projects")
REDIS_SERVER = os.path.join(awx_dir(), "debian", "redis", "usr", "bin", "redis-server")
# The services of a production AWX that jobs need; the UI's websockets (daphne, wsrelay, heartbeat) and the
# log forwarder (rsyslog) are left out.
AWX_SERVICES = ("uwsgi", "dispatcher", "callback-receiver")


class AwxError(Exception):
    """AWX could not be brought up or down; the message says which part and why."""


def _path(*parts):
    return os.path.join(awx_dir(), *parts)


def _run_dir():
    return _path("run")


def _pid_file(name):
    return os.path.join(_run_dir(), name + ".pid")


def _alive(name):
    """The PID of the lab's process `name` if it runs (and is still the process we started), else None."""
    try:
        with open(_pid_file(name), encoding="utf-8") as pid_file:
            pid, started = pid_file.read().split()
        with open("/proc/%s/stat" % pid, encoding="utf-8") as stat:
            # Field 22 is the start time: a PID reused by another process does not match it.
            if stat.read().rsplit(")", 1)[1].split()[19] == started:
                return int(pid)
    except (FileNotFoundError, ValueError, IndexError):
        pass
    return None


def _start(name, command, env, cwd=None):
    """Start a long-running process in its own session, logging to logs/<name>.log; record its PID.

    At low priority: the machine is shared with the lab and other test suites, whose timing matters more.
    """
    if _alive(name):
        return
    os.makedirs(_run_dir(), exist_ok=True)
    os.makedirs(_path("logs"), exist_ok=True)
    with open(_path("logs", name + ".log"), "ab") as log:
        # nice executes the command in its own process: the PID recorded is the service's.
        process = subprocess.Popen(
            ["nice", "-n", "10"] + list(command), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    with open("/proc/%d/stat" % process.pid, encoding="utf-8") as stat:
        started = stat.read().rsplit(")", 1)[1].split()[19]
    with open(_pid_file(name), "w", encoding="utf-8") as pid_file:
        pid_file.write("%d %s\n" % (process.pid, started))


def _stop(name, timeout=20):
    """Stop the process group the lab started as `name`: SIGTERM, then SIGKILL after `timeout` seconds."""
    pid = _alive(name)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(name):
            os.killpg(pid, signal.SIGKILL)
    try:
        os.unlink(_pid_file(name))
    except FileNotFoundError:
        pass


def _wait(what, check, timeout, name=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if name and not _alive(name):
            raise AwxError("%s exited while starting; see %s" % (name, _path("logs", name + ".log")))
        time.sleep(0.5)
    raise AwxError("%s not ready after %d s" % (what, timeout))


def _as_postgres(*command):
    return subprocess.run(["runuser", "-u", "postgres", "--"] + list(command), capture_output=True, text=True, check=False)


# --- PostgreSQL (unix socket only) -----------------------------------------------------------------------------

def _pg_data():
    return os.path.join(PG_ROOT, "data")


def _pg_socket_dir():
    return os.path.join(PG_ROOT, "run")


def _pg_snapshot():
    return _path("cache", "postgres-migrated-%s.tar" % sources.AWX.commit[:12])


def _pg_ready():
    return _as_postgres(os.path.join(PG_BIN, "pg_isready"), "-q", "-h", _pg_socket_dir()).returncode == 0


def _postgres_up():
    """Start PostgreSQL; returns True when its cluster is new (AWX's database must be created and migrated)."""
    fresh = False
    if not os.path.isdir(_pg_data()):
        os.makedirs(PG_ROOT, exist_ok=True)
        shutil.chown(PG_ROOT, "postgres", "postgres")
        os.chmod(PG_ROOT, 0o700)
        if os.path.exists(_pg_snapshot()):
            subprocess.run(["tar", "-C", PG_ROOT, "-xpf", _pg_snapshot()], check=True)
        else:
            result = _as_postgres(os.path.join(PG_BIN, "initdb"), "-D", _pg_data(), "-A", "peer", "-E", "UTF8", "--no-instructions")
            if result.returncode != 0:
                raise AwxError("initdb failed: %s" % result.stderr[-2000:])
            fresh = True
    os.makedirs(_pg_socket_dir(), exist_ok=True)
    shutil.chown(_pg_socket_dir(), "postgres", "postgres")
    if not _pg_ready():
        postgres = [os.path.join(PG_BIN, "postgres"), "-D", _pg_data(), "-k", _pg_socket_dir(), "-c", "listen_addresses=", "-c", "max_connections=200"]
        _start("postgres", ["runuser", "-u", "postgres", "--"] + postgres, env=dict(os.environ))
        _wait("PostgreSQL", _pg_ready, 60, "postgres")
    if fresh:
        # AWX connects as root over the socket with peer authentication: a role named root owns its database.
        for sql in ("CREATE ROLE root LOGIN", "CREATE DATABASE awx OWNER root"):
            result = _as_postgres(os.path.join(PG_BIN, "psql"), "-h", _pg_socket_dir(), "-c", sql)
            if result.returncode != 0:
                raise AwxError("PostgreSQL: %s failed: %s" % (sql, result.stderr))
    return fresh


def _postgres_snapshot():
    """Keep the migrated cluster for the next cold start (PostgreSQL stopped, so the copy is consistent)."""
    _stop("postgres", timeout=60)
    os.makedirs(os.path.dirname(_pg_snapshot()), exist_ok=True)
    subprocess.run(["tar", "-C", PG_ROOT, "-cpf", _pg_snapshot() + ".partial", "data"], check=True)
    os.replace(_pg_snapshot() + ".partial", _pg_snapshot())


# --- Redis (unix socket only) ----------------------------------------------------------------------------------

def _redis_socket():
    return os.path.join(_run_dir(), "redis.sock")


def _redis_up():
    if not os.path.exists(REDIS_SERVER):
        raise AwxError("%s is missing (hack/awx-deps.sh unpacks it)" % REDIS_SERVER)
    os.makedirs(_path("redis"), exist_ok=True)
    command = [
        REDIS_SERVER, "--port", "0", "--unixsocket", _redis_socket(), "--unixsocketperm", "700", "--dir", _path("redis"), "--save", "", "--appendonly", "no",
    ]
    _start("redis", command, env=dict(os.environ))
    _wait("Redis", lambda: os.path.exists(_redis_socket()), 30, "redis")


# --- receptor ---------------------------------------------------------------------------------------------------

def _receptor_socket():
    return os.path.join(_run_dir(), "receptor.sock")


def _receptor_up(receptor, venv):
    config = _path("etc", "receptor.conf")
    os.makedirs(os.path.dirname(config), exist_ok=True)
    # AWX's own starter configuration (awx/main/tasks/receptor.py RECEPTOR_CONFIG_STARTER) minus TLS, signing
    # and Kubernetes: one local node whose work type "local" runs ansible-runner worker.
    with open(config, "w", encoding="utf-8") as conf:
        json.dump(
            [
                {"local-only": None},
                {"log-level": "info"},
                {"node": {"id": CLUSTER_HOST_ID}},
                {"control-service": {"service": "control", "filename": _receptor_socket(), "permissions": "0600"}},
                {"work-command": {"worktype": "local", "command": "ansible-runner", "params": "worker", "allowruntimeparams": True}},
            ],
            conf,
        )
    os.makedirs(os.path.dirname(RECEPTOR_CONF_LINK), exist_ok=True)
    if os.path.lexists(RECEPTOR_CONF_LINK) and os.path.realpath(RECEPTOR_CONF_LINK) != config:
        raise AwxError("%s exists and is not the lab's: refusing to replace it" % RECEPTOR_CONF_LINK)
    if not os.path.lexists(RECEPTOR_CONF_LINK):
        os.symlink(config, RECEPTOR_CONF_LINK)
    # ansible-runner worker (AWX's venv) starts podman with the lab's container configuration.
    env = podman_env(dict(os.environ, PATH=os.pathsep.join((os.path.join(venv, "bin"), os.environ["PATH"]))))
    _start("receptor", [receptor, "--config", config], env=env, cwd=_path("run"))
    _wait("receptor", lambda: os.path.exists(_receptor_socket()), 30, "receptor")


def _remove_receptor_link():
    if os.path.islink(RECEPTOR_CONF_LINK) and os.path.realpath(RECEPTOR_CONF_LINK) == _path("etc", "receptor.conf"):
        os.unlink(RECEPTOR_CONF_LINK)
        try:
            os.rmdir(os.path.dirname(RECEPTOR_CONF_LINK))
        except OSError:
            pass


# --- AWX ---------------------------------------------------------------------------------------------------------

def _jobs_krb5_dir(log):
    """A directory holding only a copy of the lab DC's krb5.conf, to mount into job containers.

    ansible-runner mounts the directory of a file it is given (ansible_runner/config/_base.py
    _update_volume_mount_paths), and the lab DC's directory holds its database and secrets: hence a directory of its
    own. The copy is made at each start; the lab writes its krb5.conf when it provisions the DC (make lab-up).
    """
    directory = _path("etc", "jobs-krb5")
    os.makedirs(directory, exist_ok=True)
    krb5_config = samba.status().get("krb5_config")
    if krb5_config:
        shutil.copyfile(krb5_config, os.path.join(directory, "krb5.conf"))
    else:
        log("the lab's DC is not provisioned yet: jobs get its krb5.conf once make lab-up, then make awx-up, ran")
    return directory


def _settings(image, log):
    """AWX's settings file for the lab (AWX_SETTINGS_FILE); the secret key is a file beside it, mode 0600."""
    key_file = _path("etc", "SECRET_KEY")
    os.makedirs(os.path.dirname(key_file), exist_ok=True)
    if not os.path.exists(key_file):
        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key:
            key.write(secrets.token_urlsafe(48))
    for directory in ("job_status", "static", "jobs"):
        os.makedirs(_path(directory), exist_ok=True)
    os.makedirs(PROJECTS_ROOT, exist_ok=True)
    values = {
        "CLUSTER_HOST_ID": CLUSTER_HOST_ID,
        "SYSTEM_UUID": "00000000-0000-0000-0000-000000000000",
        "ALLOWED_HOSTS": [API_HOST, "localhost"],
        "DATABASES": {
            "default": {"ENGINE": "awx.main.db.profiled_pg", "NAME": "awx", "USER": "root", "HOST": _pg_socket_dir(), "PORT": "", "ATOMIC_REQUESTS": True}
        },
        "BROKER_URL": "unix://" + _redis_socket(),
        "CACHES": {"default": {"BACKEND": "awx.main.cache.AWXRedisCache", "LOCATION": "unix://%s?db=1" % _redis_socket()}},
        "CHANNEL_LAYERS": {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["unix://" + _redis_socket()], "capacity": 10000}}
        },
        "PROJECTS_ROOT": PROJECTS_ROOT,
        "JOBOUTPUT_ROOT": _path("job_status"),
        "STATIC_ROOT": _path("static"),
        "AWX_ISOLATION_BASE_PATH": _path("jobs"),
        "LOG_ROOT": _path("logs"),
        # The lab's DC and API server listen on the host's loopback; the container shares the host's network.
        "DEFAULT_CONTAINER_RUN_OPTIONS": ["--network", "host"],
        # Debian has no /etc/pki: the production default mounts would make podman fail. The lab's domain has no
        # DNS, so the jobs' kinit finds its KDC through the lab's krb5.conf, exposed to the job containers as an
        # administrator exposes a site's ("Paths to expose to isolated jobs", "Extra Environment Variables").
        "AWX_ISOLATION_SHOW_PATHS": [_jobs_krb5_dir(log) + ":" + JOBS_KRB5_DIR + ":ro"],
        "AWX_TASK_ENV": {"KRB5_CONFIG": JOBS_KRB5_DIR + "/krb5.conf"},
        "GLOBAL_JOB_EXECUTION_ENVIRONMENTS": [{"name": "wincontainers.gmsa (lab)", "image": image}],
        "CONTROL_PLANE_EXECUTION_ENVIRONMENT": image,
        "AWX_CLEANUP_PATHS": True,
        # A source checkout runs in AWX's development MODE (awx/devonly.py exists), whose task manager reads this
        # setting of the development settings (awx/main/scheduler/tasks.py): without it no job ever starts.
        "AWX_DISABLE_TASK_MANAGERS": False,
    }
    path = _path("etc", "settings.py")
    with open(path, "w", encoding="utf-8") as settings:
        settings.write("# Written by tests/awx/awxctl.py for the AWX lab.\n")
        settings.write("with open(%r) as _key:\n    SECRET_KEY = _key.read().strip()\n" % key_file)
        for name, value in values.items():
            settings.write("%s = %r\n" % (name, value))
        # File logging under the lab directory, as the production settings do under /var/log/tower.
        settings.write("for _handler in LOGGING['handlers'].values():\n")
        settings.write("    if 'filename' in _handler:\n        _handler['filename'] = LOG_ROOT + '/' + _handler['filename'].rsplit('/', 1)[1]\n")
    return path


def _awx_env(venv, settings_path):
    return dict(
        os.environ,
        PATH=os.pathsep.join((os.path.join(venv, "bin"), os.environ["PATH"])),
        DJANGO_SETTINGS_MODULE="awx.settings.production",
        AWX_SETTINGS_FILE=settings_path,
        AWX_SETTINGS_DIR=_path("etc", "conf.d"),
        # Jobs' ansible-runner must not honour a proxy for the lab's loopback servers.
        NO_PROXY="127.0.0.1,localhost",
    )


def _manage(venv, awx_source, env, *args, name="manage"):
    with open(_path("logs", name + ".log"), "ab") as log:
        result = subprocess.run(
            ["nice", "-n", "10", os.path.join(venv, "bin", "python"), "manage.py"] + list(args),
            cwd=awx_source, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    if result.returncode != 0:
        raise AwxError("awx-manage %s failed; see %s" % (" ".join(args), _path("logs", name + ".log")))


def admin_credentials():
    """{"username", "password", "url"} of the lab AWX's administrator (the file is 0600 in the lab directory)."""
    with open(_path("etc", "admin.json"), encoding="utf-8") as admin:
        return dict(json.load(admin), url="http://%s:%d" % (API_HOST, API_PORT))


def _bootstrap(venv, awx_source, env):
    """What a new AWX database needs: schema, administrator, this node and its instance groups, the EE entries."""
    os.makedirs(_path("logs"), exist_ok=True)
    admin_file = _path("etc", "admin.json")
    _manage(venv, awx_source, env, "migrate", "--noinput", name="migrate")
    password = secrets.token_urlsafe(18)
    # The password reaches the command through its environment, never its arguments (visible in ps).
    _manage(venv, awx_source, dict(env, WGMSA_AWX_ADMIN_PASSWORD=password), "shell", "-c",
            "import os; from django.contrib.auth.models import User; "
            "User.objects.create_superuser('admin', 'admin@localhost', os.environ['WGMSA_AWX_ADMIN_PASSWORD'])",
            name="bootstrap")
    # What AWX's installers do on a new database (without create_preload_data's demo project, which needs GitHub).
    _manage(venv, awx_source, env, "setup_managed_credential_types", name="bootstrap")
    _manage(venv, awx_source, env, "shell", "-c",
            "from awx.main.models import Organization; Organization.objects.get_or_create(name='Default')", name="bootstrap")
    _manage(venv, awx_source, env, "provision_instance", "--hostname", CLUSTER_HOST_ID, "--node_type", "hybrid", name="bootstrap")
    _manage(venv, awx_source, env, "register_queue", "--queuename", "controlplane", "--instance_percent", "100", name="bootstrap")
    _manage(venv, awx_source, env, "register_queue", "--queuename", "default", "--instance_percent", "100", name="bootstrap")
    _manage(venv, awx_source, env, "register_default_execution_environments", name="bootstrap")
    with os.fdopen(os.open(admin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as admin:
        json.dump({"username": "admin", "password": password}, admin)


def _api_ready():
    try:
        with urllib.request.urlopen("http://%s:%d/api/v2/ping/" % (API_HOST, API_PORT), timeout=5) as response:
            return response.status == 200 and json.load(response).get("instances")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def up(log=print):
    """Start whatever is not running (building what is missing first); returns status()."""
    try:
        built = build.ensure_all(log)
        image = ee.ensure_image(log)
    except (BuildError, ee.ImageError) as error:
        raise AwxError(str(error)) from error
    venv, awx_source = built["venv"], built["awx_source"]
    os.makedirs(_path("logs"), exist_ok=True)
    fresh = _postgres_up()
    if not fresh and not os.path.exists(_path("etc", "admin.json")):
        # A first start that did not finish (the administrator's file is written last): begin the database anew.
        _stop("postgres", timeout=60)
        shutil.rmtree(_pg_data())
        fresh = _postgres_up()
    _redis_up()
    settings_path = _settings(image, log)
    env = _awx_env(venv, settings_path)
    if fresh:
        log("migrating AWX's database (once; the result is kept for the next cold start) ...")
        _bootstrap(venv, awx_source, env)
        _postgres_snapshot()
        _postgres_up()
    else:
        # The image name follows the checkout: point the lab's execution environment entries at the current one.
        _manage(venv, awx_source, env, "register_default_execution_environments", name="bootstrap")
    _receptor_up(built["receptor"], venv)
    python = os.path.join(venv, "bin", "python")
    _start("dispatcher", [python, "manage.py", "run_dispatcher"], env, cwd=awx_source)
    _start("callback-receiver", [python, "manage.py", "run_callback_receiver"], env, cwd=awx_source)
    uwsgi = [
        os.path.join(venv, "bin", "uwsgi"), "--http", "%s:%d" % (API_HOST, API_PORT), "--module", "awx.wsgi:application",
        "--chdir", awx_source, "--processes", "2", "--master", "--lazy-apps", "--vacuum", "--die-on-term", "--buffer-size", "32768",
        "--pidfile", os.path.join(_run_dir(), "uwsgi-master.pid"),
    ]
    _start("uwsgi", uwsgi, env, cwd=awx_source)
    _wait("AWX's API on http://%s:%d" % (API_HOST, API_PORT), _api_ready, 300, "uwsgi")
    return status()


def down(log=print):
    """Stop every process the lab started, remove the receptor configuration link; keep the state."""
    for name in reversed(("postgres", "redis", "receptor") + AWX_SERVICES):
        _stop(name, timeout=60 if name == "postgres" else 20)
    _remove_receptor_link()
    return status()


def _rss_kib(pid):
    """Resident memory of a process and its descendants, in KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open("/proc/%d/status" % current, encoding="utf-8") as proc_status:
                total += next((int(line.split()[1]) for line in proc_status if line.startswith("VmRSS:")), 0)
            with open("/proc/%d/task/%d/children" % (current, current), encoding="utf-8") as children:
                pending.extend(int(child) for child in children.read().split())
        except FileNotFoundError:
            continue
    return total


def status():
    """Which of the lab's processes run (PIDs), their memory, the API address; no secrets."""
    processes = {name: _alive(name) for name in ("postgres", "redis", "receptor") + AWX_SERVICES}
    running = {name: pid for name, pid in processes.items() if pid}
    return {
        "running": len(running) == len(processes),
        "url": "http://%s:%d" % (API_HOST, API_PORT),
        "processes": ", ".join("%s=%s" % (name, pid or "-") for name, pid in processes.items()),
        "memory_mib": round(sum(_rss_kib(pid) for pid in running.values()) / 1024),
        "receptor_conf_link": os.path.islink(RECEPTOR_CONF_LINK),
        "state_dir": awx_dir(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        facts = {"up": up, "down": down, "status": status}[args.action]()
    except AwxError as error:
        sys.exit("awx %s failed: %s" % (args.action, error))
    print("awx %s: %.1f s" % (args.action, time.monotonic() - started))
    for key, value in facts.items():
        print("  %-20s %s" % (key, value))


if __name__ == "__main__":
    main()

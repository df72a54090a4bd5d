"""Offline stand-in for the get-pip.py script that ``ansible-test --venv`` downloads.

ansible-test runs ``python get_pip.py [pip options] pip==X ... [--no-setuptools] [--no-wheel]`` in a fresh
virtual environment. This bootstraps pip from the interpreter's own ``ensurepip`` and then lets that pip
install the requested packages from the package index, so no other download is needed.
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    # A child process: ensurepip.bootstrap() in-process sets PIP_CONFIG_FILE=/dev/null for everything after it,
    # which would drop the machine's pip settings (index, certificate bundle) from the install below.
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    pip_arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    return subprocess.call([sys.executable, "-m", "pip", "install"] + pip_arguments)


if __name__ == "__main__":
    sys.exit(main())

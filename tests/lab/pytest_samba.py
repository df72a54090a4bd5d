"""pytest plugin: the lab's Samba AD DC as the session fixture ``samba_dc``.

Enable it with ``pytest_plugins = ("tests.lab.pytest_samba",)``.
The DC is left running after the session so the next one starts in under a second; stop it with
``python -m tests.lab.samba down``.
"""

from __future__ import annotations

import pytest

from . import samba


@pytest.fixture(scope="session")
def samba_dc() -> dict:
    """The running lab DC, as returned by :func:`samba.up`; ``WGMSA_LAB_DIR`` chooses the lab directory.

    A DC that cannot start is an error of every test using it, never a skip: the lab is part of the test bed.
    """
    try:
        return samba.up()
    except samba.LabError as error:
        pytest.fail(f"the lab domain controller did not start: {error}", pytrace=False)

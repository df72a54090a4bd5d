"""tests/lab/fleet.py: the members' names and state dirs, which one runs the older minor, what down finds.

Also tests/lab/build.py's stamps for the older minor: kube-apiserver before 1.31 reports /version's major and
minor only from them, and the collection reads them (gmsa_webhook's preStop sleep since 1.30).
"""

import os

from tests.lab import build, fleet


def test_the_first_member_is_the_lab_cluster_and_the_second_runs_the_older_minor(tmp_path):
    state_dir = str(tmp_path)
    assert fleet.members(state_dir, 3) == [
        fleet.Member("lab", state_dir, False),
        fleet.Member("lab2", os.path.join(state_dir, "fleet", "lab2"), True),
        fleet.Member("lab3", os.path.join(state_dir, "fleet", "lab3"), False),
    ]
    assert fleet.members(state_dir, 1) == [fleet.Member("lab", state_dir, False)]


def test_a_fleet_with_another_first_cluster_names_its_members_after_it(tmp_path):
    state_dir = str(tmp_path)
    assert [member.name for member in fleet.members(state_dir, 3, "fleet")] == ["fleet", "fleet2", "fleet3"]
    for name in ("fleet2", "lab2", "fleet3"):
        (tmp_path / "fleet" / name).mkdir(parents=True)
    assert fleet.existing(state_dir, "fleet") == [
        fleet.Member("fleet2", os.path.join(state_dir, "fleet", "fleet2"), True),
        fleet.Member("fleet3", os.path.join(state_dir, "fleet", "fleet3"), False),
    ]


def test_existing_lists_the_members_with_a_state_dir_and_nothing_else(tmp_path):
    assert not fleet.existing(str(tmp_path))
    for name in ("lab3", "lab2", "lab10", "other", "lab", "labx"):
        (tmp_path / "fleet" / name).mkdir(parents=True)
    assert [member.name for member in fleet.existing(str(tmp_path))] == ["lab2", "lab3", "lab10"]


def test_the_older_minor_is_stamped_with_its_major_and_minor():
    flags = build._ldflags(build.KUBERNETES_OLDER)  # pylint: disable=protected-access
    assert "-X k8s.io/component-base/version.gitVersion=v1.30.14" in flags
    assert "-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=30" in flags

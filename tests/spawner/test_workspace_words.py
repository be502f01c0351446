"""How WorkspaceSpawner reads scheduler messages (pure functions, no cluster)."""

import pytest

from kubestudio.spawner.workspace import permanently_unschedulable


@pytest.mark.parametrize(
    "message, permanent",
    [
        (
            "0/5 nodes are available: 1 node(s) had taint {nvidia.com/gpu: present}, that the pod didn't tolerate, "
            "4 node(s) didn't match Pod's node affinity.",
            True,
        ),
        ("0/2 nodes are available: 2 node(s) didn't match node selector.", True),
        ("0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 3 node(s) didn't match node selector.", False),
        ("0/3 nodes are available: 3 Insufficient cpu.", False),
        ("pod has unbound immediate PersistentVolumeClaims", False),
        ("", False),
    ],
)
def test_permanently_unschedulable(message, permanent):
    assert permanently_unschedulable(message) is permanent

"""Every workspace pod of the default catalog is accepted by the real apiserver (server-side dry run)."""

from kubestudio.spawner.pods import pod_manifest
from tests.spawner.test_pods import SETTINGS, combinations, request_for


def test_every_combination_passes_apiserver_validation(bench):
    refused = []
    checked = 0
    for profile, project, ide, gpus in combinations():
        manifest = pod_manifest(
            "first.last@example.org", f"{profile}-{ide}", request_for(profile, project, ide, gpus), SETTINGS
        )
        r = bench.api("POST", "/api/v1/namespaces/default/pods?dryRun=All", json=manifest)
        checked += 1
        if r.status_code != 201:
            refused.append((profile, project, ide, gpus, r.status_code, r.text[:300]))
    assert checked >= 20
    assert not refused, refused

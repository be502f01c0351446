import pytest

from kubestudio.spawner.gpus import Allocation, Gpu, GpuLedger, gpus_from_config, parse_nvidia_smi_list
from kubestudio.spawner.projects import Project
from kubestudio.spawner.request import SpawnRefused

PUBLIC = Project(name="public")

NVIDIA_SMI = """GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-1b2c3d4e-0000-1111-2222-333344445555)
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaaaaaa-0000-1111-2222-333344445555)
GPU 2: Tesla V100-PCIE-32GB (UUID: GPU-bbbbbbbb-0000-1111-2222-333344445555)
  MIG 1g.10gb     Device  0: (UUID: MIG-xxxx)
"""


def test_parse_nvidia_smi():
    gpus = parse_nvidia_smi_list(NVIDIA_SMI)
    assert [g.id for g in gpus] == ["0", "1", "2"]
    assert gpus[0].name == "NVIDIA A100-SXM4-80GB"
    assert gpus[2].uuid == "GPU-bbbbbbbb-0000-1111-2222-333344445555"
    assert gpus[2].matches("v100") and not gpus[2].matches("A100") and gpus[2].matches(None)


def test_gpus_from_config():
    assert gpus_from_config(["0", "1:A100", {"id": 2, "name": "H100"}]) == [
        Gpu("0"),
        Gpu("1", "A100"),
        Gpu("2", "H100"),
    ]
    with pytest.raises(ValueError, match="unique"):
        gpus_from_config(["0", "0"])
    with pytest.raises(ValueError, match="needs an 'id'"):
        gpus_from_config([{"name": "A100"}])


def ledger(n=4, name=""):
    return GpuLedger([Gpu(str(i), name) for i in range(n)])


def test_never_the_same_gpu_twice():
    book = ledger(4)
    a = book.reserve("alice", "", PUBLIC, 2)
    b = book.reserve("bob", "", PUBLIC, 2)
    assert set(a.gpus).isdisjoint(b.gpus) and len(a.gpus + b.gpus) == 4
    with pytest.raises(SpawnRefused) as e:
        book.reserve("carol", "", PUBLIC, 1)
    assert "not enough free GPUs: 1 asked, 0 free of 4" in str(e.value)
    assert e.value.status == 409
    book.release("alice", "")
    c = book.reserve("carol", "", PUBLIC, 1)
    assert c.gpus[0] in a.gpus


def test_zero_gpu_servers_take_nothing():
    book = ledger(1)
    book.reserve("alice", "", PUBLIC, 0)
    assert book.reserve("alice", "second", PUBLIC, 1).gpus == ("0",)


def test_dry_run_takes_nothing():
    book = ledger(1)
    book.reserve("alice", "", PUBLIC, 1, dry_run=True)
    assert book.allocations() == {}
    assert book.reserve("bob", "", PUBLIC, 1).gpus == ("0",)


def test_gpu_type_matching():
    book = GpuLedger([Gpu("0", "Tesla V100"), Gpu("1", "NVIDIA A100")])
    assert book.reserve("a", "", PUBLIC, 1, gpu_type="A100").gpus == ("1",)
    with pytest.raises(SpawnRefused, match="not enough free GPUs of type A100: 1 asked, 0 free of 1"):
        book.reserve("b", "", PUBLIC, 1, gpu_type="A100")
    with pytest.raises(SpawnRefused, match="this machine has no GPU of type H100"):
        book.reserve("b", "", PUBLIC, 1, gpu_type="H100")


def test_no_gpus_machine():
    with pytest.raises(SpawnRefused, match="this machine has no GPU"):
        GpuLedger([]).reserve("a", "", PUBLIC, 1)


def test_same_server_twice_refused():
    book = ledger(2)
    book.reserve("a", "x", PUBLIC, 0)
    with pytest.raises(SpawnRefused, match="already running"):
        book.reserve("a", "x", PUBLIC, 0)


def test_project_quotas_count_per_user_and_project():
    vision = Project(name="vision", max_gpus=2, max_servers=2)
    book = ledger(8)
    book.reserve("alice", "one", vision, 1)
    book.reserve("alice", "two", vision, 1)
    with pytest.raises(SpawnRefused, match="allows 2 running servers per user and you have 2"):
        book.reserve("alice", "three", vision, 0)
    # other users and other projects have their own count
    book.reserve("bob", "one", vision, 2)
    book.reserve("alice", "three", PUBLIC, 3)
    book.release("alice", "two")
    with pytest.raises(SpawnRefused, match="allows 2 GPUs per user; you hold 1 and asked for 2"):
        book.reserve("alice", "two", vision, 2)
    assert book.usage("alice", "vision") == (1, 1)


def test_restore_after_restart_blocks_those_gpus():
    book = ledger(2)
    book.restore(Allocation("alice", "", "public", ("1",)))
    assert book.reserve("bob", "", PUBLIC, 1).gpus == ("0",)
    with pytest.raises(SpawnRefused):
        book.reserve("carol", "", PUBLIC, 1)


def test_file_ledger_is_shared_by_the_hub_and_the_jobs_service(tmp_path):
    """Two ledgers on one file (the hub's spawners, the jobs service): a GPU is never given to a
    server and a job at once, the project's GPU quota counts both, servers' limit only servers."""
    from kubestudio.spawner.gpus import JOB, SERVER, ledger_path

    gpus = [Gpu("0", "A100"), Gpu("1", "A100"), Gpu("2", "A100")]
    hub = GpuLedger(gpus, path=ledger_path(str(tmp_path)))
    jobs = GpuLedger(gpus, path=ledger_path(str(tmp_path)))
    vision = Project(name="vision", max_gpus=2, max_servers=1)

    server = hub.reserve("alice", "", vision, 1)
    job = jobs.reserve("alice", "job1", vision, 1, kind=JOB)
    assert set(server.gpus) | set(job.gpus) == {"0", "1"} and server.gpus != job.gpus
    assert hub.usage("alice", "vision") == (1, 2)  # jobs are not servers, their GPUs count
    with pytest.raises(SpawnRefused, match="allows 2 GPUs per user; you hold 2"):
        jobs.reserve("alice", "job2", vision, 1, kind=JOB)
    bob = jobs.reserve("bob", "job3", vision, 1, kind=JOB)
    assert bob.gpus == ("2",)
    with pytest.raises(SpawnRefused, match="not enough free GPUs"):
        hub.reserve("carol", "", PUBLIC, 1)
    with pytest.raises(SpawnRefused, match="job job1 is already running"):
        jobs.reserve("alice", "job1", vision, 0, kind=JOB)

    # the jobs service restarts: its jobs go, the hub's server stays; a restored job comes back
    restarted = GpuLedger(gpus, path=ledger_path(str(tmp_path)))
    restarted.forget(JOB)
    assert {a.kind for a in hub.allocations().values()} == {SERVER}
    restarted.restore(job)
    assert hub.held_gpu_ids() == set(server.gpus) | set(job.gpus)
    assert jobs.release("alice", "job1", kind=JOB) == job
    assert hub.free_gpus() == [g for g in gpus if g.id not in server.gpus]
    assert oct((tmp_path / "gpu-ledger.json").stat().st_mode & 0o777) == "0o600"

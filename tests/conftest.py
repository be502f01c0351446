"""Fixtures shared by every test folder, and how the suite is spread over pytest-xdist workers."""

import os
import shutil

import pytest

from kubestudio.testing import processes
from kubestudio.testing.registry import LocalRegistry, push_busybox_base, tools_missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# Seconds a module took in a measured run (scripts/test.sh, 2 workers on 2 cores, 2026-12-07, from
# KUBESTUDIO_TEST_TIMES; modules under 15 s left out); only the order matters. The longest go
# first, so that the last to finish on a worker is a short one; a module not listed counts one
# second per test.
MODULE_SECONDS = {
    "tests/e2e/test_local_hub.py": 406,
    "tests/kubebench/test_kubespawner_contract.py": 299,
    "tests/kubebench/test_workspace_spawner.py": 230,
    "tests/e2e/test_server_images.py": 211,
    "tests/jobs/test_pipelines.py": 200,  # 2026-12-07 evening: with the cache runs and the iris pipeline
    "tests/e2e/test_labextension.py": 198,
    "tests/e2e/test_user_guide.py": 182,
    "tests/image_builder/test_offline_bases.py": 176,
    "tests/jobs/test_servings.py": 173,
    "tests/kubebench/test_servings_kubernetes.py": 166,
    "tests/e2e/test_newcomer.py": 151,
    "tests/jobs/test_jobs_service.py": 125,
    "tests/e2e/test_isolation.py": 117,
    "tests/kubebench/test_jobs_kubernetes.py": 104,
    "tests/kubebench/test_tensorboards_kubernetes.py": 76,
    "tests/jobs/test_experiments.py": 76,
    "tests/e2e/test_browser.py": 76,
    "tests/e2e/test_attacks_local.py": 75,
    "tests/kubebench/test_kserve_bench.py": 71,
    "tests/kubebench/test_spawn_images.py": 71,
    "tests/kubebench/test_kubespawner.py": 64,
    "tests/image_builder/test_attacks.py": 60,
    "tests/kubebench/test_argo.py": 60,  # Hera's venv (made once), three Workflows and a CronWorkflow
    "tests/jobs/test_page.py": 54,
    "tests/kubebench/test_bench.py": 50,
    "tests/image_builder/test_page.py": 42,
    "tests/kubebench/test_kaniko.py": 41,
    "tests/image_builder/test_service.py": 41,
    "tests/jobs/test_local_jobs.py": 41,
    "tests/tensorboards/test_boards_service.py": 38,
    "tests/kubebench/test_helm_install.py": 34,
    "tests/image_builder/test_openapi.py": 34,
    "tests/image_builder/test_access.py": 32,
    "tests/jobs/test_serving_manifests.py": 20,
    "tests/kubebench/test_bench_pods.py": 18,
    "tests/test_packages.py": 18,
    "tests/tensorboards/test_page.py": 18,
}


# Folders whose modules run as one unit on one worker: every module of tests/kubebench shares the
# session's bench, a control plane (etcd, apiserver, scheduler, controllers) that takes most of a
# minute to start and keeps a core busy, so one per run rather than one per worker.
SHARED_UNITS = {"tests/kubebench/": "kubebench"}


def work_unit(nodeid):
    """What one worker runs as a whole: a shared folder's modules (SHARED_UNITS), else the test's
    module (its tests share the module's hub, registry or bench)."""
    module = nodeid.split("::", 1)[0]
    for folder, unit in SHARED_UNITS.items():
        if module.startswith(folder):
            return unit
    return module


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each test run gets a temporary folder of its own (unless --basetemp names one).

    pytest's default, /tmp/pytest-of-<user>/pytest-N, lies in a folder every pytest session of the
    user shares, and each new session sets it back to mode 0700: the OS accounts of a running
    hub's users, which pass through it to their folders (accounts.make_traversable), lose their
    way in the middle of a test whenever another run (another checkout's CI, a developer's pytest)
    starts. Made before pytest's own tmp_path plugin reads the option; xdist's workers get
    subfolders of it from the controller. Removed after a run that passed; kept, and named, after
    one that failed.
    """
    if hasattr(config, "workerinput"):
        return
    config.pluginmanager.register(UnitClock(), "kubestudio-unit-clock")
    if config.option.basetemp:
        return
    import tempfile

    config.option.basetemp = tempfile.mkdtemp(prefix="kubestudio-tests-")
    config._kubestudio_basetemp = config.option.basetemp


def pytest_unconfigure(config):
    folder = getattr(config, "_kubestudio_basetemp", None)
    if not folder:
        return
    if getattr(config, "_kubestudio_failed", True):
        print(f"\nthe tests' temporary files are kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput"):
        session.config._kubestudio_failed = exitstatus != 0


class UnitClock:
    """Where the run's time went, per work unit and per worker (setup, call and teardown summed),
    printed at the end and written to $KUBESTUDIO_TEST_TIMES (JSON) when set: what MODULE_SECONDS
    is kept up to date from."""

    def __init__(self):
        self.units, self.workers, self.modules = {}, {}, {}

    def pytest_runtest_logreport(self, report):
        module = report.nodeid.split("::", 1)[0]
        worker = getattr(report, "node", None)
        worker = getattr(worker, "gateway", None)
        worker = worker.id if worker is not None else "main"
        for table, key in ((self.units, work_unit(report.nodeid)), (self.workers, worker), (self.modules, module)):
            table[key] = table.get(key, 0.0) + report.duration

    def pytest_terminal_summary(self, terminalreporter):
        if not self.units:
            return
        write = terminalreporter.write_line
        terminalreporter.section("time per worker and per work unit")
        for worker, seconds in sorted(self.workers.items()):
            write(f"{seconds:8.1f}s  worker {worker}")
        for unit, seconds in sorted(self.units.items(), key=lambda kv: -kv[1])[:25]:
            write(f"{seconds:8.1f}s  {unit}")
        path = os.environ.get("KUBESTUDIO_TEST_TIMES")
        if path:
            import json

            with open(path, "w") as f:
                json.dump({"workers": self.workers, "units": self.units, "modules": self.modules}, f, indent=1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Longest work units first (every worker orders the same way); a unit's tests keep their order.
    A unit's weight is the sum of its modules'."""
    tests = {}  # unit -> {module: number of its tests}
    for item in items:
        modules = tests.setdefault(work_unit(item.nodeid), {})
        module = item.nodeid.split("::", 1)[0]
        modules[module] = modules.get(module, 0) + 1

    def weight(unit):
        return sum(MODULE_SECONDS.get(module, count) for module, count in tests[unit].items())

    rank = {unit: i for i, unit in enumerate(sorted(tests, key=weight, reverse=True))}
    items.sort(key=lambda item: rank[work_unit(item.nodeid)])


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Each work unit (see ``work_unit``) goes to one worker, in the order collected."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return WorkUnitScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """Fail the run when a test left a process of its own running (a hub, proxy, server, service).

    The run's processes are kept in a control group of their own, so this looks only at what
    this run started; other hubs and test runs on the machine are never touched.
    """
    group = processes.track_this_run()
    if not group.active:
        import warnings

        warnings.warn("no writable cgroup here: leftover processes are not checked")
    yield
    left = processes.leftovers(grace=10)
    processes.kill_all(left)
    group.close()
    if left:
        listing = "\n".join(f"  {pid}: {cmd[:200]}" for pid, cmd in left)
        pytest.fail(f"the tests left {len(left)} processes running (now killed):\n{listing}", pytrace=False)


@pytest.fixture(autouse=True)
def keep_umask():
    """configure() called in this process (tests/hub) sets a hub's umask, 077 when users get
    accounts of their own: files the next tests write for a user must not inherit it."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture
def page(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/install.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


REGISTRY_USER = "builder"
REGISTRY_PASSWORD = "s3cret-registry-pass"


@pytest.fixture(scope="session")
def build_tools():
    missing = tools_missing()
    if missing:
        pytest.fail(
            f"the build tests need Debian packages {', '.join(missing)}: run scripts/test.sh (it installs them)"
        )


@pytest.fixture(scope="module")
def registry(tmp_path_factory, build_tools):
    root = tmp_path_factory.mktemp("registry")
    reg = LocalRegistry(root / "registry", user=REGISTRY_USER, password=REGISTRY_PASSWORD).start()
    reg.auth = reg.auth_file(str(root / "auth.json"))
    reg.base = push_busybox_base(reg.host, str(root / "base-storage"), auth_file=reg.auth)
    yield reg
    reg.stop()

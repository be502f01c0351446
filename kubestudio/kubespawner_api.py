"""KubeSpawner's private API, every use of it in one place (``jupyterhub-kubespawner<8`` is pinned).

KubeStudio's :class:`~kubestudio.spawner.WorkspaceSpawner` is a KubeSpawner and shows KubeSpawner's
own ``profile_list`` beside its catalog, exactly as KubeSpawner prepares, renders, reads and checks
it; and it watches pods with KubeSpawner's own reflector machinery. Those are private members of
KubeSpawner, so they are borrowed here and nowhere else, each saying what it takes and why;
``tests/kubebench/test_kubespawner_contract.py`` checks every one against the installed KubeSpawner.

- ``_start_reflector``: the shared pod watch, with our reflector class (pods indexed by owner,
  for the quotas);
- ``_sorted_dict_values`` + ``_get_initialized_profile_list``: ``profile_list`` as KubeSpawner
  prepares it (dict forms sorted, slugs and defaults filled in);
- ``_render_options_form``: its form for ``profile_list``;
- ``_options_from_form``: its reading of that form;
- ``_validate_user_options`` + ``_get_profile``: its check of a request against ``profile_list``;
- ``_start_watching_pods`` (overridden by WorkspaceSpawner): KubeSpawner calls it to start its pod
  watch; ours starts it through :func:`start_pod_reflector` with our reflector class;
- ``kubespawner/slugs.py``: the one rule for Kubernetes names of usernames, loaded from its file so
  that a service needing a folder name does not import the spawner and the Kubernetes client.

KubeSpawner reads the options to render or check from ``spawner.user_options``; the functions here
take them as arguments and set them only around that one call.
"""

import contextlib
import importlib.util
import os
import sys

# what KubeStudio borrows, for the contract test: member -> the parameters it is called with
BORROWED = {
    "_start_reflector": ("kind", "reflector_class", "replace", "kwargs"),
    "_sorted_dict_values": ("src",),
    "_get_initialized_profile_list": ("profile_list",),
    "_render_options_form": ("profile_list",),
    "_options_from_form": ("formdata",),
    "_validate_user_options": ("profile_list",),
    "_get_profile": ("slug", "profile_list"),
    "_start_watching_pods": ("replace",),
}


def slugs_module():
    """kubespawner's ``slugs`` module, without importing the ``kubespawner`` package (whose
    ``__init__`` imports the whole spawner and the Kubernetes client: seconds at the start of a hub
    service that only needs a user's folder name); where the package is imported already, its own."""
    if "kubespawner.slugs" in sys.modules:
        return sys.modules["kubespawner.slugs"]
    package = importlib.util.find_spec("kubespawner")  # finds the package, does not run it
    path = os.path.join(os.path.dirname(package.origin), "slugs.py")
    spec = importlib.util.spec_from_file_location("kubestudio._kubespawner_slugs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _user_options(spawner, options):
    """``spawner.user_options`` set to ``options`` for one call of KubeSpawner's, then put back."""
    saved = spawner.user_options
    spawner.user_options = options
    try:
        yield
    finally:
        spawner.user_options = saved


async def start_pod_reflector(spawner, reflector_class, labels, omit_namespace, replace=False):
    """KubeSpawner's shared watch of pods matching ``labels``, kept by ``reflector_class``."""
    return await spawner._start_reflector(
        kind="pods", reflector_class=reflector_class, labels=labels, omit_namespace=omit_namespace, replace=replace
    )


def initialized_profiles(spawner, profile_list):
    """``profile_list`` (already evaluated if it was a callable) as KubeSpawner prepares it."""
    return spawner._get_initialized_profile_list(spawner._sorted_dict_values(profile_list or []))


def render_profiles_form(spawner, profile_list, options):
    """KubeSpawner's form for ``profile_list``, preselecting what ``options`` chose."""
    from kubespawner import KubeSpawner

    with _user_options(spawner, options):
        return KubeSpawner._render_options_form(spawner, profile_list)


def options_from_profiles_form(spawner, formdata):
    """The options KubeSpawner reads from its form's fields (``profile``, ``profile-option-*``)."""
    from kubespawner import KubeSpawner

    return KubeSpawner._options_from_form(spawner, formdata)


def profile_for(spawner, options, profile_list):
    """The ``profile_list`` entry ``options`` choose, checked as KubeSpawner checks them
    (ValueError or StopIteration saying what is wrong)."""
    with _user_options(spawner, options):
        spawner._validate_user_options(profile_list)
    return spawner._get_profile(options.get("profile"), profile_list)

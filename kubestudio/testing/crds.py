"""The upstream CRDs in ``../shared/crds``: read once per process, with libyaml's parser.

They are large (Argo's Workflow CRD is 2.8 MB of YAML); PyYAML's pure-Python parser takes seconds
for each, libyaml's a fraction of that. Every reader (the bench's install, schema checks in tests)
goes through here, so a process parses each file once.
"""

import copy
import functools
import os

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(path):
    """Every YAML document of ``path`` (copies: callers may change them)."""
    return copy.deepcopy(_parsed(os.path.abspath(path), os.stat(path).st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _parsed(path, _mtime):
    with open(path) as f:
        return [doc for doc in yaml.load_all(f, Loader=LOADER) if doc]


def schema(path, version):
    """The openAPIV3Schema of ``version`` in the CRD at ``path``."""
    for doc in _parsed(os.path.abspath(path), os.stat(path).st_mtime_ns):
        for entry in doc.get("spec", {}).get("versions", []):
            if entry["name"] == version:
                return copy.deepcopy(entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"no version {version} in {path}")

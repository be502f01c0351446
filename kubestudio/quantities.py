"""Parse and format resource quantities (memory sizes and CPU counts).

Memory follows JupyterHub's ``ByteSpecification`` (``K``, ``M``, ``G``, ``T`` are powers of
1024), and also takes the Kubernetes binary suffixes (``Ki``, ``Mi``, ``Gi``, ``Ti``) so a value
copied from a pod spec means the same thing. CPU takes a number of cores or millicores (``500m``).
"""

import re

_BYTE_UNITS = {
    "": 1,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")


def parse_bytes(value):
    """Return a size in bytes from ``4G``, ``512Mi``, ``1.5G`` or a plain integer.

    Raises ValueError with a message naming what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a size like 4G or 512M, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0, not {value}")
        return value
    if isinstance(value, float):
        if value < 0:
            raise ValueError(f"must be >= 0, not {value}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a size like 4G or 512M, not {value!r}")
    match = _BYTES_RE.match(value)
    if not match:
        raise ValueError(f"must be a size like 4G or 512M, not {value!r}")
    number, unit, _binary = match.groups()
    return int(float(number) * _BYTE_UNITS[unit.upper()])


def format_bytes(n):
    """Return the shortest exact-enough form of a byte count, e.g. ``4G`` or ``1.5G``."""
    for unit in ("T", "G", "M", "K"):
        size = _BYTE_UNITS[unit]
        if n >= size:
            value = n / size
            return f"{value:g}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)


def human_bytes(n):
    """A byte count for people, in binary units: ``812 B``, ``4.0 KiB``, ``10.0 MiB``.

    (``format_bytes`` writes Kubernetes quantities such as ``4G``, for resource settings.)"""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def parse_cpu(value):
    """Return a number of cores from ``2``, ``0.5`` or ``500m``."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number of cores like 2 or 500m, not {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"must be > 0, not {value}")
        return float(value)
    if isinstance(value, str):
        match = _CPU_RE.match(value)
        if match:
            number, milli = match.groups()
            cores = float(number) / (1000 if milli else 1)
            if cores > 0:
                return cores
            raise ValueError(f"must be > 0, not {value!r}")
    raise ValueError(f"must be a number of cores like 2 or 500m, not {value!r}")

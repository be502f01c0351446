"""How every script in benchmarks/ records its figures: one JSON file per benchmark under
benchmarks/results/, the metrics beside the machine they were measured on."""

import json
import os
import platform

RESULTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks", "results"
)


def result_path(benchmark):
    return os.path.join(RESULTS, f"{benchmark}.json")


def write_results(benchmark, metrics, path=None, **environment):
    """Write ``{"benchmark", "metrics", "environment"}`` to ``path`` (benchmarks/results/
    <benchmark>.json by default); the environment always names the Python, the machine and its
    cores, then ``environment``'s own facts. Returns what was written."""
    result = {
        "benchmark": benchmark,
        "metrics": metrics,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            **environment,
        },
    }
    path = path or result_path(benchmark)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return result

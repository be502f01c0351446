"""A real, tiny wheel for tests that install a package (a job's ``packages``, ``pip install`` in
a server) with no index and no network."""

import io
import zipfile


def tiny_wheel(name, version="0.1"):
    """(file name, bytes) of a wheel of one module ``name`` whose ``VALUE`` is 42."""
    buffer = io.BytesIO()
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(buffer, "w") as z:
        for path, text in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()

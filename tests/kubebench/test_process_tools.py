import os
import shutil


def code_server_available():
    from kubestudio.hub.config import KubeStudio

    path = os.pathsep.join(KubeStudio().tool_dirs + [os.environ.get("PATH", "")])
    return shutil.which("code-server", path=path) is not None

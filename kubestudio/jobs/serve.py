"""``python -m kubestudio.jobs.serve``: the model runtime's command, the same in every release.

A serving's pod runs this command in the user's image, whichever KubeStudio release that image
was built with, so the command stays where it is while the runtime itself lives in
:mod:`kubestudio.jobs.serving.runtime`.
"""

import sys

from .serving.runtime import main

if __name__ == "__main__":
    sys.exit(main())

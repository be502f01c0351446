"""What a trial's script finds on its path besides its own (KubeStudio puts this folder's
``PATH`` there when it runs a trial's script): ``nni``, NNI's trial API over :mod:`kubestudio.trial`,
so scripts written for NNI or cube-studio run unchanged. A real ``nni`` installed in the image
comes first."""

import os

PATH = os.path.dirname(os.path.abspath(__file__))

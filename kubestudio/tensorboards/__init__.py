"""TensorBoards on users' log folders, behind the hub's login.

The SDK is what notebooks import (:class:`TensorBoardsClient`); the service itself
(``python -m kubestudio.tensorboards``) lives in :mod:`.app`, imported only when it runs.
"""

from .client import TensorBoardsClient

__all__ = ["TensorBoardsClient"]

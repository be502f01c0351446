"""The TensorBoard service from Python.

from kubestudio.tensorboards import TensorBoardsClient
url = TensorBoardsClient().open("runs/exp1")         # the board's URL through the hub
TensorBoardsClient().open(["runs/exp1", "runs/exp2"])  # two runs compared in one board
"""

from ..services.client import ServiceClient


class TensorBoardsClient(ServiceClient):
    service = "tensorboards"
    url_variable = "KUBESTUDIO_TENSORBOARDS_URL"
    label = "the TensorBoard service"

    def open_board(self, logdirs, name=None, project=None, image=None, resources=None):
        """The board on ``logdirs`` (a folder or a list, relative to your workspace): the same one
        when it is open already, started again when stopped. Its record.

        On Kubernetes a board may also name its ``project`` (whose nodes run it), an ``image``
        the administrator allows, and ``resources`` (``{"cpu": 1, "memory": "4Gi"}``)."""
        body = {"logdirs": [logdirs] if isinstance(logdirs, str) else list(logdirs)}
        for key, value in (("name", name), ("project", project), ("image", image), ("resources", resources)):
            if value:
                body[key] = value
        return self._call("POST", "api/boards", json=body).json()

    def open(self, logdirs, name=None, **options):
        """The URL of the board on ``logdirs`` (see :meth:`open_board`)."""
        return self.public_url(self.open_board(logdirs, name, **options))

    def list(self, user=None):
        return self._call("GET", "api/boards", params={"user": user} if user else {}).json()["boards"]

    def get(self, board):
        return self._call("GET", f"api/boards/{self._id(board)}").json()

    def stop(self, board):
        """Stop a board and forget it."""
        self._call("DELETE", f"api/boards/{self._id(board)}")

    def logs(self, board):
        """TensorBoard's own output (its stderr)."""
        return self._call("GET", f"api/boards/{self._id(board)}/logs").text

    def _id(self, board):
        if len(board) == 12 and all(c in "0123456789abcdef" for c in board):
            return board
        for record in self.list():
            if board in (record["name"], record["url"]):
                return record["id"]
        return board

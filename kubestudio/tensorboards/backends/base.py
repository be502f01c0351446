"""What every board backend does (the manager talks to this, whatever runs the boards)."""

from traitlets.config import LoggingConfigurable


class BoardFailed(Exception):
    """TensorBoard did not start or stopped; the message has the reason."""


class BoardBackend(LoggingConfigurable):
    """Runs boards. A *handle* says where one runs (``url``, and ``to_json()`` for the record)."""

    name = "base"
    uses_projects = False  # whether a board's project shapes where it runs (the manager looks it up)

    async def connect(self):
        """With the service's start (clients, watches)."""

    async def close(self):
        """With the service's stop."""

    def resolve(self, owner, logdirs):
        """``[(run name, folder as TensorBoard sees it)]`` for the request's folders, or LogdirError."""
        raise NotImplementedError

    def check_options(self, options):
        """Refuse (LogdirError naming the field) what this backend cannot give (image, resources)."""

    def from_refs(self, refs):
        """The handle kept in a board's record, or None."""
        raise NotImplementedError

    async def start(self, board_id, owner, resolved, prefix, options=None, project=None, progress=None):
        """Start TensorBoard on ``resolved`` under ``prefix``; its handle once it answers, else
        BoardFailed. ``progress(message)`` says why it is not up yet."""
        raise NotImplementedError

    def alive(self, handle):
        """Whether the board still runs and answers (cheap: on every proxied request)."""
        raise NotImplementedError

    def why_stopped(self, board_id, handle):
        """Why a board that ran is gone, for people."""
        raise NotImplementedError

    async def stop(self, board_id, handle):
        """Stop the board and remove what it made; idempotent."""
        raise NotImplementedError

    async def logs(self, board_id, handle):
        """TensorBoard's own output, the last part."""
        raise NotImplementedError

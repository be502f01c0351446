"""The embedded default's login: any username with one shared password, and plain refusals.

JupyterHub's DummyAuthenticator answers every failed login with "Invalid username or password",
also when the *username* can never exist (``../../etc``, a blank). This one says which field is
wrong, on the login form, before the password is even looked at.
"""

from jupyterhub.auth import DummyAuthenticator

from ..services.web import http_error


class SharedPasswordLogin(DummyAuthenticator):
    """Any valid username logs in with the hub's shared password."""

    def username_problem(self, raw):
        """Why ``raw`` can never be a username here, or None."""
        if not raw or not raw.strip():
            return "username: enter a username"
        name = self.normalize_username(raw)
        if self.validate_username(name):
            return None
        if "/" in name:
            why = "it may not contain '/'"
        elif set(name) == {"."}:
            why = "it may not be only dots"
        elif name != name.strip():
            why = "it may not start or end with a space"
        else:
            why = f"it must match {self.username_pattern!r}" if self.username_pattern else "it is not allowed here"
        return f"username: {raw!r} cannot be a username: {why}"

    async def authenticate(self, handler, data):
        problem = self.username_problem((data or {}).get("username", ""))
        if problem:
            # shown on the login form (JupyterHub renders a login POST's error there)
            error = http_error(400, problem)
            error.jupyterhub_message = problem
            raise error
        return await super().authenticate(handler, data)

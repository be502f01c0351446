"""Every user is a member of the ``public`` project (a JupyterHub group)."""

from jupyterhub import orm
from jupyterhub.utils import maybe_future

from ..spawner.projects import PUBLIC_PROJECT


def ensure_member(db, orm_user, group_name=PUBLIC_PROJECT):
    """Add ``orm_user`` to the group, creating the group if needed. Returns True if added."""
    group = orm.Group.find(db, group_name)
    if group is None:
        group = orm.Group(name=group_name)
        db.add(group)
    if group in orm_user.groups:
        return False
    group.users.append(orm_user)
    db.commit()
    return True


async def join_public_project(authenticator, handler, authentication):
    """``Authenticator.post_auth_hook``: put the user in ``public`` at every login.

    A first login creates the user here the way JupyterHub would (and calls the authenticator's
    ``add_user``), so the membership exists before the user's first page.
    """
    if authentication is None:
        return authentication
    name = authentication["name"]
    user = handler.find_user(name)
    if user is None:
        user = handler.user_from_username(name)
        await maybe_future(authenticator.add_user(user))
    ensure_member(handler.db, user.orm_user)
    return authentication

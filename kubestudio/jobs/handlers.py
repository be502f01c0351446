"""HTTP handlers the jobs service's parts share: the base of every API handler (who may use the
service) and the page at the root. Training's handlers are in :mod:`.training.handlers`, serving's
in :mod:`.serving.handlers`.

Who may do what (JupyterHub scopes; the service also needs ``access:services!service=jobs``):

- ``custom:kubestudio:jobs:run``: submit, and see, follow and cancel your own jobs and servings;
- ``custom:kubestudio:jobs:admin``: see and cancel everyone's.

Another user's job or serving answers 404, so ids reveal nothing.
"""

from ..names import JOBS_ADMIN_SCOPE as ADMIN_SCOPE
from ..names import JOBS_RUN_SCOPE as RUN_SCOPE
from ..services.web import OwnedHandler, PageHandler, page_templates

TEMPLATES = page_templates(__file__)


class JobsBaseHandler(OwnedHandler):
    use_scope = RUN_SCOPE
    admin_scope = ADMIN_SCOPE
    what = "use jobs"


class IndexHandler(PageHandler, JobsBaseHandler):
    async def get(self):
        self.render_page(TEMPLATES)

"""The jobs service's store made by its migrations is the one its models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from kubestudio.jobs.models import MIGRATIONS, VERSION_TABLE, Base
from kubestudio.services.store import Store


def test_the_migrations_make_what_the_models_say(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.sqlite"
    Store(url, Base, migrations=MIGRATIONS, version_table=VERSION_TABLE)
    with create_engine(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []

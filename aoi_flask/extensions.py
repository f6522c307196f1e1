"""Flask extensions, created without an app and bound in the factory."""

import logging
from contextlib import suppress

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.exc import SQLAlchemyError

# Deterministic constraint names keep Alembic migrations identical on MariaDB and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()


def services():
    """The app's service objects (storage, model client, results), built in the factory."""
    from flask import current_app

    return current_app.extensions["aoi"]


def end_session(exc=None):
    """Teardown: close this context's session. When its connection died meanwhile
    (database restarted, connection killed), closing it would raise and turn a
    finished answer into a bare 500; the connection is invalidated instead (the
    pool replaces it) and the session discarded."""
    registry = db.session.registry
    if not registry.has():
        return
    session = registry()
    try:
        session.close()
    except SQLAlchemyError as error:
        logging.getLogger(__name__).warning(
            "discarded a database session whose connection failed: %s",
            str(error).splitlines()[0][:200],
        )
        with suppress(SQLAlchemyError):
            session.invalidate()
    registry.clear()

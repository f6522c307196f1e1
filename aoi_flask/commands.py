"""`flask aoi …` maintenance commands."""

import click
from flask.cli import with_appcontext
from flask_migrate import upgrade


@click.group()
def aoi():
    """AOI Inference Agent maintenance."""


@aoi.command("init-db")
@with_appcontext
def init_db():
    """Create or upgrade the database schema (same as `flask db upgrade`)."""
    upgrade()
    click.echo("database is at the latest migration")

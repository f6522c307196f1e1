"""WSGI entry point: `waitress-serve wsgi:app`, `flask --app wsgi …`."""

import os

from aoi_flask import create_app
from aoi_flask.security import startup_warnings
from aoi_flask.services.batches import resume_unfinished

app = create_app()

# Served by a WSGI server: resume the batch files a previous process left unfinished.
# Not under the `flask` command (db upgrade, aoi fsck, …), which sets FLASK_RUN_FROM_CLI.
if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
    resume_unfinished(app)
    startup_warnings(app)

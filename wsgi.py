"""WSGI entry point: `waitress-serve wsgi:app`, `flask --app wsgi …`."""

from aoi_flask import create_app

app = create_app()

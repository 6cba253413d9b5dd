"""The containerized model server: gunicorn + a small WSGI app around the shared inference core.

`image.server` is the WSGI app, `image.gunicorn_conf` the production gunicorn configuration,
and `image.settings` the environment knobs both read.
"""

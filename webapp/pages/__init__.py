"""HTML pages of the dashboard. ``ROUTES`` is what create_app mounts."""

ROUTES: list = []

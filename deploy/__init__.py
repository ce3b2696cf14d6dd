"""Running Veikals on one machine (``veikals infra|up|down|status``, see ``deploy.runner``)."""

"""The service's endpoints by group, each module adding its routes to the app:
:mod:`~serving_export.service.routes.users` (a user's recommendations),
:mod:`~serving_export.service.routes.similar` (similar items),
:mod:`~serving_export.service.routes.batch` (batches and re-ranking),
:mod:`~serving_export.service.routes.events` (interaction intake) and
:mod:`~serving_export.service.routes.health` (health, readiness, metrics)."""

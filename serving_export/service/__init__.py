"""The thin lookup service: ``recpipe serve`` runs :func:`create_app` under uvicorn.

Offers :func:`create_app` (the FastAPI application) and :func:`main` (the CLI entry).
"""

from serving_export.service.app import create_app
from serving_export.service.server import main

__all__ = ["create_app", "main"]

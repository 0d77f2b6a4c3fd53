"""imageextract's Python SDK: ``from imageextract import Client, AsyncClient``.

The distribution also holds the server (api, worker, core, db, extraction) and the
``imageextract`` command; this package is the client side of the HTTP API.
"""

from imageextract.client import AsyncClient, AsyncJob, Client, Job
from imageextract.errors import *  # noqa: F403 — one exception per problem code
from imageextract.errors import APIConnectionError, APIError

__all__ = ["APIConnectionError", "APIError", "AsyncClient", "AsyncJob", "Client", "Job"]

"""The Phase-1 request handlers, by area: ``auth`` (login, MFA, logout, landing page), ``api`` (the business
REST API), ``jobs`` (background runs), ``ops`` (operators' and public routes). Their paths, auth and flags are
declared once, in :mod:`phase1lib.server.routes`."""

from .base import Phase1Handler, parse_json_object, record_request_metric, request_outcome

__all__ = ["Phase1Handler", "parse_json_object", "record_request_metric", "request_outcome"]

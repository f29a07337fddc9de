"""Filters for the web log (settings.LOGGING)."""

import logging


class NoClientErrorTraceback(logging.Filter):
    """Drops the traceback Django attaches to a request it refused with an exception
    (PermissionDenied's 403, BadRequest's 400): the client's doing, not a fault of the server, so
    one WARNING line says all there is. Server errors (5xx) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 500) < 500:
            record.exc_info = record.exc_text = None
        return True

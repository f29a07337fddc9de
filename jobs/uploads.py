"""An upload handler that stops storing a file once it passes PARROTER_MAX_UPLOAD_BYTES, and
every file once the request's files pass PARROTER_MAX_JOB_BYTES."""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class OversizedUpload(UploadedFile):
    """Stands in for a file that was too large to keep: its name and size, no content.

    jobs.forms.ThumbnailJobForm refuses it by its size (or the request's total), with the
    limit in the message.
    """

    def __init__(self, name: str, size: int) -> None:
        super().__init__(file=None, name=name, content_type=None, size=size)


class UploadLimitHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: passes chunks on until the file passes the limit, then
    drops the part already stored and only counts the rest, so the disk never holds more than
    the limit of it. The request body must still be read for the reply to reach the browser."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.request_received = 0  # one handler per request: all its files so far

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0
        self.dropped = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        self.request_received += len(raw_data)
        if self.dropped:
            return None
        if (
            self.received <= settings.PARROTER_MAX_UPLOAD_BYTES
            and self.request_received <= settings.PARROTER_MAX_JOB_BYTES
        ):
            return raw_data
        # Just passed a limit: drop what the next handlers stored of this file.
        self.dropped = True
        for handler in self.request.upload_handlers:
            if handler is not self and hasattr(handler, "file"):
                handler.file.close()  # a temporary upload file is deleted when closed
        return None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if not self.dropped:
            return None  # the next handler has the whole file
        return OversizedUpload(self.file_name, self.received)

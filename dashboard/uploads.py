"""An upload handler that stops storing a file once it passes PARROTER_MAX_UPLOAD_BYTES."""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class OversizedUpload(UploadedFile):
    """Stands in for a file that was too large to keep: its name and size, no content.

    dashboard.forms.ThumbnailJobForm refuses it by its size, with the limit in the message.
    """

    def __init__(self, name: str, size: int) -> None:
        super().__init__(file=None, name=name, content_type=None, size=size)


class UploadLimitHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: passes chunks on until the file passes the limit, then
    drops the part already stored and only counts the rest, so the disk never holds more than
    the limit of it. The request body must still be read for the reply to reach the browser."""

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        limit = settings.PARROTER_MAX_UPLOAD_BYTES
        before, self.received = self.received, self.received + len(raw_data)
        if self.received <= limit:
            return raw_data
        if before <= limit:  # just passed the limit: drop what the next handlers stored
            for handler in self.request.upload_handlers:
                if handler is not self and hasattr(handler, "file"):
                    handler.file.close()  # a temporary upload file is deleted when closed
        return None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if self.received <= settings.PARROTER_MAX_UPLOAD_BYTES:
            return None  # the next handler has the whole file
        return OversizedUpload(self.file_name, self.received)

"""Reading parts of stored files without fetching them whole.

A preview is one entry of a job's ZIP. On local disk the ZIP is opened and seeked as any file;
django-storages' S3 file would download the whole object on the first read (tens of MB, for
one thumbnail of a job of many images), so on S3 the ZIP is read through HTTP range requests:
the directory at its end, then the entry's header and bytes, a few small GETs in all.
"""

import io
from typing import BinaryIO

from django.db.models.fields.files import FieldFile
from storages.backends.s3 import S3Storage

# Each GET asks for at least this much, so zipfile's small reads cost one request between them.
RANGE_BLOCK = 64 * 1024


def open_for_random_access(file: FieldFile) -> BinaryIO:
    if isinstance(file.storage, S3Storage):
        stored = file.storage.open(file.name, "rb")  # a HEAD request only: nothing read yet
        return io.BufferedReader(_RangeReader(stored.obj), buffer_size=RANGE_BLOCK)
    return file.open("rb")


class _RangeReader(io.RawIOBase):
    """An S3 object as a seekable raw file: each read is one ranged GET."""

    def __init__(self, obj) -> None:
        self._obj = obj
        self._size = obj.content_length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self._size or not len(buffer):
            return 0
        last = min(self._position + len(buffer), self._size) - 1
        data = self._obj.get(Range=f"bytes={self._position}-{last}")["Body"].read()
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

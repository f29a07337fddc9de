"""Quantities worded for people, alike in messages, pages and upload.js."""

from django.template.defaultfilters import filesizeformat


def byte_size(size: int) -> str:
    """Django's filesizeformat without a needless ".0": "50 MB", "1.5 MB", "256 KB"."""
    return filesizeformat(size).replace(".0\xa0", "\xa0")

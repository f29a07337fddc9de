"""Failure signatures: a failure's kind plus its message with what varies from one job to the
next (ids, numbers, sizes, file names, quoted text) taken out, so that "The image is 9000×1
pixels" and "The image is 12000×10800 pixels" are one group. Computed once, when a failure is
recorded, and stored; grouping never parses text when it is read."""

import hashlib
import re

UUID = r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b"
QUOTED = r"[“\"'][^“”\"'\n]*[”\"']"
FILE = (
    r"(?<![\w<])[\w(\[][\w.()\[\]-]*?(?: \(\d+\))?"
    r"\.(?:jpe?g|png|gif|webp|bmp|tiff?|avif|heic|zip)\b"
)
SIZE = r"\b\d[\d,.]*\s*[x×]\s*\d[\d,.]*\b"
NUMBER = r"\d[\d,.]*\d|\d"
# In this order: an id or a file name holds numbers, a size is two.
PLACEHOLDERS = [
    (re.compile(UUID, re.I), "<id>"),
    (re.compile(QUOTED), "<text>"),
    (re.compile(FILE, re.I), "<file>"),
    (re.compile(SIZE), "<size>"),
    (re.compile(NUMBER), "<n>"),
]
MAX_PATTERN = 500


def pattern(message: str) -> str:
    """The message with what varies taken out, whitespace folded."""
    text = message
    for found, placeholder in PLACEHOLDERS:
        text = found.sub(placeholder, text)
    return " ".join(text.split())[:MAX_PATTERN]


def signature(kind: str, message: str) -> str:
    """kind-hash of the pattern: short enough to index, plain enough for a URL."""
    digest = hashlib.sha1(pattern(message).encode(), usedforsecurity=False).hexdigest()[:24]
    return f"{kind}-{digest}"


# How failures recorded before kinds existed are sorted (migration 0019): by what the worker
# wrote; what is not recognised counts as an internal error, which may be retried.
GUESSES = [
    ("time_limit", ("took longer than",)),
    ("interrupted", ("was interrupted",)),
    ("internal", ("internal error",)),
    ("over_limit", ("megapixels", "more memory than", "strips or tiles", "far more parts")),
    ("bad_input", ("could not be read", "not an image", "corrupt", "cannot read", "is empty")),
]


def guess_kind(message: str) -> str:
    lowered = message.lower()
    for kind, phrases in GUESSES:
        if any(phrase in lowered for phrase in phrases):
            return kind
    return "internal"

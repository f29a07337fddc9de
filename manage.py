#!/usr/bin/env python
import os
import sys
from pathlib import Path

# The project package lives in platform/ (a top-level package named `platform` would
# shadow the standard library); make it importable from a plain checkout too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

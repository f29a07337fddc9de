"""deploy/env.example documents every environment variable the code reads, and nothing else."""

import ast
import re

from django.conf import settings

ROOT = settings.BASE_DIR
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
# Python files that read the environment for configuration: settings, and gunicorn's own.
READERS = [ROOT / "platform/parroter/settings.py", ROOT / "platform/parroter/gunicorn_conf.py"]
ENV_FUNCTIONS = {
    "env_bool",
    "env_int",
    "env_float",
    "env_list",
    "env_optional",
}  # settings.py's helpers, name first


def read_in_python(path) -> set[str]:
    """Names passed to os.environ.get / os.environ[...] / the settings helpers."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            helper = isinstance(func, ast.Name) and func.id in ENV_FUNCTIONS
            environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and ast.unparse(func.value) == "os.environ"
            )
            if (helper or environ_get) and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
        subscript = isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
        if subscript and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def read_by_code() -> set[str]:
    names = set().union(*(read_in_python(path) for path in READERS))
    # The Procfile's processes and docker-compose.yml read variables: ${WEB_BIND:-...}
    for path in (ROOT / "Procfile", ROOT / "docker-compose.yml"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()))
    return names


def documented() -> set[str]:
    return set(re.findall(r"^(?:# ?)?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def test_every_variable_the_code_reads_is_in_env_example():
    missing = read_by_code() - documented()
    assert not missing, f"add to deploy/env.example: {sorted(missing)}"


def test_env_example_lists_nothing_the_code_does_not_read():
    unknown = documented() - read_by_code()
    assert not unknown, f"deploy/env.example documents what nothing reads: {sorted(unknown)}"


def test_the_reader_finds_what_settings_reads():
    # The check above is only as good as this parser: spot-check a few known reads.
    assert {"SECRET_KEY", "DATABASE_URL", "PARROTER_MAX_PIXELS", "LOG_LEVEL"} <= read_by_code()
    assert {"WEB_BIND", "WORKER_CONCURRENCY", "WEB_TIMEOUT"} <= read_by_code()

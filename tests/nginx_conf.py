"""deploy/nginx.conf made runnable outside compose: its lines marked "# HOST" set to this
machine's values, and the main file Debian's nginx.conf would be around it, all in one folder.
Used by tests/test_nginx.py (loopback) and the cluster harness (the edge host, tests/cluster)."""

import datetime
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

NGINX_CONF = settings.BASE_DIR / "deploy" / "nginx.conf"
FLOWER_AUTH_SCRIPT = settings.BASE_DIR / "deploy" / "nginx-flower-auth.sh"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MIME_TYPES = Path("/etc/nginx/mime.types")  # Debian's, as its own nginx.conf includes it


def with_host_values(text: str, values: dict[str, str]) -> str:
    """The file with each line marked "# HOST" set to values[<its directive>]. Every marked
    line must have a value and every value must be used, so the file cannot grow a host-specific
    line this test does not know about, nor lose one it does."""
    used = set()
    lines = []
    for line in text.splitlines():
        if re.search(r";\s*# HOST\b", line):  # a directive marked at its end
            directive = line.split(";")[0].strip()
            assert directive in values, f"no test value for the host-specific line {line!r}"
            used.add(directive)
            line = f"{line[: len(line) - len(line.lstrip())]}{values[directive]};"
        lines.append(line)
    assert used == set(values), f"not marked # HOST in deploy/nginx.conf: {set(values) - used}"
    return "\n".join(lines) + "\n"


def self_signed_certificate(folder: Path, address: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `address`, which the test's client trusts alone."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def configure_nginx(
    folder: Path,
    *,
    values: dict[str, str],
    flower_credentials: str,
    where: Callable[[list[str]], list[str]] = list,
) -> list[str]:
    """deploy/nginx.conf with `values` on its "# HOST" lines, the Flower login it checks, and the
    main file around it, all in `folder`, checked with `nginx -t` where it will run (`where`
    turns a command into the one that runs it there: its host); returns the command that runs
    it in the foreground."""
    # flower-auth.conf beside the main file, where `include flower-auth.conf` finds it.
    subprocess.run(
        ["/bin/sh", str(FLOWER_AUTH_SCRIPT), str(folder / "flower-auth.conf")],
        env={**os.environ, "FLOWER_BASIC_AUTH": flower_credentials}, check=True,
    )  # fmt: skip
    (folder / "parroter.conf").write_text(with_host_values(NGINX_CONF.read_text(), values))
    # The main file an nginx.conf of Debian's would be, with everything in this folder. As root,
    # nginx's workers run as root: the test's files are in root's private temporary folder.
    user = "user root root;" if os.geteuid() == 0 else ""
    temporary = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    access_log {folder / "access.log"};
{temporary}
    include parroter.conf;
}}
"""
    )
    nginx = [NGINX, "-p", str(folder), "-e", "stderr", "-c", str(folder / "nginx.conf")]
    check = subprocess.run(where([*nginx, "-t"]), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return nginx

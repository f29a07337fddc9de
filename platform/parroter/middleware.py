import ipaddress
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect


class HtmxLoginRedirectMiddleware:
    """A poll from a page whose session has expired is sent to the login page as a whole
    page (HX-Redirect), instead of htmx swapping the login form into a table."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        login = resolve_url(settings.LOGIN_URL)
        if request.htmx and response.status_code == 302 and response.url.startswith(login):
            return HttpResponseClientRedirect(response.url)
        return response


# Headers a proxy sets about the client; from anyone but a trusted proxy they are forged.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST")


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip())
    except ValueError:  # a unix socket's empty peer, or garbage
        return None


def _is_trusted_proxy(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return ip is not None and any(ip in network for network in settings.PARROTER_TRUSTED_PROXIES)


class TrustedProxyMiddleware:
    """Believes X-Forwarded-Proto/-For/-Host only from PARROTER_TRUSTED_PROXIES.

    SECURE_PROXY_SSL_HEADER makes Django take any request carrying X-Forwarded-Proto: https as
    secure; a client that reaches the app around the proxy (a published port, another host on
    the network) could send it. Here such headers are dropped unless REMOTE_ADDR is a proxy.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _is_trusted_proxy(_ip(request.META.get("REMOTE_ADDR", ""))):
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)


def client_ip(request: HttpRequest) -> str:
    """The client's address (django-axes counts failed sign-ins by it).

    Behind proxies every request comes from a proxy's address; the client is the last
    X-Forwarded-For entry that is not a trusted proxy (each proxy appends the address it saw,
    so entries to the left of it may be the client's own inventions).
    """
    address = request.META.get("REMOTE_ADDR", "")
    if not _is_trusted_proxy(_ip(address)):
        return address
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(forwarded):
        ip = _ip(hop)
        if ip is None:  # not an address: made up by the client; keep the last real one
            break
        address = str(ip)
        if not _is_trusted_proxy(ip):
            return address
    return address


# The browser's zone, as dashboard/static/dashboard/zone.js sets it; and where the zone a person
# chose (jobs.Preferences) is kept for their session.
BROWSER_ZONE_COOKIE = "tz"
CHOSEN_ZONE_SESSION_KEY = "time_zone"


@cache
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones())  # read from disk: 4 ms a call


def zone_named(name: str | None) -> ZoneInfo | None:
    """The zone of an IANA name, or None for anything else (a cookie is the client's text)."""
    return ZoneInfo(name) if name and name in zone_names() else None


class ViewerTimeZoneMiddleware:
    """Times are shown in the viewer's zone: the one they chose, else their browser's, else
    TIME_ZONE. Needs no query: the choice rides in the session."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_named(request.session.get(CHOSEN_ZONE_SESSION_KEY)) or zone_named(
            request.COOKIES.get(BROWSER_ZONE_COOKIE)
        )
        with timezone.override(zone):  # None: TIME_ZONE
            return self.get_response(request)

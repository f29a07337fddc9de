"""Flower at /flower/, behind the app's own login and staff check.

Every request under /flower/ (pages, static files and Flower's JSON API alike) passes
LoginRequiredMiddleware (anonymous: the login page), then the staff check here (others: 403),
and is then reverse-proxied to Flower on loopback. Flower runs with --url_prefix=flower, so paths
pass through unchanged. In production nginx may proxy Flower itself and ask `auth_request` below
whether to let a request through (deploy/README.md).

Built on django-revproxy's ProxyView (0.13) rather than a streaming view of our own: it already
streams large or unsized bodies, drops hop-by-hop response headers, carries query strings,
redirects and status codes, and is maintained by Jazzband. Where its defaults are wrong for
Flower they are changed here (read in revproxy/views.py and utils.py of 0.13.0):

- it forwards every request header, Cookie and Authorization included: those are dropped (our
  session never leaves the app) and Flower's own basic-auth credentials are sent instead;
- it drops Host, so Flower would see its loopback address: the browser's Host is sent, which
  Flower compares Origin with in its own cross-site check;
- it passes dot segments on, which urllib3 resolves: /flower/..%2fsecret reached Flower's host as
  /secret. A path with one is 404 here;
- it sets no timeout, retries up to 3 times and lets an unreachable Flower raise (a 500):
  here a pool with timeouts and no retries, and a 502 that says what is wrong;
- as_view() marks the view csrf_exempt because Flower's JS cannot send Django's CSRF token: an
  unsafe method must come from this site instead (Sec-Fetch-Site or Origin), checked below.
"""

import base64
import logging
from wsgiref.util import is_hop_by_hop

import urllib3
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from revproxy.views import ProxyView

from jobs import roles

logger = logging.getLogger(__name__)
# revproxy logs four INFO lines per request; keep its warnings unless LOGGING says otherwise.
if logging.getLogger("revproxy").level == logging.NOTSET:
    logging.getLogger("revproxy").setLevel(logging.WARNING)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Never sent on to Flower: our session, credentials meant for us, Django's CSRF token.
PRIVATE_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization", "x-csrftoken"})

# What Flower's pages (2.2) need: its own scripts, styles and API, inline script and style
# (workers.html sets a variable in a <script>, pages carry style attributes) and the data: images
# of Bootstrap's CSS. Sent by both ways in: this proxy, and nginx, which copies it from
# auth_request's answer.
FLOWER_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# A hung Flower must not hold a web worker for long; Flower's own inspect calls take ~1 s.
_POOL = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=30.0))


def may_use_flower(user, method: str) -> bool:
    """Viewers read Flower; what changes something (its POSTs: pool size, revoke, shutdown,
    rate limits) is for operators."""
    if method.upper() in SAFE_METHODS:
        return roles.can_view(user)
    return roles.can_operate(user)


def is_same_origin(request: HttpRequest, method: str) -> bool:
    """Whether a request with this method may act: safe methods always, others only when the
    browser says they come from a page of this site (and so not from a cross-site form)."""
    if method.upper() in SAFE_METHODS:
        return True
    site = request.headers.get("Sec-Fetch-Site")
    if site:  # sent by every current browser; a page cannot forge it
        return site == "same-origin"
    # Older browsers: Origin, compared like Django's CSRF check does. Neither header: refused.
    return request.headers.get("Origin") == f"{request.scheme}://{request.get_host()}"


@login_not_required  # nginx wants 401/403 from its subrequest, never a redirect
@never_cache
def auth_request(request: HttpRequest) -> HttpResponse:
    """nginx `auth_request` for /flower/: 204 lets the request through, 401/403 refuse it.

    nginx's subrequest is always a GET, so the original method comes in X-Original-Method. nginx
    puts this answer's security headers (the middleware's, and Flower's CSP) on Flower's.
    """
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    method = request.headers.get("X-Original-Method", request.method)
    if not may_use_flower(request.user, method) or not is_same_origin(request, method):
        return HttpResponse(status=403)
    response = HttpResponse(status=204)
    response["Content-Security-Policy"] = FLOWER_CSP
    return response


def _bad_gateway(message: str) -> HttpResponse:
    return HttpResponse(message, status=502, content_type="text/plain; charset=utf-8")


class FlowerProxyView(ProxyView):
    retries = False  # a POST is never sent twice; a refused connection answers 502 at once
    suppress_empty_body = True  # a GET goes without a body, as a browser sends it

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.http = _POOL

    @property
    def upstream(self) -> str:
        return f"{settings.FLOWER_URL.rstrip('/')}/flower/"

    def dispatch(self, request: HttpRequest, path: str) -> HttpResponse:
        if not may_use_flower(request.user, request.method):
            raise PermissionDenied
        # Django decodes the path: /flower/..%2fx arrives as "../x".
        if {".", ".."} & set(path.split("/")):
            raise Http404
        if not is_same_origin(request, request.method):
            raise PermissionDenied("Cross-site request refused.")
        try:
            response = super().dispatch(request, path)
        except urllib3.exceptions.HTTPError as error:
            logger.warning("Flower at %s is not reachable: %r", self.upstream, error)
            return _bad_gateway(
                f"Flower is not reachable at {self.upstream} ({error.__class__.__name__}).\n"
                "Is the flower process running? `make run` starts it; so does docker-compose."
            )
        if response.status_code == 401:
            # The proxy always sends credentials: a 401 means web and Flower disagree on them
            # (passing it on would make the browser ask for Flower's password).
            return _bad_gateway(
                "Flower refused the web app's credentials: FLOWER_BASIC_AUTH must be the same "
                "for the web and flower processes."
            )
        # Flower's _xsrf cookie is of no use here (no cookie is ever forwarded to Flower).
        response.cookies.clear()
        response["Content-Security-Policy"] = FLOWER_CSP
        return response

    def get_proxy_request_headers(self, request: HttpRequest) -> dict[str, str]:
        headers = {
            name: value
            for name, value in super().get_proxy_request_headers(request).items()
            if name.lower() not in PRIVATE_HEADERS and not is_hop_by_hop(name)
        }
        headers["Host"] = request.get_host()
        # FLOWER_BASIC_AUTH may list several user:password pairs; any one of them opens Flower.
        credentials = settings.FLOWER_BASIC_AUTH.split(",")[0].strip()
        if credentials:
            token = base64.b64encode(credentials.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

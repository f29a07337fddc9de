from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
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

"""Signing in (with a warning before the lockout) and a person's own API tokens."""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.forms import ApiTokenForm, PreferencesForm
from jobs import tokens
from jobs.audit import Actor
from jobs.models import ApiToken, Preferences, Preset
from parroter.middleware import BROWSER_ZONE_COOKIE, CHOSEN_ZONE_SESSION_KEY, zone_named

# Failures left before django-axes locks a username out from an address, from which the sign-in
# page says so.
WARN_WHEN_LEFT = 2


class SignInView(LoginView):
    """Django's sign-in page, which says how many tries are left before the lockout."""

    def form_invalid(self, form):
        username = form.data.get("username", "")
        if username:
            failures = AxesProxyHandler.get_failures(self.request, {"username": username})
            left = settings.AXES_FAILURE_LIMIT - failures
            if 0 < left <= WARN_WHEN_LEFT:
                minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
                form.add_error(
                    None,
                    f"{left} more wrong password{'s' if left > 1 else ''} and signing in as "
                    f"“{username}” from this address is blocked for {minutes} minutes.",
                )
        return super().form_invalid(form)


# The new token waits here for the page the redirect lands on, which takes it out: a refresh,
# or the back button (never cached), finds it gone.
NEW_TOKEN_SESSION_KEY = "new_api_token"  # noqa: S105 - a session key, not a secret


@never_cache
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            token, plain = tokens.create_own_api_token(
                user=request.user, name=form.cleaned_data["name"], actor=Actor.of(request)
            )
        except tokens.TooManyTokens as exc:
            form.add_error(None, str(exc))
        else:
            request.session[NEW_TOKEN_SESSION_KEY] = {"id": token.pk, "plain": plain}
            return redirect("dashboard:tokens")
    context = {
        "form": form,
        "tokens": tokens.api_tokens_of(user=request.user),
        "new": request.session.pop(NEW_TOKEN_SESSION_KEY, None),
    }
    return render(request, "dashboard/tokens.html", context, status=400 if form.errors else 200)


@require_POST
def revoke_api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    own = ApiToken.objects.filter(pk=token_id, user=request.user)
    if not own.exists():
        raise Http404("No such token.")  # someone else's too: it is not theirs to know about
    if tokens.revoke_api_tokens(tokens=own, actor=Actor.of(request)):
        messages.success(request, "The token is revoked: requests that send it are refused.")
    return redirect("dashboard:tokens")


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """How Parroter shows things to a person: for now, the time zone of every time shown."""
    chosen = Preferences.objects.filter(user=request.user).first() or Preferences(user=request.user)
    browser = request.COOKIES.get(BROWSER_ZONE_COOKIE, "")
    form = PreferencesForm(
        request.POST if request.method == "POST" else None,
        instance=chosen,
        browser_zone=browser if zone_named(browser) else "",
    )
    if form.is_valid():
        form.save()
        request.session[CHOSEN_ZONE_SESSION_KEY] = form.cleaned_data["time_zone"]
        messages.success(request, "Saved: times are shown in the zone you chose.")
        return redirect("dashboard:preferences")
    context = {
        "form": form,
        "now": timezone.now(),
        "presets": Preset.objects.filter(owner=request.user),
    }
    return render(request, "dashboard/preferences.html", context)


@require_POST
def delete_preset(request: HttpRequest, preset_id: int) -> HttpResponse:
    deleted, _ = Preset.objects.filter(pk=preset_id, owner=request.user).delete()
    if not deleted:
        raise Http404("No such preset.")
    messages.success(request, "The preset is deleted.")
    return redirect("dashboard:preferences")

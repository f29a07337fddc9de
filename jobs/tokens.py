"""API tokens: made, checked and revoked here; admin, `manage.py api_token`, the API and /metrics
call these.

A token is 32 random bytes from `secrets` (256 bits), and only its SHA-256 digest is stored. A
slow password hash (PBKDF2, 0.23 s here) is for secrets people choose, which can be guessed from
a stolen digest; nobody can guess 256 random bits, fast hash or not. A fast digest also makes
checking a token one lookup on a unique index, so every API request can afford it.
"""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, QuerySet
from django.template.defaultfilters import pluralize
from django.utils import timezone

from jobs import audit
from jobs.audit import Actor
from jobs.models import ApiToken, AuditEntry

# Says what a string is when it turns up in a log, a config file or a secret scanner.
TOKEN_PREFIX = "prt_"  # noqa: S105 (not a secret)
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8  # shown to tell tokens apart: 48 of the 256 bits
# last_used_at is written at most this often per token, not on every request.
LAST_USED_PRECISION = timedelta(minutes=1)
# Tokens in use one person may make for themselves (admin's superusers are not limited).
MAX_ACTIVE_TOKENS = 20


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def issue_api_token(*, token: ApiToken) -> str:
    """Give an unsaved token its secret and save it; returns the plain token, which exists
    nowhere else: show it to the person once."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token.prefix = plain[:PREFIX_LENGTH]
    token.digest = _digest(plain)
    token.save(force_insert=True)
    return plain


def create_api_token(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    token = ApiToken(user=user, name=name)
    return token, issue_api_token(token=token)


class TooManyTokens(Exception):
    pass


def create_own_api_token(
    *, user: AbstractBaseUser, name: str, actor: Actor
) -> tuple[ApiToken, str]:
    """A token a person makes for themselves, up to MAX_ACTIVE_TOKENS not revoked; recorded in
    the audit log (admin's own log records those made there for others)."""
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(
            f"You have {MAX_ACTIVE_TOKENS} tokens in use, the most one person may have; "
            "revoke one you no longer need first."
        )
    token, plain = create_api_token(user=user, name=name)
    audit.record(
        actor=actor,
        action=AuditEntry.Action.TOKEN_CREATE,
        summary=f"Made API token {token.prefix}… “{name}” for {user.get_username()}",
    )
    return token, plain


def api_tokens_of(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """A person's tokens, those in use first, newest first."""
    return ApiToken.objects.filter(user=user).order_by(
        F("revoked_at").desc(nulls_first=True), "-created_at", "-id"
    )


def revoke_api_tokens(*, tokens: QuerySet[ApiToken], actor: Actor | None = None) -> int:
    """Revoke the tokens not revoked yet; returns how many, recorded in the audit log when a
    person did it. Kept, so admin still shows when each was last used."""
    active = tokens.filter(revoked_at__isnull=True)
    named = active.values_list("prefix", "user__username")
    shown = [f"{prefix}… ({owner})" for prefix, owner in named]
    revoked = active.update(revoked_at=timezone.now())
    if actor is not None and revoked:
        audit.record(
            actor=actor,
            action=AuditEntry.Action.TOKEN_REVOKE,
            summary=f"Revoked API token{pluralize(revoked)} {', '.join(shown)}",
        )
    return revoked


def find_api_tokens(*, text: str) -> QuerySet[ApiToken]:
    """Tokens named by an id or by their shown prefix (as `manage.py api_token list` prints)."""
    if text.isdigit():
        return ApiToken.objects.filter(pk=int(text))
    return ApiToken.objects.filter(prefix=text)


def user_for_api_token(*, plain: str) -> AbstractBaseUser | None:
    """The active user whose token this is, or None for a token that is unknown, revoked or
    belongs to an inactive user."""
    if not plain.startswith(TOKEN_PREFIX):
        return None  # not one of ours: no query
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=_digest(plain), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user

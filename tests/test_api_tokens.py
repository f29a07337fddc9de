"""API tokens: made in admin and by `manage.py api_token`, shown once, stored only as a digest,
revoked, refused for inactive users."""

import hashlib
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs import tokens
from jobs.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_only_a_digest_of_a_token_is_stored(user):
    token, plain = tokens.create_api_token(user=user, name="backup script")
    assert re.fullmatch(r"prt_[A-Za-z0-9_-]{43}", plain)  # 32 random bytes
    row = ApiToken.objects.values().get(pk=token.pk)
    assert plain not in {str(value) for value in row.values()}
    assert row["digest"] == hashlib.sha256(plain.encode()).hexdigest()
    assert row["prefix"] == plain[:12] and str(token) == f"{plain[:12]}… backup script"
    assert tokens.user_for_api_token(plain=plain) == user
    assert tokens.user_for_api_token(plain=plain[:-1] + "x") is None
    assert tokens.create_api_token(user=user, name="another")[1] != plain


def test_revoked_tokens_and_inactive_users_tokens_are_refused(user):
    kept, kept_plain = tokens.create_api_token(user=user, name="kept")
    revoked, revoked_plain = tokens.create_api_token(user=user, name="revoked")
    assert tokens.revoke_api_tokens(tokens=ApiToken.objects.filter(pk=revoked.pk)) == 1
    assert tokens.revoke_api_tokens(tokens=ApiToken.objects.filter(pk=revoked.pk)) == 0
    assert tokens.user_for_api_token(plain=kept_plain) == user
    assert tokens.user_for_api_token(plain=revoked_plain) is None
    user.is_active = False
    user.save()
    assert tokens.user_for_api_token(plain=kept_plain) is None


def test_last_use_is_written_at_most_once_a_minute(user, django_assert_num_queries):
    token, plain = tokens.create_api_token(user=user, name="poller")
    assert token.last_used_at is None
    with django_assert_num_queries(2):  # the lookup and the first use
        assert tokens.user_for_api_token(plain=plain) == user
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # within the minute: the lookup only
        tokens.user_for_api_token(plain=plain)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    tokens.user_for_api_token(plain=plain)
    assert ApiToken.objects.get(pk=token.pk).last_used_at >= first
    with django_assert_num_queries(0):  # not one of ours: not even a lookup
        assert tokens.user_for_api_token(plain="ghp_something-else") is None


def grant_token_admin(staff) -> None:
    staff.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["add_apitoken", "change_apitoken", "view_apitoken"]
        )
    )


def test_admin_shows_a_new_token_once_and_revokes_tokens(client, staff, user):
    staff.is_superuser = True  # the one who may make a token for somebody else
    staff.save()
    client.force_login(staff)
    created = client.post("/admin/jobs/apitoken/add/", {"user": user.pk, "name": "nightly export"})
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    page = created.content.decode()
    plain = re.search(r'<code id="api-token"[^>]*>(prt_[^<]+)</code>', page)[1]
    assert "shown only this once" in page
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (user, "nightly export", plain[:12])
    assert token.digest == hashlib.sha256(plain.encode()).hexdigest()
    assert tokens.user_for_api_token(plain=plain) == user

    # Never again: not in the list, not on the token's page.
    for path in ["/admin/jobs/apitoken/", f"/admin/jobs/apitoken/{token.pk}/change/"]:
        response = client.get(path)
        assert response.status_code == 200
        assert token.prefix in response.content.decode()
        assert plain not in response.content.decode()

    revoke = {"action": "revoke_selected", "_selected_action": [token.pk]}
    assert client.post("/admin/jobs/apitoken/", revoke).status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    assert tokens.user_for_api_token(plain=plain) is None


def test_staff_who_are_not_superusers_make_and_see_only_their_own_tokens(client, staff, user):
    # A token acts as its user: made for an admin, it would let a staff member act as one.
    grant_token_admin(staff)
    tokens.issue_api_token(token=ApiToken(user=user, name="someone else's"))
    client.force_login(staff)
    client.post("/admin/jobs/apitoken/add/", {"user": user.pk, "name": "mine"})
    mine = ApiToken.objects.get(name="mine")
    assert mine.user == staff
    listed = client.get("/admin/jobs/apitoken/").content.decode()
    assert mine.prefix in listed and "someone else" not in listed


def call(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_management_command_creates_lists_and_revokes_tokens(user, other_user):
    plain, note = call("create", "alice", "--name", "ci")
    plain = plain.strip()
    assert "shown only this once" in note
    assert tokens.user_for_api_token(plain=plain) == user
    call("create", "bob")
    token = ApiToken.objects.get(user=user)

    listing, _ = call("list", "--user", "alice")
    assert token.prefix in listing and "ci" in listing and plain not in listing
    assert "bob" not in listing and "bob" in call("list")[0]

    done, _ = call("revoke", token.prefix)
    assert done.strip() == f"{token.pk} {token}: revoked"
    assert call("revoke", str(token.pk))[0].strip().endswith("already revoked")
    assert tokens.user_for_api_token(plain=plain) is None
    assert timezone.now() - ApiToken.objects.get(pk=token.pk).revoked_at < timedelta(minutes=1)

    with pytest.raises(CommandError, match="No user 'carol'"):
        call("create", "carol")
    with pytest.raises(CommandError, match="names 0 tokens"):
        call("revoke", "prt_nothing1")
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="inactive"):
        call("create", "alice")


# --- a person's own tokens (/accounts/tokens/) ----------------------------------------------------


def test_a_person_makes_a_token_sees_it_once_and_revokes_it(client, user):
    client.force_login(user)
    empty = client.get("/accounts/tokens/")
    assert "No tokens yet" in empty.content.decode()
    assert "no-store" in empty["Cache-Control"]

    made = client.post("/accounts/tokens/", {"name": "nightly export"})
    assert made.status_code == 302 and made.url == "/accounts/tokens/"  # post/redirect/get
    shown = client.get(made.url)
    assert "no-store" in shown["Cache-Control"]
    plain = re.search(r'<code id="api-token"[^>]*>(prt_[^<]+)</code>', shown.content.decode())[1]
    assert "shown only this once" in shown.content.decode()
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (user, "nightly export", plain[:12])
    assert tokens.user_for_api_token(plain=plain) == user

    again = client.get("/accounts/tokens/").content.decode()  # a refresh
    assert plain not in again and token.prefix in again and "nightly export" in again

    assert client.post(f"/accounts/tokens/{token.pk}/revoke").status_code == 302
    assert tokens.user_for_api_token(plain=plain) is None
    assert "Revoked" in client.get("/accounts/tokens/").content.decode()


def test_nobody_revokes_or_sees_someone_elses_token(client, user, other_user):
    theirs, plain = tokens.create_api_token(user=other_user, name="their script")
    client.force_login(user)
    assert client.post(f"/accounts/tokens/{theirs.pk}/revoke").status_code == 404
    assert "their script" not in client.get("/accounts/tokens/").content.decode()
    assert tokens.user_for_api_token(plain=plain) == other_user


def test_a_person_has_at_most_twenty_tokens_in_use(client, user):
    for number in range(tokens.MAX_ACTIVE_TOKENS):
        tokens.create_api_token(user=user, name=f"script {number}")
    client.force_login(user)
    refused = client.post("/accounts/tokens/", {"name": "one more"})
    assert refused.status_code == 400
    assert "revoke one you no longer need first" in refused.content.decode()
    tokens.revoke_api_tokens(tokens=ApiToken.objects.filter(name="script 0"))
    assert client.post("/accounts/tokens/", {"name": "one more"}).status_code == 302


def test_admin_finds_the_tokens_user_by_a_search_not_a_raw_id(client, staff, user):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    form = client.get("/admin/jobs/apitoken/add/").content.decode()
    assert 'class="admin-autocomplete' in form and "vForeignKeyRawIdAdminField" not in form
    found = client.get(
        "/admin/autocomplete/",
        {"app_label": "jobs", "model_name": "apitoken", "field_name": "user", "term": "ali"},
    )
    assert [item["text"] for item in found.json()["results"]] == ["alice"]

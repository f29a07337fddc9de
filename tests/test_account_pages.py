"""Signing out and changing a password happen in the app's look, and say what happened."""

import pytest
from django.urls import reverse

from tests.conftest import PASSWORDS

pytestmark = pytest.mark.django_db


def test_signing_out_lands_on_the_login_page_which_says_so(client, user):
    client.force_login(user)
    response = client.post(reverse("logout"), follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert "You are signed out." in page and "<h1>Sign in</h1>" in page
    assert "You are signed out." not in client.get(reverse("login")).content.decode()


def test_a_password_is_changed_on_a_page_of_the_app(client, user):
    client.force_login(user)
    form = client.get(reverse("password_change")).content.decode()
    assert "<h1>Change your password</h1>" in form and 'class="topbar"' in form
    new = "a-much-longer-new-password-7"
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORDS["alice"], "new_password1": new, "new_password2": new},
        follow=True,
    )
    assert "<h1>Password changed</h1>" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(new)

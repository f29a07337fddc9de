import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin account with a random password (printed once) unless a superuser exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        users = get_user_model()
        existing = users.objects.filter(is_superuser=True).values_list("username", flat=True)
        if existing:
            self.stdout.write(
                f"Admin login: {', '.join(existing)} (password as printed when it was made; "
                "set a new one with `.venv/bin/python manage.py changepassword NAME`)"
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin login created: username {username!r}, password {password!r} "
                "(shown only this once)"
            )
        )

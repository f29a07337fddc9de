from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs import tokens
from jobs.models import ApiToken


class Command(BaseCommand):
    help = "Create, revoke and list API tokens (Authorization: Bearer <token>)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser(
            "create", help="Make a token for a user and print it: the only time it is shown."
        )
        create.add_argument("username")
        create.add_argument("--name", default="", help="What the token is for.")
        revoke = actions.add_parser("revoke", help="Revoke tokens, each by id or shown prefix.")
        revoke.add_argument("which", nargs="+", metavar="ID_OR_PREFIX")
        listing = actions.add_parser("list", help="Tokens, newest first (never their secret).")
        listing.add_argument("--user", help="Only this username's tokens.")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _create(self, *, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username!r} is inactive: no token of theirs would work.")
        name = name or f"made {timezone.now():%Y-%m-%d}"
        token, plain = tokens.create_api_token(user=user, name=name)
        # Only the token on stdout, so that TOKEN=$(manage.py api_token create ...) works.
        self.stderr.write(f"Token {token.pk} ({name}) for {username}, shown only this once:")
        self.stdout.write(plain)

    def _revoke(self, *, which: list[str], **options) -> None:
        for text in which:
            found = list(tokens.find_api_tokens(text=text))
            if len(found) != 1:
                raise CommandError(f"{text!r} names {len(found)} tokens: give one id or prefix.")
            token = found[0]
            done = tokens.revoke_api_tokens(tokens=ApiToken.objects.filter(pk=token.pk))
            self.stdout.write(f"{token.pk} {token}: {'revoked' if done else 'already revoked'}")

    def _list(self, *, user: str | None, **options) -> None:
        listed = ApiToken.objects.select_related("user")
        if user:
            listed = listed.filter(user__username=user)
        self.stdout.write("id\tprefix\tuser\tname\tcreated\tlast used\trevoked")
        for token in listed:
            when = [token.created_at, token.last_used_at, token.revoked_at]
            dates = [f"{moment:%Y-%m-%d %H:%M}" if moment else "-" for moment in when]
            fields = [token.pk, token.prefix, token.user.get_username(), token.name, *dates]
            self.stdout.write("\t".join(map(str, fields)))

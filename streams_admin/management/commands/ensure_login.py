"""Make sure someone can log in: DJANGO_SUPERUSER_* when set, else a one-time password."""

from __future__ import annotations

import os
import secrets

from axes.utils import reset
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# bin/dashboard shows this line; the way back in must work from there, with no SECRET_KEY or
# venv to set up by hand.
FORGOTTEN = ("Forgotten the password? Start again with a new one for {username}:\n"
             "  DJANGO_SUPERUSER_PASSWORD=<new password> ./bin/dashboard\n"
             "(DJANGO_SUPERUSER_USERNAME picks another user; this also lifts a login lockout.)")


class Command(BaseCommand):
    help = "Create the first superuser (from DJANGO_SUPERUSER_USERNAME/PASSWORD, or printed)."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        superusers = users.objects.filter(is_superuser=True).order_by("pk")
        if superusers.exists() and not password:
            names = ", ".join(user.get_username() for user in superusers[:3])
            self.stdout.write(f"Log in with your existing superuser ({names}).\n"
                              + FORGOTTEN.format(username=username))
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        user, _ = users.objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = True
        user.email = os.environ.get("DJANGO_SUPERUSER_EMAIL", user.email)
        user.set_password(password)
        user.save()
        reset(username=username)  # a new password also lifts a lockout from earlier guesses
        shown = password if generated else "(from DJANGO_SUPERUSER_PASSWORD)"
        self.stdout.write(f"Log in as {username} / {shown}")

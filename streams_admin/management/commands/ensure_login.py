"""Make sure someone can log in: DJANGO_SUPERUSER_* when set, else a one-time password."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first superuser (from DJANGO_SUPERUSER_USERNAME/PASSWORD, or printed)."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if users.objects.filter(is_superuser=True).exists() and not password:
            self.stdout.write("Log in with your existing superuser.")
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        user, _ = users.objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = True
        user.email = os.environ.get("DJANGO_SUPERUSER_EMAIL", user.email)
        user.set_password(password)
        user.save()
        shown = password if generated else "(from DJANGO_SUPERUSER_PASSWORD)"
        self.stdout.write(f"Log in as {username} / {shown}")

from django.apps import AppConfig


class StreamsAdminConfig(AppConfig):
    name = "streams_admin"
    verbose_name = "Streams Admin"

    def ready(self) -> None:
        from streams_admin import targets

        targets.configured()  # a mistake in STREAMS_ADMIN_TARGETS stops the start, named

from django.apps import AppConfig


class StreamsAdminConfig(AppConfig):
    name = "streams_admin"
    verbose_name = "Streams Admin"

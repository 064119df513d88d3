from django.urls import path, register_converter

from streams_admin import views
from streams_admin.names import NameConverter

register_converter(NameConverter, "name")

app_name = "streams_admin"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("tail/", views.firehose, name="firehose"),
    path("streams/<name:key>/", views.stream, name="stream"),
    path("streams/<name:key>/tail/", views.tail, name="tail"),
    path("streams/<name:key>/entries/<str:entry_id>/", views.entry, name="entry"),
    path("streams/<name:key>/groups/<name:group>/", views.group, name="group"),
]

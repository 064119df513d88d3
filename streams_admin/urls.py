from django.urls import path, register_converter

from streams_admin import actions, confirm, views
from streams_admin.names import NameConverter
from streams_admin.trends import alert_views, exporter
from streams_admin.trends import views as trends

register_converter(NameConverter, "name")

app_name = "streams_admin"
stream = "streams/<name:key>/"
group = stream + "groups/<name:group>/"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("tail/", views.firehose, name="firehose"),
    path("publish/", actions.publish, name="publish"),
    path("dead-letters/", views.dead_letters, name="dead-letters"),
    path("audit/", views.audit, name="audit"),
    path("targets/", views.targets_page, name="targets"),
    path("alerts/", alert_views.alerts, name="alerts"),  # README "Alerts"
    path("alerts/new/", alert_views.rule_new, name="alert-new"),
    path("alerts/<int:rule_id>/", alert_views.rule_edit, name="alert-edit"),
    path("alerts/<int:rule_id>/enable/", alert_views.rule_enable, name="alert-enable"),
    path("alerts/<int:rule_id>/delete/", alert_views.rule_delete, name="alert-delete"),
    path("alerts/<int:rule_id>/test/", alert_views.rule_test, name="alert-test"),
    path("metrics", exporter.metrics, name="metrics"),  # Prometheus: README "Prometheus"
    path("history/", trends.sparklines, name="sparklines"),  # charts: README "History"
    path(stream, views.stream, name="stream"),
    path(stream + "tail/", views.tail, name="tail"),
    path(stream + "history/", trends.stream_history, name="stream-history"),
    path(stream + "entries/<str:entry_id>/", views.entry, name="entry"),
    path(stream + "entries/<str:entry_id>/fields/<int:position>/download/", views.download,
         name="download"),
    path(stream + "trim/", confirm.trim, name="trim"),
    path(stream + "delete/", confirm.delete_stream, name="delete-stream"),
    path(stream + "delete-entries/", confirm.delete_entries, name="delete-entries"),
    path(stream + "create-group/", actions.create_group, name="create-group"),
    path(stream + "redrive/", actions.redrive, name="redrive"),
    path(group, views.group, name="group"),
    path(group + "history/", trends.group_history, name="group-history"),
    path(group + "ack/", actions.ack, name="ack"),
    path(group + "claim/", actions.claim, name="claim"),
    path(group + "claim-idle/", actions.claim_idle, name="claim-idle"),
    path(group + "requeue/", confirm.requeue, name="requeue"),
    path(group + "dead-letter/", actions.dead_letter, name="dead-letter"),
    path(group + "ack-matching/", confirm.ack_matching, name="ack-matching"),
    path(group + "set-id/", confirm.set_id, name="set-id"),
    path(group + "destroy/", confirm.destroy_group, name="destroy-group"),
    path(group + "create-consumer/", actions.create_consumer, name="create-consumer"),
    path(group + "consumers/<name:consumer>/delete/", confirm.delete_consumer,
         name="delete-consumer"),
]

"""The alert rule form: what an admin types, checked with a message per field."""

from __future__ import annotations

import math
import re
from typing import Any

from django import forms

from streams_admin import names
from streams_admin.trends.alert_models import AlertRule
from streams_admin.trends.notify import check_url

MAX_FOR = 7 * 86400


class RuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["name", "metric", "stream_glob", "group_glob", "comparison", "threshold",
                  "for_seconds", "webhook_url", "webhook_kind", "enabled"]
        labels = {"stream_glob": "Streams", "group_glob": "Groups", "for_seconds": "For (s)",
                  "webhook_url": "Webhook URL", "webhook_kind": "Payload"}
        help_texts = {
            "stream_glob": "A Redis glob over stream keys, as SCAN MATCH reads it: * ? [a-z] \\x",
            "group_glob": "A Redis glob over group names (not used by stream metrics)",
            "for_seconds": "How long the condition must hold before the alert fires (0: at "
                           "once); counted in samples, every SAMPLE_INTERVAL",
            "webhook_url": "http:// or https://; it gets a POST on firing and on resolve",
        }
        widgets = {"webhook_url": forms.URLInput(attrs={"size": 50}),
                   "name": forms.TextInput(attrs={"size": 30})}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the rule a name.")
        return name

    def clean_stream_glob(self) -> str:
        return _glob(self.cleaned_data["stream_glob"])

    def clean_group_glob(self) -> str:
        return _glob(self.cleaned_data["group_glob"])

    def clean_threshold(self) -> float:
        value = self.cleaned_data["threshold"]
        if not math.isfinite(value):
            raise forms.ValidationError("The threshold must be a finite number.")
        return value

    def clean_for_seconds(self) -> int:
        value = self.cleaned_data["for_seconds"]
        if value > MAX_FOR:
            raise forms.ValidationError(f"At most {MAX_FOR} seconds (7 days).")
        return value

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"].strip()
        if why := check_url(url):
            raise forms.ValidationError(why)
        return url

    def described(self) -> dict[str, Any]:
        """The rule's fields, for its audit row."""
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


def _glob(text: str) -> str:
    text = text.strip()
    if not text:
        raise forms.ValidationError("Give a pattern (* matches every name).")
    try:
        names.glob(text)
    except re.error as exc:
        raise forms.ValidationError(f"Not a pattern: {exc}.") from exc
    return text

"""Trends: the present measured for history, charts, alerts and the Prometheus exporter."""

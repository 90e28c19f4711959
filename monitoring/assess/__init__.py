"""Assessments of a service: failure risk, capacity forecasts, scaling advice, one service's insights
and the served model's health. Imports only monitoring."""

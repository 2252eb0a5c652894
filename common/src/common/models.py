"""Abstract models shared by every service, and the events tables every service gets."""

from django.db import models

# Defined with the events code; importing them here registers them with this
# app, so its migrations give every service the outbox and inbox tables.
from common.events.models import InboxMessage, OutboxMessage

__all__ = ["InboxMessage", "OutboxMessage", "TimeStampedModel"]


class TimeStampedModel(models.Model):
    """Creation and last-change times, kept by the database layer."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

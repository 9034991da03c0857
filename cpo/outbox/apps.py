from __future__ import annotations

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    """The one outbox: durable messages to partners, webhook endpoints and alert channels,
    written in the transaction of the change and delivered by a Celery worker with retries.
    Integrator webhooks are its first user (`cpo.outbox.webhooks`)."""

    name = "cpo.outbox"
    label = "outbox"
    verbose_name = "Outbox and webhooks"

    def ready(self) -> None:
        from cpo.outbox import email, services, tasks, webhooks

        services.wake_register(tasks.outbox_deliver.delay)
        webhooks.register()
        email.register()

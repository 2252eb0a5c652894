from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Shared mechanisms"

    def ready(self) -> None:
        from django.core.signals import request_started

        from common import schema  # noqa: F401 - registers the Bearer scheme with drf-spectacular
        from common.db import connections_checked_quietly
        from common.events.metrics import OutboxCollector, QueueCollector
        from common.metrics import scrape_collector_register
        from common.strict_types import install as strict_types_install

        scrape_collector_register(OutboxCollector())
        scrape_collector_register(QueueCollector())
        strict_types_install()
        # After Django's close_old_connections (connected when django.db was imported).
        request_started.connect(connections_checked_quietly, dispatch_uid="eshop-quiet-check")

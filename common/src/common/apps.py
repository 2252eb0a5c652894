from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Shared mechanisms"

    def ready(self) -> None:
        from common import schema  # noqa: F401 - registers the Bearer scheme with drf-spectacular
        from common.events.metrics import OutboxCollector, QueueCollector
        from common.metrics import scrape_collector_register

        scrape_collector_register(OutboxCollector())
        scrape_collector_register(QueueCollector())

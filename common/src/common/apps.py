from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Shared mechanisms"

    def ready(self) -> None:
        from common import schema  # noqa: F401 - registers the Bearer scheme with drf-spectacular
        from common.events.metrics import OutboxCollector, QueueCollector
        from common.metrics import scrape_collector_register
        from common.strict_types import install as strict_types_install

        scrape_collector_register(OutboxCollector())
        scrape_collector_register(QueueCollector())
        strict_types_install()

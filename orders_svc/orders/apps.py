from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from common.metrics import scrape_collector_register
        from orders import events
        from orders.metrics import OrdersCollector

        events.register()
        scrape_collector_register(OrdersCollector())

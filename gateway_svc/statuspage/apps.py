from django.apps import AppConfig


class StatusPageConfig(AppConfig):
    name = "statuspage"
    verbose_name = "Status page (services, backbone, sagas)"

    def ready(self) -> None:
        from django.contrib import admin

        # The admin index gains a link to /admin/status/ (the template extends
        # admin/index.html); the site itself stays Django's default one.
        admin.site.index_template = "statuspage/admin_index.html"

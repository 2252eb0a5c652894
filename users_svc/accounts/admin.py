from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError

from accounts.models import Address, CreditAccount, CreditReservation, User
from accounts.services import user_update_by_staff


class CreditLimitForm(forms.ModelForm):
    class Meta:
        model = CreditAccount
        fields = ["credit_limit"]

    def clean_credit_limit(self):
        limit = self.cleaned_data["credit_limit"]
        if limit < self.instance.reserved:
            raise ValidationError(f"Must be at least {self.instance.reserved}, the credit in use.")
        return limit


class CreditAccountInline(admin.StackedInline):
    """Staff set the limit here; ``reserved`` moves only through credit reservations."""

    model = CreditAccount
    form = CreditLimitForm
    can_delete = False
    fields = ["credit_limit", "reserved", "available"]
    readonly_fields = ["reserved", "available"]

    @admin.display(description="available")
    def available(self, account: CreditAccount):
        return account.available


class AddressInline(admin.TabularInline):
    model = Address
    extra = 0
    fields = ["label", "recipient", "line1", "city", "postal_code", "country", "is_default"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "order_count", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "name"]
    readonly_fields = ["order_count", "last_login", "date_joined"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name", "order_count"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "name", "password1", "password2"]}),
    ]
    inlines = [CreditAccountInline, AddressInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj else []  # the account is created with the user

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is not CreditAccount:
            super().save_formset(request, form, formset, change)
            return
        # Saving the whole row would write back a stale ``reserved`` over concurrent
        # reservations: change the limit alone, under the service's row lock.
        formset.new_objects, formset.deleted_objects, formset.changed_objects = [], [], []
        for account_form in formset.forms:
            if "credit_limit" in account_form.changed_data:
                user_update_by_staff(
                    user=form.instance, credit_limit=account_form.cleaned_data["credit_limit"]
                )
                formset.changed_objects.append((account_form.instance, ["credit_limit"]))


@admin.register(Address)
class AddressAdmin(admin.ModelAdmin):
    list_display = ["owner", "label", "recipient", "city", "country", "is_default"]
    list_filter = ["country", "is_default"]
    search_fields = ["owner__email", "recipient", "city", "postal_code"]
    list_select_related = ["owner"]


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = ["user", "credit_limit", "reserved", "updated_at"]
    search_fields = ["user__email"]
    list_select_related = ["user"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the limit is set on the user's page, under a row lock


@admin.register(CreditReservation)
class CreditReservationAdmin(admin.ModelAdmin):
    """Read-only: credit moves only through the saga's commands."""

    list_display = ["order_id", "customer", "amount", "state", "reason", "created_at"]
    list_filter = ["state", "reason"]
    search_fields = ["order_id", "customer__email"]
    list_select_related = ["customer"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

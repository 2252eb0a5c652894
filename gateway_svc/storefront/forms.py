"""The storefront's forms: every field labelled; the services still decide what they accept."""

from __future__ import annotations

from django import forms

from storefront.cart import MAX_QUANTITY
from storefront.selectors import SORTS


class ProductFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=100)
    category = forms.ChoiceField(label="Category", required=False)
    min_price = forms.DecimalField(
        label="Lowest price", required=False, min_value=0, max_digits=12, decimal_places=2
    )
    max_price = forms.DecimalField(
        label="Highest price", required=False, min_value=0, max_digits=12, decimal_places=2
    )
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[(key, label) for key, (label, _) in SORTS.items()],
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: object, categories: list[dict] | None = None, **kwargs: object):
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["category"].choices = [("", "All categories")] + [
            (category["slug"], "\u2003" * category["depth"] + category["name"])
            for category in categories or []
        ]
        self.fields["q"].widget.attrs.update({"type": "search", "placeholder": "Name or SKU"})
        for name in ("min_price", "max_price"):
            self.fields[name].widget.attrs.update({"inputmode": "decimal", "step": "0.01"})

    def filters(self) -> dict[str, object]:
        """What the catalog is asked for: the valid fields only (a bad one is left out)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "search": data.get("q") or "",
            "category": data.get("category") or "",
            "min_price": data.get("min_price"),
            "max_price": data.get("max_price"),
            "sort": data.get("sort") or "",
            "page": data.get("page") or 1,
        }


class QuantityForm(forms.Form):
    product_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    quantity = forms.IntegerField(label="Quantity", min_value=0, max_value=MAX_QUANTITY, initial=1)


class SignInForm(forms.Form):
    email = forms.EmailField(label="Email", max_length=254)
    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["email"].widget.attrs.update({"autocomplete": "email", "autofocus": True})
        self.fields["password"].widget.attrs["autocomplete"] = "current-password"


class SignUpForm(forms.Form):
    name = forms.CharField(label="Name", max_length=150, required=False)
    email = forms.EmailField(label="Email", max_length=254)
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput,
        help_text="At least 8 characters, not only digits, not a common password.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["name"].widget.attrs.update({"autocomplete": "name", "autofocus": True})
        self.fields["email"].widget.attrs["autocomplete"] = "email"
        self.fields["password"].widget.attrs["autocomplete"] = "new-password"


class CheckoutForm(forms.Form):
    checkout_key = forms.CharField(max_length=64, widget=forms.HiddenInput)


class AddressForm(forms.Form):
    label = forms.CharField(label="Label (Home, Work...)", max_length=50, required=False)
    recipient = forms.CharField(label="Recipient", max_length=150)
    line1 = forms.CharField(label="Street and number", max_length=200)
    line2 = forms.CharField(label="Address line 2", max_length=200, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=20)
    city = forms.CharField(label="City", max_length=100)
    country = forms.CharField(
        label="Country code", max_length=2, min_length=2, help_text="Two letters, such as FR."
    )
    is_default = forms.BooleanField(label="Default address", required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, label_suffix="", **kwargs)
        autocomplete = {
            "recipient": "name",
            "line1": "address-line1",
            "line2": "address-line2",
            "postal_code": "postal-code",
            "city": "address-level2",
            "country": "country",
        }
        for name, value in autocomplete.items():
            self.fields[name].widget.attrs["autocomplete"] = value

"""ISO 3166-1 country codes, checked against the standard's own list (pycountry's copy of the
ISO 3166 data), never against a hand-typed one.

Alpha-2 (`NL`) is what invoices, OCPI parties (`country_code`) and token issuers use; alpha-3
(`NLD`) is what OCPI 2.2.1 wants for a location's `country`. Codes are upper case, as both
standards write them.
"""

from __future__ import annotations

import pycountry
from django.core.exceptions import ValidationError

ALPHA_2: frozenset[str] = frozenset(country.alpha_2 for country in pycountry.countries)
ALPHA_3: frozenset[str] = frozenset(country.alpha_3 for country in pycountry.countries)


def validate_country_alpha2(value: str) -> None:
    if value not in ALPHA_2:
        raise ValidationError(
            "%(value)r is not an ISO 3166-1 alpha-2 country code, e.g. NL",
            code="country",
            params={"value": value},
        )


def validate_country_alpha3(value: str) -> None:
    if value not in ALPHA_3:
        raise ValidationError(
            "%(value)r is not an ISO 3166-1 alpha-3 country code, e.g. NLD",
            code="country",
            params={"value": value},
        )

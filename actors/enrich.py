"""Customer enrichment: who the customer is, with E.164 / country from phonenumbers.

phonenumbers ships its metadata, so this is offline and cheap; it runs in the shard with
normalization rather than as a remote task.
"""

from __future__ import annotations

import phonenumbers

from models.event import Customer
from models.meta.common import Contact


def phone_facts(wa_id: str | None) -> tuple[str | None, int | None, str | None]:
    """(E.164, calling code, ISO region) of a wa_id, or Nones when it is not a number.

    A wa_id is the number in international form without "+"; placeholders and
    business-scoped ids are not numbers and yield nothing rather than a guess.
    """
    if not wa_id or not wa_id.isdigit() or not 6 <= len(wa_id) <= 17:
        return None, None, None
    try:
        number = phonenumbers.parse("+" + wa_id, None)
    except phonenumbers.NumberParseException:
        return None, None, None
    if not phonenumbers.is_possible_number(number):
        return None, None, None
    calling_code = number.country_code
    if calling_code is None:
        return None, None, None
    region = phonenumbers.region_code_for_number(number)
    if region in (None, "ZZ", "001"):
        fallback = phonenumbers.region_code_for_country_code(calling_code)
        region = None if fallback in ("ZZ", "001") else fallback
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, calling_code, region


def build_customer(
    wa_id: str | None,
    user_id: str | None,
    contact: Contact | None,
) -> Customer | None:
    """The customer from the item's ids and the matching `contacts[]` entry, if any.

    The item's own ids win over the contact's (the contact list may describe several
    people); None when Meta named nobody.
    """
    profile = contact.profile if contact else None
    wa_id = wa_id or (contact.wa_id if contact else None)
    user_id = user_id or (contact.user_id if contact else None)
    username = contact.best_username if contact else None
    name = profile.name if profile else None
    if not (wa_id or user_id or username or name):
        return None
    e164, calling_code, region = phone_facts(wa_id)
    if region is None and profile and profile.country_code and len(profile.country_code) == 2:
        region = profile.country_code.upper()
    return Customer(
        wa_id=wa_id,
        user_id=user_id,
        username=username,
        name=name,
        phone_e164=e164,
        country_code=calling_code,
        region=region,
    )

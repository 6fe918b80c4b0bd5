"""An independent search for personal data left in scrubbed text: the blocking check's detector.

It shares no pattern with the scrubber (lakehouse/triage/pii.py), so a blind spot of one is
not a blind spot of both: phone numbers come from `phonenumbers`' own matcher (numbers valid
in the region or with a country code), cards and IBANs from whitespace-separated tokens run
through `python-stdnum`, e-mail addresses from tokens holding an `@` before a dotted domain,
and the CRM's names and contact details from plain word and substring comparisons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lakehouse.triage.pii import KnownPeople

_TRIM = ".,;:!?()[]{}<>\"'"


def _tokens(text: str) -> list[str]:
    return [t.strip(_TRIM) for t in text.split()]


def _emails(tokens: list[str]) -> int:
    count = 0
    for token in tokens:
        local, at, domain = token.partition("@")
        if at and local and "." in domain.strip(".") and domain.rsplit(".", 1)[-1].isalpha():
            count += 1
    return count


def _cards(tokens: list[str]) -> int:
    """Runs of digit tokens (dashes allowed inside) holding 13 to 19 digits that pass the Luhn check."""
    from stdnum import luhn

    count, i = 0, 0
    while i < len(tokens):
        digits, j = "", i
        while j < len(tokens) and tokens[j].replace("-", "").isdigit() and len(digits) < 19:
            digits += tokens[j].replace("-", "")
            j += 1
            if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
                count += 1
                i = j - 1
                break
        i += 1
    return count


def _ibans(tokens: list[str]) -> int:
    """A country code and check digits, then following tokens, forming a valid IBAN in any case."""
    from stdnum import iban

    count, i = 0, 0
    while i < len(tokens):
        token = tokens[i]
        if len(token) >= 4 and token[:2].isalpha() and token[2:4].isdigit() and token.isalnum():
            joined = ""
            for j in range(i, min(len(tokens), i + 10)):
                joined += tokens[j]
                if len(joined) > 34 or not tokens[j].isalnum():
                    break
                if len(joined) >= 15 and iban.is_valid(joined, check_country=False):
                    count += 1
                    i = j
                    break
        i += 1
    return count


def _phones(text: str, region: str) -> int:
    import phonenumbers

    return sum(1 for _ in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))


def _names(tokens: list[str], words: set[str]) -> int:
    count = 0
    for token in tokens:
        for part in token.replace("-", " ").replace("'", " ").split():
            count += part.lower() in words
    return count


def residual_pii(
    texts: Iterable[str],
    customer_ids: Iterable[str | None] | None = None,
    people: KnownPeople | None = None,
    region: str = "GB",
) -> Counter:
    """What personal data the texts still hold, counted per kind (should be nothing); each text is also
    searched for its own customer's contact details."""
    found: Counter = Counter()
    people = people or KnownPeople()
    texts = list(texts)
    customer_ids = list(customer_ids) if customer_ids is not None else [None] * len(texts)
    for text, customer in zip(texts, customer_ids, strict=True):
        tokens = _tokens(text)
        contacts = people.contacts.get(str(customer), [])
        found["email"] += _emails(tokens)
        found["card"] += _cards(tokens)
        found["iban"] += _ibans(tokens)
        found["phone"] += _phones(text, region)
        found["name"] += _names(tokens, people.name_words)
        found["contact"] += sum(text.count(c) for c in contacts)
    return +found

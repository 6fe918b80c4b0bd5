"""PII scrubbing and cleaning of raw ticket text, before anything is stored or learned.

Personal data becomes typed placeholders: e-mails, phone numbers, card numbers (only those
passing the Luhn check: an order number of 16 digits is not a card), IBANs (only those with
a valid mod-97 checksum), postal addresses, and the names of people the CRM knows.
Cleaning then removes markup, quoted history, signatures and greetings, which carry no
category signal and most of the personal data.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
    "name": "[NAME]",
}

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# 13 to 19 digits, optionally grouped by spaces or dashes.
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
PHONE = re.compile(r"(?<![\w-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{2,5}){1,5}(?![\w-])")
STREET_TYPES = r"(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Drive|Court|Boulevard|Way|Place|Square)"
ADDRESS = re.compile(
    rf"\b\d{{1,5}},? (?:[A-Z][a-z]+ ){{1,3}}{STREET_TYPES}\b"
    r"(?:,? [A-Z][a-z]+(?: [A-Z][a-z]+)?)?"  # city
    r"(?:,? [A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|,? \d{5})?"  # UK or 5-digit postcode
)
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 9, 15


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    text = candidate.replace(" ", "").upper()
    if not 15 <= len(text) <= 34 or not text[:2].isalpha() or not text[2:4].isdigit():
        return False
    rearranged = text[4:] + text[:4]
    try:
        numeric = "".join(str(int(c, 36)) for c in rearranged)
    except ValueError:
        return False
    return int(numeric) % 97 == 1


# Particles of family names ("Van der Berg") are ordinary words on their own.
NAME_PARTICLES = frozenset({"van", "der", "den", "de", "la", "le", "von", "di", "da", "du", "del"})
NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


@dataclass
class KnownPeople:
    """What the CRM knows about people: every name word, and each customer's own contact strings.

    Contact strings are matched exactly for the ticket's own customer (the detectors find
    the others); name words are matched everywhere, as whole words, case-insensitively.
    """

    name_words: set[str] = field(default_factory=set)  # lower-cased
    contacts: dict[str, list[str]] = field(default_factory=dict)  # customer_id -> e-mail, phone, address lines

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "KnownPeople":
        people = cls()
        for r in records:
            for key in ("first_name", "last_name"):
                people.name_words.update(w.lower() for w in NAME_TOKEN.findall(r.get(key) or "") if w.lower() not in NAME_PARTICLES)
            own = [r[k] for k in ("email", "phone", "street") if r.get(k)]
            if r.get("street") and r.get("city") and r.get("postcode"):
                own.append(f"{r['street']}, {r['city']} {r['postcode']}")
            people.contacts[str(r.get("customer_id", ""))] = sorted(own, key=len, reverse=True)
        return people


@dataclass
class Scrubbed:
    text: str
    found: Counter


def scrub(text: str, people: KnownPeople | None = None, customer_id: str | None = None) -> Scrubbed:
    """Replace personal data by typed placeholders; count what was found per kind."""
    found: Counter = Counter()
    kept: list[str] = []  # look-alikes that failed their checksum, hidden from the later detectors

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{_letters(len(kept) - 1)}\x00"

    def sub(pattern: re.Pattern, kind: str, text: str, valid=None, protect: bool = False) -> str:
        def repl(m: re.Match) -> str:
            if valid is not None and not valid(m.group(0)):
                return keep(m.group(0)) if protect else m.group(0)
            found[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(repl, text)

    if people is not None:
        for value in people.contacts.get(str(customer_id), ()):
            if value in text:
                kind = "email" if "@" in value else "phone" if value[:1] in "+(0" else "address"
                found[kind] += text.count(value)
                text = text.replace(value, PLACEHOLDERS[kind])
    text = sub(EMAIL, "email", text)
    text = sub(IBAN, "iban", text, iban_valid, protect=True)
    text = sub(CARD, "card", text, luhn_valid, protect=True)
    text = sub(ADDRESS, "address", text)
    text = sub(PHONE, "phone", text, _phone_like)
    text = SENTINEL.sub(lambda m: kept[_index(m.group(1))], text)
    if people is not None and people.name_words:
        text = _scrub_names(text, people.name_words, found)
    return Scrubbed(text, found)


def _scrub_names(text: str, words: set[str], found: Counter) -> str:
    def repl(m: re.Match) -> str:
        if m.group(0).lower() in words:
            found["name"] += 1
            return PLACEHOLDERS["name"]
        return m.group(0)

    return NAME_TOKEN.sub(repl, text)


SENTINEL = re.compile(r"\x00([A-Z]+)\x00")


def _letters(i: int) -> str:
    out = ""
    while True:
        out = chr(65 + i % 26) + out
        i = i // 26 - 1
        if i < 0:
            return out


def _index(letters: str) -> int:
    i = 0
    for ch in letters:
        i = i * 26 + ord(ch) - 64
    return i - 1


def _phone_like(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS:
        return False
    # A run of 4-digit groups is a (failed) card number or a reference, not a phone number.
    return not re.fullmatch(r"\d{4}(?:[ -]\d{4}){2,}\d*", candidate)


TAG = re.compile(r"<[^>]+>")
BLOCK_END = re.compile(r"</p>|<br\s*/?>|</div>", re.IGNORECASE)
QUOTE_HEADER = re.compile(
    r"^(?:On .{3,120} wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+|Le .{3,120} a écrit ?:)\s*$", re.IGNORECASE | re.MULTILINE
)
SIGN_OFF = re.compile(r"^(?:best|kind|warm)?\s*(?:regards|thanks|thank you|cheers|many thanks|best|sincerely)[,!.]?\s*$", re.IGNORECASE)
GREETING = re.compile(r"^(?:hello|hi|hey|good (?:morning|afternoon|evening)|dear [^,\n]{1,40})(?: there| team)?,?\s*", re.IGNORECASE)


def clean(text: str) -> str:
    """Plain text of the customer's own message: no markup, quoted history, signature or greeting."""
    text = BLOCK_END.sub("\n", text)
    text = html.unescape(TAG.sub("", text)).replace("\xa0", " ")
    header = QUOTE_HEADER.search(text)
    if header:
        text = text[: header.start()]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    for i, line in enumerate(lines):
        if line.strip() == "--" or SIGN_OFF.match(line.strip()):
            lines = lines[:i]
            break
    text = " ".join(line.strip() for line in lines if line.strip())
    text = GREETING.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def prepare(subject: str, body: str, people: KnownPeople | None = None, customer_id: str | None = None) -> tuple[str, str, Counter]:
    """(scrubbed subject, scrubbed and cleaned body, PII counts) of one raw ticket."""
    s = scrub(subject, people, customer_id)
    b = scrub(body, people, customer_id)
    return s.text, clean(b.text), s.found + b.found


def model_text(subject: str, body: str) -> str:
    """What the classifier reads: subject and body in one string."""
    return f"{subject}. {body}" if body else subject


def residual_pii(text: str, people: KnownPeople | None = None) -> Counter:
    """What the detectors and the CRM's names would still find in scrubbed text (should be nothing)."""
    return scrub(text, people).found

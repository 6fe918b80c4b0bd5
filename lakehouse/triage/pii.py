"""PII scrubbing and cleaning of raw ticket text, before anything is stored or learned.

Personal data becomes typed placeholders: e-mails, phone numbers (digit groups that
`phonenumbers` accepts as a possible number), card numbers (only those passing the Luhn check
of `python-stdnum`: an order number of 16 digits is not a card), IBANs in any case and spacing
(only those `python-stdnum` validates), postal addresses, and the names and contact details
of people the CRM knows. Cleaning then removes markup, quoted history, signatures and
greetings, which carry no category signal and most of the personal data.

Every pattern runs in time linear in the text: quantifiers are bounded, never nested, and
each detector starts only where a match can begin, so a 1 MB body scrubs in a fraction of a
second. Each detector looks at the original text; a span claimed by an earlier detector,
including a look-alike that failed its checksum, is never re-read by a later one, so a failed
IBAN is not half-eaten by the phone pattern.
"""

from __future__ import annotations

import bisect
import html
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
    "name": "[NAME]",
}

# Each pattern starts with a character class and checks what precedes it with a look-behind after that
# first character, so the regex engine skips ahead to candidate characters instead of trying every position.
EMAIL = re.compile(r"[\w.%+-](?<![\w.%+-][\w.%+-])[\w.%+-]{0,63}@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{1,190}")
# An IBAN starts with a country code and two check digits, then 11 to 30 letters or digits in
# groups of any size; the candidate runs on and is cut where stdnum finds a valid number.
IBAN = re.compile(r"[A-Za-z](?<![A-Za-z0-9][A-Za-z])[A-Za-z][0-9]{2}[A-Za-z0-9 ]{11,45}")
# 13 to 19 digits in one run, or printed in groups: 4-4-4-4(-1..3) or 4-6-4/5.
CARD = re.compile(
    r"\d(?<![\w-]\d)(?:\d{12,18}|\d{3}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{3}[ -]\d{6}[ -]\d{4,5})(?![\w-])"
)
# +country (area) digits, (area) digits, or digits: 9 to 15 digits with spaces, dots or dashes.
PHONE = re.compile(
    r"(?:\+(?<![\w+(-]\+)\d{1,3}[ .-]?(?:\(\d{1,5}\)[ .-]?)?\d|\((?<![\w+(-]\()\d{1,5}\)[ .-]?\d|\d(?<![\w+(-]\d))"
    r"[\d .-]{5,20}\d(?![\w-])"
)
STREET_TYPES = r"(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Drive|Court|Boulevard|Way|Place|Square)"
ADDRESS = re.compile(
    rf"\d(?<!\w\d)\d{{0,4}},? [A-Z][a-z]{{1,30}}(?: [A-Z][a-z]{{1,30}}){{0,2}} {STREET_TYPES}\b"
    r"(?:,? [A-Z][a-z]{1,30}(?: [A-Z][a-z]{1,30})?)?"  # city
    r"(?:,? [A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|,? \d{5})?"  # UK or 5-digit postcode
)
WORD = re.compile(r"[^\W\d_]{1,64}")
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 9, 15
# Particles of family names ("Van der Berg") are ordinary words on their own.
NAME_PARTICLES = frozenset({"van", "der", "den", "de", "la", "le", "von", "di", "da", "du", "del"})


@lru_cache(maxsize=8192)
def luhn_valid(number: str) -> bool:
    from stdnum import luhn

    digits = "".join(c for c in number if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


@lru_cache(maxsize=8192)
def iban_valid(candidate: str) -> bool:
    from stdnum import iban

    return iban.is_valid(candidate, check_country=False)


@lru_cache(maxsize=8192)
def phone_possible(candidate: str, region: str) -> bool:
    import phonenumbers

    digits = sum(c.isdigit() for c in candidate)
    if not MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS:
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(candidate, region))
    except phonenumbers.NumberParseException:
        return False


def name_words(text: str) -> list[str]:
    """The lower-cased words of a name that identify a person (particles excepted)."""
    return [w.lower() for w in WORD.findall(text or "") if w.lower() not in NAME_PARTICLES]


@dataclass
class KnownPeople:
    """What the CRM knows about people: every name word, and each customer's own contact strings.

    Contact strings are matched exactly for the ticket's own customer (the detectors find
    the others); name words are matched everywhere, as whole words, case-insensitively.
    """

    name_words: set[str] = field(default_factory=set)  # lower-cased
    contacts: dict[str, list[str]] = field(default_factory=dict)  # customer_id -> e-mail, phone, address lines

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> KnownPeople:
        people = cls()
        for r in records:
            for key in ("first_name", "last_name"):
                people.name_words.update(name_words(r.get(key) or ""))
            own = [r[k] for k in ("email", "phone", "street") if r.get(k)]
            if r.get("street") and r.get("city") and r.get("postcode"):
                own.append(f"{r['street']}, {r['city']} {r['postcode']}")
            people.contacts[str(r.get("customer_id", ""))] = sorted(own, key=len, reverse=True)
        return people


@dataclass
class Scrubbed:
    text: str
    found: Counter


class _Spans:
    """Non-overlapping (start, end, placeholder or None) spans claimed so far, sorted by start."""

    def __init__(self):
        self.starts: list[int] = []
        self.items: list[tuple[int, int, str | None]] = []

    def free(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end)
        return i == 0 or self.items[i - 1][1] <= start

    def claim(self, start: int, end: int, placeholder: str | None) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.items.insert(i, (start, end, placeholder))


def _own_contacts(text: str, values: list[str]) -> Iterator[tuple[int, int, str]]:
    for value in values:
        kind = "email" if "@" in value else "phone" if value[:1] in "+(0" else "address"
        start = text.find(value)
        while start >= 0:
            yield start, start + len(value), kind
            start = text.find(value, start + len(value))


def _iban(match: re.Match) -> tuple[int, int] | None:
    """The longest prefix of the candidate, ending at a group boundary, that is a valid IBAN."""
    text = match.group(0)
    ends = [i for i, c in enumerate(text) if c == " " and i > 0 and text[i - 1] != " "] + [len(text)]
    for end in reversed(ends):
        compact = text[:end].replace(" ", "")
        if 15 <= len(compact) <= 34 and iban_valid(compact):
            return match.start(), match.start() + end
    return None


def scrub(text: str, people: KnownPeople | None = None, customer_id: str | None = None, region: str = "GB") -> Scrubbed:
    """Replace personal data by typed placeholders; count what was found per kind."""
    spans = _Spans()
    found: Counter = Counter()

    def take(start: int, end: int, kind: str | None) -> None:
        if spans.free(start, end):
            spans.claim(start, end, PLACEHOLDERS[kind] if kind else None)
            if kind:
                found[kind] += 1

    if people is not None:
        for start, end, kind in _own_contacts(text, people.contacts.get(str(customer_id), [])):
            take(start, end, kind)
    for m in EMAIL.finditer(text):
        end = m.end() - (len(m.group(0)) - len(m.group(0).rstrip(".-")))
        take(m.start(), end, "email")
    for m in IBAN.finditer(text):
        span = _iban(m)
        if span:
            take(*span, "iban")
    for m in CARD.finditer(text):
        take(m.start(), m.end(), "card" if luhn_valid(m.group(0)) else None)  # a failed card is no phone either
    for m in ADDRESS.finditer(text):
        take(m.start(), m.end(), "address")
    for m in PHONE.finditer(text):
        if phone_possible(m.group(0), region) and not _grouped_like_a_card(m.group(0)):
            take(m.start(), m.end(), "phone")
    names = people.name_words if people is not None else set()
    parts, position = [], 0
    for start, end, placeholder in spans.items:
        parts.append(_scrub_names(text[position:start], names, found))
        parts.append(text[start:end] if placeholder is None else placeholder)
        position = end
    parts.append(_scrub_names(text[position:], names, found))
    return Scrubbed("".join(parts), found)


def _grouped_like_a_card(candidate: str) -> bool:
    """Three or more groups of four digits are a (failed) card number or a reference, not a phone number."""
    groups = re.split(r"[ -]", candidate)
    return len(groups) >= 3 and all(len(g) == 4 and g.isdigit() for g in groups[:3])


def _scrub_names(text: str, words: set[str], found: Counter) -> str:
    if not words or not text or words.isdisjoint(WORD.findall(text.lower())):
        return text

    def repl(m: re.Match) -> str:
        if m.group(0).lower() in words:
            found["name"] += 1
            return PLACEHOLDERS["name"]
        return m.group(0)

    return WORD.sub(repl, text)


TAG = re.compile(r"<[^<>]{0,2000}>")
BLOCK_END = re.compile(r"</p>|<br\s{0,10}/?>|</div>", re.IGNORECASE)
QUOTE_HEADER = re.compile(
    r"^(?:On [^\n]{3,120} wrote:|-{2,20} {0,5}Original Message {0,5}-{2,20}|From: [^\n]{1,300}"
    r"|Le [^\n]{3,120} a écrit ?:)[ \t]{0,20}$",
    re.IGNORECASE | re.MULTILINE,
)
SIGN_OFF = re.compile(
    r"(?:best |kind |warm )?(?:regards|thanks|thank you|cheers|many thanks|best|sincerely)[,!.]?", re.IGNORECASE
)
GREETING = re.compile(
    r"^(?:hello|hi|hey|good (?:morning|afternoon|evening)|dear [^,\n]{1,40})(?: there| team)?,? {0,10}", re.IGNORECASE
)
SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """Plain text of the customer's own message: no markup, quoted history, signature or greeting."""
    text = BLOCK_END.sub("\n", text)
    text = html.unescape(TAG.sub("", text)).replace("\xa0", " ")
    header = QUOTE_HEADER.search(text)
    if header:
        text = text[: header.start()]
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith(">")]
    for i, line in enumerate(lines):
        if line == "--" or SIGN_OFF.fullmatch(line):
            lines = lines[:i]
            break
    text = " ".join(line for line in lines if line)
    text = GREETING.sub("", text)
    return SPACES.sub(" ", text).strip()


def prepare(
    subject: str, body: str, people: KnownPeople | None = None, customer_id: str | None = None, region: str = "GB"
) -> tuple[str, str, Counter]:
    """(scrubbed subject, scrubbed and cleaned body, PII counts) of one raw ticket."""
    s = scrub(subject, people, customer_id, region)
    b = scrub(body, people, customer_id, region)
    return s.text, clean(b.text), s.found + b.found


def model_text(subject: str, body: str) -> str:
    """What the classifier reads: subject and body in one string."""
    if not subject:
        return body
    return f"{subject}. {body}" if body else subject

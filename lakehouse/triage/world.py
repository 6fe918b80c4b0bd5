"""A synthetic e-commerce helpdesk: the CRM's customers, raw tickets and the agents' labels.

Raw tickets look like real ones: a subject, a body written by a customer in varied words
(templates x synonyms x slots), typos, greetings, signatures, HTML mail, quoted history,
a second topic now and then, and personal data (names, e-mails, phone numbers, postal
addresses, card numbers valid under Luhn, IBANs with a valid checksum). Agents label each
ticket with its category when they close it, with a few mistakes.

Each month is generated from its own random stream, so a month can be (re)built alone and
the same seed gives the same tickets.
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

# Tickets per month per named scale; full is the seed's 50,000 tickets a month.
SCALES = {"demo": 500, "full": 50_000}

# The seed's 12 categories: the five it names and seven more an e-commerce helpdesk has.
SEED_CATEGORIES: tuple[str, ...] = (
    "product_return",
    "delivery_problem",
    "billing",
    "technical_problem",
    "product_question",
    "order_change",
    "refund_status",
    "account_access",
    "damaged_item",
    "warranty_claim",
    "promotion_code",
    "complaint_feedback",
)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and difficulty of the synthetic helpdesk (the generator's own settings, never read by production code)."""

    tickets_per_month: int = SCALES["demo"]
    customers: int = 3_000
    first_month: date = date(2026, 1, 1)
    months: int = 10  # 2026-01 .. 2026-10
    seed: int = 11
    categories: tuple[str, ...] = SEED_CATEGORIES
    typo_rate: float = 0.04  # per word
    second_topic_rate: float = 0.15  # tickets that also mention another topic
    quoted_reply_rate: float = 0.25
    html_rate: float = 0.15  # tickets sent as HTML e-mail
    signature_rate: float = 0.6
    vague_rate: float = 0.08  # short, vague tickets ("it still doesn't work")
    mislabel_rate: float = 0.03  # final agent labels that are wrong
    # Category mix: a Zipf-like skew over the configured order (returns and deliveries dominate).
    mix_skew: float = 0.6

    @classmethod
    def from_env(cls) -> WorldConfig:
        # LAKEHOUSE_SCALE names a scale shared by every case; an explicit monthly volume has its own variable.
        per_month = SCALES.get(os.environ.get("LAKEHOUSE_SCALE", "demo"), SCALES["demo"])
        per_month = int(os.environ.get("LAKEHOUSE_TRIAGE_TICKETS_PER_MONTH", per_month))
        return cls(tickets_per_month=per_month, seed=int(os.environ.get("LAKEHOUSE_SEED", cls.seed)))

    def with_(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    @property
    def month_starts(self) -> list[date]:
        index = self.first_month.year * 12 + self.first_month.month - 1
        return [date((index + i) // 12, (index + i) % 12 + 1, 1) for i in range(self.months)]


CHANNELS = ("email", "web_form", "chat", "mobile_app")
CHANNEL_WEIGHTS = (0.5, 0.25, 0.15, 0.1)

FIRST_NAMES = (
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Sofia",
    "Harriet",
    "Ingrid",
    "Noemie",
    "Camille",
    "Elodie",
    "Beatrix",
    "Oliver",
    "Theodore",
    "Arthur",
    "Leonardo",
    "Matthias",
    "Sebastian",
    "Killian",
    "Tobias",
    "Maxence",
    "Aurelien",
    "Priya",
    "Anoushka",
    "Yasmin",
    "Leila",
    "Kenji",
    "Haruto",
    "Mateo",
    "Santiago",
    "Lukas",
    "Florian",
    "Gwendolyn",
    "Rosalind",
    "Cormac",
    "Niamh",
    "Siobhan",
    "Declan",
    "Anneliese",
    "Wolfgang",
    "Zygmunt",
    "Agnieszka",
    "Bartosz",
)
LAST_NAMES = (
    "Fitzgerald",
    "Vasquez",
    "Okonkwo",
    "Lindqvist",
    "Moreau",
    "Dubreuil",
    "Kowalczyk",
    "Nakamura",
    "Haddad",
    "Castellanos",
    "Richter",
    "Schneider",
    "Oyelaran",
    "Papadopoulos",
    "Van der Berg",
    "Delacroix",
    "Gallagher",
    "McAllister",
    "Rosenthal",
    "Abernathy",
    "Thorvaldsen",
    "Bergström",
    "Marchetti",
    "Ferreira",
    "Obradovic",
    "Szymanski",
    "Laurent",
    "Whitfield",
    "Kaczmarek",
    "Rahimi",
    "Achterberg",
    "Quintero",
    "Hargreaves",
)
STREETS = (
    "Maple",
    "Kingsley",
    "Harbour",
    "Old Mill",
    "Ashgrove",
    "Wellington",
    "Chestnut",
    "Riverside",
    "Beaumont",
    "Larkspur",
)
STREET_TYPES = ("Street", "Road", "Avenue", "Lane", "Drive", "Court", "Boulevard")
CITIES = (
    ("Manchester", "M1 4BT"),
    ("Bristol", "BS1 6QR"),
    ("Leeds", "LS2 7EY"),
    ("Glasgow", "G2 3JD"),
    ("Cardiff", "CF10 1EP"),
    ("Brighton", "BN1 1AE"),
    ("Oxford", "OX1 2JD"),
    ("York", "YO1 7HH"),
)
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.co.uk", "proton.me", "mailbox.org", "icloud.com")
IBAN_FORMATS = {"DE": 18, "FR": 23, "GB": 18, "NL": 14, "ES": 20, "IT": 23}  # BBAN length

PRODUCTS = (
    "wireless headphones",
    "coffee machine",
    "running shoes",
    "winter jacket",
    "smartwatch",
    "blender",
    "desk lamp",
    "backpack",
    "phone case",
    "air fryer",
    "yoga mat",
    "bluetooth speaker",
    "office chair",
    "vacuum cleaner",
    "kettle",
    "sofa cushion set",
    "gaming mouse",
    "electric toothbrush",
)

GREETINGS = (
    "Hello,",
    "Hi,",
    "Hi there,",
    "Dear support team,",
    "Good morning,",
    "Hello team,",
    "Dear Sir or Madam,",
    "Hey,",
    "",
)
SIGN_OFFS = ("Best regards,", "Kind regards,", "Thanks,", "Thank you,", "Cheers,", "Regards,", "Many thanks,")
POLITE = (
    "Thanks in advance.",
    "I hope you can help.",
    "Please get back to me soon.",
    "Looking forward to your answer.",
    "",
)

# Per category: subjects and problem sentences; {product}, {order}, {days}, {amount} are slots,
# "a|b" picks a synonym.
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "product_return": {
        "subject": (
            "Return request",
            "I want to return my {product}",
            "How do I send back an item?",
            "Return label needed",
        ),
        "body": (
            "I would like to return|send back the {product} from order {order}, it does not fit my needs.",
            "How can I return an item? I bought a {product} {days} days ago and changed my mind.",
            "Please send me a return label for order {order}, the {product} is not what I expected.",
            "I want to exchange|swap the {product} for a different size, can I return it?",
            "Is it still possible to return the {product}? I am within the 30 day window.",
        ),
    },
    "delivery_problem": {
        "subject": ("Where is my parcel?", "Delivery delayed", "Package not received", "Tracking not updating"),
        "body": (
            "My parcel|package for order {order} has not arrived|been delivered yet, it was due {days} days ago.",
            "The tracking for order {order} has not moved for {days} days, where is my {product}?",
            "The courier|driver marked my order as delivered but I never received|got anything.",
            "My delivery keeps being postponed, I have been waiting for the {product} for over a week.",
            "The package was left with a neighbour I don't know, and now I cannot find the {product}.",
        ),
    },
    "billing": {
        "subject": ("Charged twice", "Wrong amount on my invoice", "Invoice request", "Payment issue"),
        "body": (
            "I was charged|billed twice for order {order}, {amount} EUR taken two times from my card.",
            "The invoice|bill for order {order} shows the wrong amount, I paid {amount} EUR not more.",
            "Could you send me a VAT invoice for order {order}? I need it for my company accounts.",
            "My card payment of {amount} EUR went through but the order says payment failed.",
            "There is a charge of {amount} EUR on my statement that I do not recognise.",
        ),
    },
    "technical_problem": {
        "subject": ("Website error", "App keeps crashing", "Checkout not working", "Error message when paying"),
        "body": (
            "The checkout page shows an error|blank page every time I try to pay.",
            "Your app crashes|freezes when I open my basket, I tried reinstalling it.",
            "The website is very slow and the page times out when I add the {product} to the basket.",
            "I get error 500 when I click on 'my orders', on both Chrome and Firefox.",
            "The search bar does not return anything, even for the {product} I bought last month.",
        ),
    },
    "product_question": {
        "subject": ("Question about a product", "Is this compatible?", "Product dimensions", "Before I buy"),
        "body": (
            "Is the {product} compatible|suitable with older models? I could not find it in the description.",
            "What are the exact dimensions|measurements of the {product}? The page does not say.",
            "Does the {product} come with a charger|batteries included, or do I need to buy them separately?",
            "Can you tell me which material|fabric the {product} is made of before I order?",
            "Will the {product} be back in stock soon? I would like to buy two.",
        ),
    },
    "order_change": {
        "subject": ("Change my order", "Wrong address on order", "Cancel my order please", "Add an item to my order"),
        "body": (
            "I need to change the delivery address of order {order} before it ships|is dispatched.",
            "Please cancel order {order}, I ordered the wrong {product} by mistake.",
            "Can I add a second {product} to order {order} so it ships together?",
            "I selected the wrong colour for the {product} in order {order}, can you modify it?",
            "Please change the delivery date of order {order} to next week, I am away.",
        ),
    },
    "refund_status": {
        "subject": ("Where is my refund?", "Refund not received", "Refund status", "Still waiting for my money"),
        "body": (
            "I returned the {product} {days} days ago and still have not received|got my refund.",
            "You confirmed my refund of {amount} EUR for order {order} but nothing is on my account yet.",
            "How long does a refund take? The return of order {order} was accepted last week.",
            "My refund was only partial, I expected {amount} EUR back for the {product}.",
            "When will the money for the cancelled order {order} be paid back|reimbursed?",
        ),
    },
    "account_access": {
        "subject": ("Cannot log in", "Password reset not working", "Account locked", "Change my email address"),
        "body": (
            "I cannot log in|sign in to my account, the password reset email never arrives.",
            "My account has been locked|blocked after too many attempts, please unlock it.",
            "I want to change the email address on my account and delete the old one.",
            "The two-factor code is not sent to my phone, so I cannot access my account.",
            "Please delete|close my account and all my data, I no longer use the shop.",
        ),
    },
    "damaged_item": {
        "subject": ("Item arrived broken", "Damaged product", "Parcel crushed", "Missing parts"),
        "body": (
            "The {product} arrived broken|damaged, the box was crushed and the glass is cracked.",
            "Parts are missing from the {product} in order {order}, I cannot assemble it.",
            "The {product} was scratched|dented when I opened the parcel, I attach photos.",
            "The screen of the {product} was shattered on arrival, it must have been dropped.",
            "The {product} is stained|torn and clearly not new, I am very disappointed.",
        ),
    },
    "warranty_claim": {
        "subject": ("Warranty claim", "Product stopped working", "Repair under guarantee", "Faulty after a few months"),
        "body": (
            "My {product} stopped working|died after {days} days of use, is it still under warranty|guarantee?",
            "The {product} I bought last year has a fault, I would like a repair under the guarantee.",
            "The battery of the {product} no longer holds a charge after eight months, "
            "can it be replaced under warranty?",
            "The {product} makes a strange noise and then switches off, it is only six months old.",
            "How do I make a warranty claim for the {product}? It broke after normal use.",
        ),
    },
    "promotion_code": {
        "subject": ("Discount code not working", "Promo code rejected", "Voucher issue", "Missing loyalty points"),
        "body": (
            "My discount|promo code is rejected at checkout, it says the code is invalid|expired.",
            "I forgot to apply my voucher to order {order}, can you still give me the discount?",
            "The 20 percent sale price was not applied to the {product} in my basket.",
            "My loyalty points from order {order} were never added to my account.",
            "The newsletter code for free shipping does not work on the {product}.",
        ),
    },
    "complaint_feedback": {
        "subject": ("Very disappointed", "Complaint about your service", "Feedback", "Terrible experience"),
        "body": (
            "I am very unhappy|disappointed with how your staff treated me on the phone.",
            "This is the third time I contact you and nobody answers, your service is terrible|awful.",
            "I want to make a formal complaint about the way my issue was handled.",
            "Just some feedback: your new website design is confusing and hard to use.",
            "I have been a loyal customer for years but I will not order again after this.",
        ),
    },
}
VAGUE_SUBJECTS = ("Help", "Urgent", "Re: my order", "Question", "Still waiting", "Problem", "Follow-up")
VAGUE = (
    "It still doesn't work.",
    "Please help, same problem as before.",
    "Any update on this?",
    "I need help with my order {order}.",
    "Can someone call me back?",
    "Nothing has happened since my last message.",
)
QUOTED_SUPPORT = (
    "Thank you for contacting us. We have received your request and will get back to you within 48 hours.",
    "Could you please send us your order number and a photo of the item?",
    "We are sorry for the inconvenience. Your case has been forwarded to the relevant team.",
)
# Words that name no category on their own, for the topics of categories without hand-written phrases.
_TOPIC_WORDS = (
    "voucher",
    "gift card",
    "subscription",
    "membership",
    "bundle",
    "preorder",
    "marketplace seller",
    "installation",
    "assembly",
    "recycling",
    "packaging",
    "invoice copy",
    "loyalty tier",
    "student discount",
    "price match",
    "click and collect",
    "locker pickup",
    "express shipping",
    "customs fee",
    "spare part",
    "size guide",
    "care instructions",
    "engraving",
    "gift wrapping",
    "trade-in",
    "rental",
    "insurance",
    "extended warranty",
    "firmware",
    "pairing",
    "data export",
    "newsletter",
    "privacy request",
    "cookie settings",
    "affiliate programme",
    "business account",
    "bulk order",
    "backorder",
    "store credit",
    "wishlist",
)


def card_number(rng: np.random.Generator) -> str:
    """A 16-digit card number (Visa or Mastercard prefix) that passes the Luhn check."""
    prefix = str(rng.choice(["4", "51", "52", "53", "54", "55"]))
    body = prefix + "".join(str(d) for d in rng.integers(0, 10, 15 - len(prefix)))
    from stdnum import luhn

    return body + luhn.calc_check_digit(body)


def iban(rng: np.random.Generator) -> str:
    """An IBAN of a European country, valid in structure and checksum."""
    from stdnum.iban import calc_check_digits

    country = str(rng.choice(list(IBAN_FORMATS)))
    n = IBAN_FORMATS[country]
    letters = {"GB": 4, "NL": 4, "IT": 1}.get(country, 0)  # bank codes that start with letters
    bban = "".join(rng.choice(list(string.ascii_uppercase), letters)) + "".join(
        str(d) for d in rng.integers(0, 10, n - letters)
    )
    return f"{country}{calc_check_digits(country + '00' + bban)}{bban}"


def _group(text: str, size: int = 4) -> str:
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


def _phone(rng: np.random.Generator) -> str:
    d = "".join(str(x) for x in rng.integers(0, 10, 9))
    style = rng.integers(0, 4)
    if style == 0:
        return f"+44 7{d[:3]} {d[3:9]}"
    if style == 1:
        return f"07{d[:3]} {d[3:9]}"
    if style == 2:
        return f"+33 6 {d[:2]} {d[2:4]} {d[4:6]} {d[6:8]}"
    return f"(0{d[:3]}) {d[3:6]}-{d[6:9]}"


def generate_customers(config: WorldConfig) -> pl.DataFrame:
    """The CRM: who the customers are, with their contact details."""
    rng = np.random.default_rng([config.seed, 0])
    n = config.customers
    first = rng.choice(FIRST_NAMES, n)
    last = rng.choice(LAST_NAMES, n)
    city = rng.integers(0, len(CITIES), n)
    rows = []
    for i in range(n):
        domain = EMAIL_DOMAINS[rng.integers(0, len(EMAIL_DOMAINS))]
        local = f"{first[i]}.{last[i]}".lower().replace(" ", "") + (
            str(rng.integers(1, 99)) if rng.random() < 0.5 else ""
        )
        number = rng.integers(1, 240)  # drawn before the street: a seed keeps giving the same addresses
        street_name, street_type = (
            STREETS[rng.integers(0, len(STREETS))],
            STREET_TYPES[rng.integers(0, len(STREET_TYPES))],
        )
        street = f"{number} {street_name} {street_type}"
        rows.append(
            (
                f"C{i + 1:06d}",
                str(first[i]),
                str(last[i]),
                f"{local}@{domain}",
                _phone(rng),
                street,
                CITIES[city[i]][0],
                CITIES[city[i]][1],
            )
        )
    return pl.DataFrame(
        rows,
        schema=["customer_id", "first_name", "last_name", "email", "phone", "street", "city", "postcode"],
        orient="row",
    )


def category_phrases(category: str) -> dict[str, tuple[str, ...]]:
    """Hand-written phrases for the seed's categories; phrases built from the name for any other."""
    if category in PHRASES:
        return PHRASES[category]
    words = category.replace("_", " ").replace("-", " ")
    # A stable pair of topic words per name, so that many generic categories stay distinguishable.
    h = sum(ord(c) * (i + 1) for i, c in enumerate(category))
    topic = f"{words} ({_TOPIC_WORDS[h % len(_TOPIC_WORDS)]}, {_TOPIC_WORDS[(h // 7) % len(_TOPIC_WORDS)]})"
    return {
        "subject": (f"Question about {words}", f"{words.capitalize()} issue", f"Help with {words}"),
        "body": (
            f"I have a problem with {topic} for order {{order}}.",
            f"Could you help me with {topic}? It concerns the {{product}}.",
            f"I contact you about {topic}, nothing has been done for {{days}} days.",
            f"My request is about {topic}, please advise|help.",
        ),
    }


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(0, len(options)))]


def _synonyms(rng: np.random.Generator, text: str) -> str:
    """'send back|return' -> one of the words; applied to every word with alternatives."""

    def choose(word: str) -> str:
        if "|" not in word:
            return word
        core = word.rstrip(".,?!")
        return _pick(rng, core.split("|")) + word[len(core) :]

    return " ".join(choose(w) for w in text.split(" "))


def _typos(rng: np.random.Generator, text: str, rate: float) -> str:
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) > 3 and w.isalpha() and rng.random() < rate:
            j = int(rng.integers(1, len(w) - 1))
            kind = rng.integers(0, 3)
            if kind == 0:
                w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]  # swap
            elif kind == 1:
                w = w[:j] + w[j + 1 :]  # drop
            else:
                w = w[:j] + w[j] + w[j:]  # double
            words[i] = w
    return " ".join(words)


def _fill(rng: np.random.Generator, text: str, order: str) -> str:
    return _synonyms(rng, text).format(
        product=_pick(rng, PRODUCTS),
        order=order,
        days=int(rng.integers(2, 30)),
        amount=f"{rng.integers(15, 900)}.{rng.integers(0, 99):02d}",
    )


def _weights(n: int, skew: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** skew
    return w / w.sum()


def generate_month(
    config: WorldConfig,
    month: date,
    customers: pl.DataFrame,
    category_weights: Sequence[float] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The month's raw tickets and the agents' labels.

    `category_weights` overrides the category mix (drills: a drifting mix).
    """
    rng = np.random.default_rng([config.seed, month.year, month.month])
    n = config.tickets_per_month
    cats = config.categories
    weights = (
        np.asarray(category_weights, dtype=float)
        if category_weights is not None
        else _weights(len(cats), config.mix_skew)
    )
    true = rng.choice(len(cats), n, p=weights / weights.sum())
    next_month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    seconds = (
        datetime.combine(next_month, datetime.min.time()) - datetime.combine(month, datetime.min.time())
    ).total_seconds()
    offsets = np.sort(rng.uniform(0, seconds, n))
    cust_idx = rng.integers(0, customers.height, n)
    crm = customers.to_dicts()
    phrases = [category_phrases(c) for c in cats]
    tickets, labels = [], []
    for i in range(n):
        c = crm[cust_idx[i]]
        cat = int(true[i])
        created = datetime.combine(month, datetime.min.time()) + timedelta(seconds=float(offsets[i]))
        channel = CHANNELS[int(rng.choice(len(CHANNELS), p=CHANNEL_WEIGHTS))]
        order = f"ORD-{rng.integers(10_000_000, 99_999_999)}"
        ticket_id = f"T{month:%Y%m}-{i + 1:06d}"
        vague = rng.random() < config.vague_rate
        subject = _pick(rng, VAGUE_SUBJECTS) if vague else _fill(rng, _pick(rng, phrases[cat]["subject"]), order)
        body = _body(rng, config, c, cat, phrases, order, channel, vague)
        tickets.append((ticket_id, c["customer_id"], channel, created, subject, body, order))
        label = cat if rng.random() >= config.mislabel_rate else int(rng.integers(0, len(cats)))
        delay = timedelta(minutes=float(rng.gamma(2.0, 90.0)))
        labels.append((ticket_id, cats[label], f"A{int(rng.integers(1, 25)):03d}", created + delay))
    tickets_df = pl.DataFrame(
        tickets,
        schema=["ticket_id", "customer_id", "channel", "created_at", "subject", "body", "order_refs"],
        orient="row",
    ).with_columns(pl.col("created_at").cast(pl.Datetime("us")))
    labels_df = pl.DataFrame(
        labels, schema=["ticket_id", "category", "agent_id", "labelled_at"], orient="row"
    ).with_columns(pl.col("labelled_at").cast(pl.Datetime("us")))
    return tickets_df, labels_df


def _body(
    rng, config: WorldConfig, c: dict, cat: int, phrases: list[dict], order: str, channel: str, vague: bool
) -> str:
    full_name = f"{c['first_name']} {c['last_name']}"
    short = channel in ("chat", "mobile_app")
    parts: list[str] = []
    if not short:
        parts.append(_pick(rng, GREETINGS))
    if rng.random() < 0.3:
        parts.append(
            _pick(
                rng,
                (
                    f"My name is {full_name}.",
                    f"This is {c['first_name']} {c['last_name']} writing.",
                    f"I am {c['first_name']}.",
                ),
            )
        )
    if vague:
        problem = [_fill(rng, _pick(rng, VAGUE), order)]
    else:
        bank = phrases[cat]["body"]
        k = 1 if short else int(rng.integers(1, 3))
        problem = [_fill(rng, s, order) for s in rng.choice(bank, k, replace=False)]
    parts += [_typos(rng, p, config.typo_rate) for p in problem]
    if rng.random() < config.second_topic_rate and len(phrases) > 1:
        other = int(rng.integers(0, len(phrases) - 1))
        other += other >= cat
        aside = _lower_first(_fill(rng, _pick(rng, phrases[other]["body"]), order))
        parts.append(
            _pick(rng, ("Also,", "By the way,", "And one more thing:", "Unrelated, but"))
            + " "
            + _typos(rng, aside, config.typo_rate)
        )
    pii = rng.random(6)
    if pii[0] < 0.25:
        parts.append(f"You can call me on {c['phone']}.")
    if pii[1] < 0.2:
        parts.append(f"My e-mail is {c['email']} if you need it.")
    if pii[2] < 0.2:
        parts.append(f"My address is {c['street']}, {c['city']} {c['postcode']}.")
    if pii[3] < 0.12:
        parts.append(f"The card I used is {_group(card_number(rng))}.")
    if pii[4] < 0.1:
        parts.append(f"Please refund to my IBAN {_group(iban(rng))}.")
    parts.append(_pick(rng, POLITE))
    text = " ".join(p for p in parts if p)
    if not short and rng.random() < config.signature_rate:
        sig = [_pick(rng, SIGN_OFFS), full_name if rng.random() < 0.7 else c["first_name"]]
        if rng.random() < 0.5:
            sig.append(f"Tel: {c['phone']}")
        if rng.random() < 0.3:
            sig.append(c["email"])
        text += "\n\n" + "\n".join(sig)
    if not short and rng.random() < config.quoted_reply_rate:
        when = f"{int(rng.integers(1, 28))} {_pick(rng, ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun'))} 2026"
        quoted = f"Dear {c['first_name']},\n{_pick(rng, QUOTED_SUPPORT)}\nSupport team"
        text += f"\n\nOn {when}, Support <support@shop.example> wrote:\n" + "\n".join(
            "> " + line for line in quoted.splitlines()
        )
    if channel == "email" and rng.random() < config.html_rate:
        text = (
            "<html><body>"
            + "".join(f"<p>{line}</p>" if line else "<br>" for line in text.split("\n"))
            + "</body></html>"
        )
        text = text.replace(" ", "&nbsp;", 1)
    return text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def generic_categories(n: int) -> tuple[str, ...]:
    """`n` made-up categories (drills with a helpdesk of any size)."""
    names = [w.replace(" ", "_").replace("-", "_") for w in _TOPIC_WORDS]
    return tuple(names[i % len(names)] + ("" if i < len(names) else f"_{i // len(names) + 1}") for i in range(n))

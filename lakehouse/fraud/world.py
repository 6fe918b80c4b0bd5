"""A synthetic payments world: customers with cards, accounts (IBANs) and devices, merchants,
and one day of transactions at a time, with the fraud patterns a velocity model can catch.

Static entities come from the seed alone; each day is generated from (seed, day), so any
daily partition can be (re)built on its own and gives the same rows every time.

Fraud patterns (share of fraudulent transactions):
* card testing (30 %): a stolen card tries 4-12 small e-commerce payments within minutes from a
  fraudster's device and IP, then one or two large purchases;
* account takeover (25 %): a new device in a distant country sends 1-3 large transfers to a mule
  IBAN shared with other takeovers;
* amount anomaly (20 %): a stolen card pays 8-30x the customer's usual amount at a shop far from home;
* compromised merchant (25 %): within two hours, many cards pay a compromised merchant from a
  handful of shared devices.
Legitimate noise overlaps each signal: travel, new phones, big purchases, VPNs on flagged IPs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

# Transactions per day per named scale; full is the seed's 2M transactions/day.
SCALES = {"demo": 12_000, "full": 2_000_000}
TX_PER_CUSTOMER_DAY = 4.0
FULL_SCALE_FRAUD_RATE = 0.0008  # seed: 0.08 % of transactions
# At demo scale 0.08 % would leave about 10 frauds a day: too few to train and evaluate on,
# so the demo world raises the rate (and says so in its report).
DEMO_FRAUD_RATE = 0.01
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the synthetic payments world (never read by production code)."""

    tx_per_day: int = SCALES["demo"]
    days: int = 9
    end_date: date = date(2026, 11, 23)  # exclusive: the last generated day is the day before
    seed: int = 3
    fraud_rate: float = DEMO_FRAUD_RATE
    merchants_per_1k_tx: float = 40.0
    # 1.0 = fraud shows the patterns of the seed; 0.0 = fraud is a random label (gate drill).
    signal_strength: float = 1.0

    @classmethod
    def from_env(cls) -> WorldConfig:
        # LAKEHOUSE_SCALE is shared by every case (demo | full); the case's own variable also takes counts.
        shared = os.environ.get("LAKEHOUSE_SCALE", "demo")
        scale = os.environ.get("LAKEHOUSE_FRAUD_SCALE") or (shared if shared in SCALES else "demo")
        tx = int(scale) if scale.isdigit() else SCALES[scale]
        seed = int(os.environ.get("LAKEHOUSE_SEED", cls.seed))
        rate = FULL_SCALE_FRAUD_RATE if tx >= SCALES["full"] else DEMO_FRAUD_RATE
        return cls(tx_per_day=tx, seed=seed, fraud_rate=rate)

    def with_(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    @property
    def customers(self) -> int:
        return max(200, round(self.tx_per_day / TX_PER_CUSTOMER_DAY))

    @property
    def merchants(self) -> int:
        return max(50, round(self.tx_per_day / 1000 * self.merchants_per_1k_tx))

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days)

    @property
    def day_keys(self) -> list[str]:
        return [(self.start_date + timedelta(days=i)).isoformat() for i in range(self.days)]


CHANNELS = ("card_present", "ecommerce", "transfer")
CATEGORIES = ("grocery", "fashion", "electronics", "travel", "restaurant", "services", "gaming")
COUNTRIES = {
    "FR": (46.6, 2.4),
    "DE": (51.1, 10.4),
    "ES": (40.4, -3.7),
    "IT": (42.8, 12.5),
    "BE": (50.6, 4.5),
    "NL": (52.1, 5.3),
    "PT": (39.6, -8.0),
    "GB": (54.0, -2.0),
    "US": (39.0, -98.0),
    "NG": (9.0, 8.0),
    "RU": (61.0, 105.0),
    "BR": (-10.0, -52.0),
    "CN": (35.0, 104.0),
    "RO": (45.9, 24.9),
}
HOME_COUNTRIES = ("FR", "DE", "ES", "IT", "BE", "NL")
HOME_WEIGHTS = (0.75, 0.07, 0.06, 0.05, 0.04, 0.03)
TRAVEL_COUNTRIES = ("ES", "IT", "DE", "PT", "GB", "US", "NL")
FRAUD_COUNTRIES = ("NG", "RU", "BR", "CN", "RO", "US")
FRAUD_COUNTRY_WEIGHTS = (0.25, 0.2, 0.15, 0.15, 0.15, 0.1)
PATTERN_SHARES = {"card_testing": 0.30, "account_takeover": 0.25, "amount_anomaly": 0.20, "compromised_merchant": 0.25}


def _iban(country: str, n: int) -> str:
    return f"{country}76{n:020d}"


@dataclass
class Entities:
    """The static world (from the seed only)."""

    customers: pl.DataFrame  # customer_id, home_country, home_lat, home_lon, account_iban
    cards: pl.DataFrame  # card_id, customer_id
    merchants: pl.DataFrame  # merchant_id, country, category, settlement_iban, lat, lon
    # internals of the simulation
    activity: np.ndarray
    typical_amount: np.ndarray
    devices: list[list[str]]
    home_ip: list[str]
    card_of: list[str]
    popularity: np.ndarray
    compromised: np.ndarray  # merchant indexes
    fraud_ips: list[str]
    mule_ibans: list[str]


def build_entities(config: WorldConfig) -> Entities:
    rng = np.random.default_rng([config.seed, 0])
    n_c, n_m = config.customers, config.merchants
    home = rng.choice(len(HOME_COUNTRIES), size=n_c, p=HOME_WEIGHTS)
    home_country = [HOME_COUNTRIES[i] for i in home]
    centre = np.array([COUNTRIES[c] for c in home_country])
    home_xy = centre + rng.normal(0, 1.2, size=(n_c, 2))
    customer_ids = [f"C{i:07d}" for i in range(n_c)]
    customers = pl.DataFrame(
        {
            "customer_id": customer_ids,
            "home_country": home_country,
            "home_lat": home_xy[:, 0].round(4),
            "home_lon": home_xy[:, 1].round(4),
            "account_iban": [_iban(c, i) for i, c in enumerate(home_country)],
        }
    )
    n_devices = rng.integers(1, 3, size=n_c)
    devices = [[f"D{i:07d}{k}" for k in range(n)] for i, n in enumerate(n_devices)]
    home_ip = [f"81.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(n_c)]
    card_of = [f"K{i:07d}" for i in range(n_c)]
    cards = pl.DataFrame({"card_id": card_of, "customer_id": customer_ids})
    m_country = rng.choice(len(HOME_COUNTRIES), size=n_m, p=HOME_WEIGHTS)
    m_country_code = [HOME_COUNTRIES[i] for i in m_country]
    m_xy = np.array([COUNTRIES[c] for c in m_country_code]) + rng.normal(0, 1.2, size=(n_m, 2))
    merchants = pl.DataFrame(
        {
            "merchant_id": [f"M{i:06d}" for i in range(n_m)],
            "country": m_country_code,
            "category": [CATEGORIES[i] for i in rng.integers(0, len(CATEGORIES), size=n_m)],
            "settlement_iban": [_iban(c, 10**9 + i) for i, c in enumerate(m_country_code)],
            "lat": m_xy[:, 0].round(4),
            "lon": m_xy[:, 1].round(4),
        }
    )
    popularity = 1.0 / np.arange(1, n_m + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    activity = rng.lognormal(0, 0.6, size=n_c)
    activity = activity / activity.mean() * TX_PER_CUSTOMER_DAY
    typical = rng.lognormal(np.log(35.0), 0.5, size=n_c)
    compromised = rng.choice(n_m, size=max(3, n_m // 20), replace=False)
    fraud_ips = [f"185.{i // 256}.{i % 256}.7" for i in range(60)]
    mule_ibans = [_iban("LT", 7 * 10**9 + i) for i in range(30)]
    return Entities(
        customers,
        cards,
        merchants,
        activity,
        typical,
        devices,
        home_ip,
        card_of,
        popularity,
        compromised,
        fraud_ips,
        mule_ibans,
    )


def _day_start_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


class _Rows:
    """Column buffers for one day of transactions."""

    COLUMNS = (
        "ts",
        "customer",
        "merchant",
        "channel",
        "amount",
        "device_id",
        "ip",
        "payee_iban",
        "country",
        "lat",
        "lon",
        "is_fraud",
        "fraud_pattern",
    )

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in self.COLUMNS}

    def add(self, **values) -> None:
        for c in self.COLUMNS:
            self.cols[c].append(values.get(c))


ROW_SCHEMA = {
    "ts": pl.Int64,
    "customer": pl.Int64,
    "merchant": pl.Int64,
    "channel": pl.String,
    "amount": pl.Float64,
    "device_id": pl.String,
    "ip": pl.String,
    "payee_iban": pl.String,
    "country": pl.String,
    "lat": pl.Float64,
    "lon": pl.Float64,
    "is_fraud": pl.Boolean,
    "fraud_pattern": pl.String,
}


def generate_day(config: WorldConfig, day: date, entities: Entities | None = None) -> pl.DataFrame:
    """One day of transactions, sorted by time, with ids `T<yyyymmdd><n>`."""
    e = entities or build_entities(config)
    rng = np.random.default_rng([config.seed, day.toordinal()])
    start = _day_start_ms(day)
    frauds = round(config.tx_per_day * config.fraud_rate)
    patterned = round(frauds * config.signal_strength)
    legit_target = config.tx_per_day - patterned
    counts = rng.poisson(e.activity * legit_target / e.activity.sum())
    cust = np.repeat(np.arange(config.customers), counts)
    n = cust.size
    hours = rng.choice(24, size=n, p=_hour_profile())
    ts = start + hours * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    channel = rng.choice(3, size=n, p=[0.5, 0.4, 0.1])
    merchant = rng.choice(len(e.popularity), size=n, p=e.popularity)
    amount = e.typical_amount[cust] * rng.lognormal(0, 0.7, size=n)
    amount = np.where(channel == 2, amount * 3, amount)
    amount = np.where(rng.random(n) < 0.02, amount * 8, amount)
    travelling = rng.random(config.customers) < 0.03
    travel_to = rng.integers(0, len(TRAVEL_COUNTRIES), size=config.customers)
    new_device = rng.random(n) < 0.015
    ip_draw = rng.random(n)
    legit = _legit_rows(
        e, day, cust, ts, channel, merchant, amount, travelling[cust], travel_to[cust], new_device, ip_draw
    )
    rows = _Rows()
    _add_fraud(rows, rng, e, config, start, patterned)
    df = pl.concat([legit, pl.DataFrame(rows.cols, schema=ROW_SCHEMA)])
    if patterned < frauds:  # signal_strength < 1: the rest of the fraud is a random label
        flip = rng.choice(n, size=frauds - patterned, replace=False)
        mask = np.zeros(df.height, dtype=bool)
        mask[flip] = True
        df = df.with_columns(
            is_fraud=pl.col("is_fraud") | pl.Series(mask),
            fraud_pattern=pl.when(pl.Series(mask)).then(pl.lit("random")).otherwise(pl.col("fraud_pattern")),
        )
    return _finish(df, e, day, start)


def _legit_rows(
    e: Entities,
    day: date,
    cust: np.ndarray,
    ts: np.ndarray,
    channel: np.ndarray,
    merchant: np.ndarray,
    amount: np.ndarray,
    travelling: np.ndarray,
    travel_to: np.ndarray,
    new_device: np.ndarray,
    ip_draw: np.ndarray,
) -> pl.DataFrame:
    """The day's legitimate payments (column by column, so that the seed's full scale stays fast): travellers
    pay from abroad, online payments from home with the customer's devices and IPs (a few new devices, VPN
    exits shared with fraudsters, other networks), card-present ones where the merchant is."""
    n = cust.size
    row = np.arange(n)
    online = channel != 0
    travel_xy = np.array([COUNTRIES[c] for c in TRAVEL_COUNTRIES]) + 0.1
    lat = np.where(
        travelling,
        travel_xy[travel_to, 0],
        np.where(online, e.customers["home_lat"].to_numpy()[cust], e.merchants["lat"].to_numpy()[merchant]),
    )
    lon = np.where(
        travelling,
        travel_xy[travel_to, 1],
        np.where(online, e.customers["home_lon"].to_numpy()[cust], e.merchants["lon"].to_numpy()[merchant]),
    )
    devices_of = np.array([len(d) for d in e.devices])[cust]
    usual_device = pl.format("D{}{}", pl.col("customer").cast(pl.String).str.zfill(7), pl.lit(row % devices_of))
    other_network = pl.format("92.{}.{}.{}", pl.lit(row // 65536 % 256), pl.lit(row // 256 % 256), pl.lit(row % 256))
    payee_customer = e.customers["account_iban"].gather((cust + 1) % e.customers.height)
    frame = pl.DataFrame(
        {
            "ts": ts.astype(np.int64),
            "customer": cust.astype(np.int64),
            "merchant": merchant.astype(np.int64),
            "channel": pl.Series(CHANNELS).gather(channel),
            "amount": amount.astype(np.float64),
            "online": online,
            "new_device": new_device,
            "ip_draw": ip_draw,
            "fraud_ip": pl.Series(e.fraud_ips).gather(row % len(e.fraud_ips)),
            "home_ip": pl.Series(e.home_ip).gather(cust),
            "payee_iban": pl.select(
                pl.when(pl.Series(channel == 2))
                .then(payee_customer)
                .otherwise(e.merchants["settlement_iban"].gather(merchant))
            ).to_series(),
            "country": pl.select(
                pl.when(pl.Series(travelling))
                .then(pl.Series(TRAVEL_COUNTRIES).gather(travel_to))
                .when(pl.Series(online))
                .then(e.customers["home_country"].gather(cust))
                .otherwise(e.merchants["country"].gather(merchant))
            ).to_series(),
            "lat": lat.astype(np.float64),
            "lon": lon.astype(np.float64),
        }
    )
    return frame.select(
        "ts",
        "customer",
        "merchant",
        "channel",
        "amount",
        device_id=pl.when(~pl.col("online"))
        .then(None)
        .when(pl.col("new_device"))
        .then(pl.format("N{}{}", pl.lit(f"{day:%Y%m%d}"), pl.lit(pl.Series(row))))
        .otherwise(usual_device),
        ip=pl.when(~pl.col("online"))
        .then(None)
        .when(pl.col("ip_draw") < 0.005)
        .then(pl.col("fraud_ip"))
        .when(pl.col("ip_draw") < 0.035)
        .then(other_network)
        .otherwise(pl.col("home_ip")),
        payee_iban="payee_iban",
        country="country",
        lat="lat",
        lon="lon",
        is_fraud=pl.lit(False),
        fraud_pattern=pl.lit(None, dtype=pl.String),
    ).cast(ROW_SCHEMA)


def _hour_profile() -> np.ndarray:
    w = np.array(
        [
            0.3,
            0.2,
            0.15,
            0.1,
            0.1,
            0.2,
            0.5,
            0.9,
            1.2,
            1.3,
            1.4,
            1.5,
            1.7,
            1.5,
            1.3,
            1.3,
            1.4,
            1.6,
            1.8,
            1.7,
            1.4,
            1.1,
            0.8,
            0.5,
        ]
    )
    return w / w.sum()


def _add_fraud(rows: _Rows, rng: np.random.Generator, e: Entities, config: WorldConfig, start: int, total: int) -> None:
    n_c, n_m = config.customers, len(e.popularity)
    m_lat, m_lon = e.merchants["lat"].to_numpy(), e.merchants["lon"].to_numpy()
    m_country = e.merchants["country"].to_list()
    m_iban = e.merchants["settlement_iban"].to_list()
    home_lat, home_lon = e.customers["home_lat"].to_numpy(), e.customers["home_lon"].to_numpy()
    home_country = e.customers["home_country"].to_list()
    today_compromised = rng.choice(e.compromised, size=min(2, e.compromised.size), replace=False)
    counter = [0]

    def fraud_device() -> str:
        counter[0] += 1
        return f"F{start // 1000}{counter[0]}{int(rng.integers(0, 10**6))}"

    def fraud_country() -> str:
        return FRAUD_COUNTRIES[rng.choice(len(FRAUD_COUNTRIES), p=FRAUD_COUNTRY_WEIGHTS)]

    def when(span_ms: int) -> int:
        return start + int(rng.integers(0, DAY_MS - span_ms))

    for pattern, share in PATTERN_SHARES.items():
        quota = round(total * share)
        made = 0
        while made < quota:
            c = int(rng.integers(0, n_c))
            if pattern == "card_testing":
                t = when(40 * MINUTE_MS)
                device, ip, country = (
                    fraud_device(),
                    e.fraud_ips[int(rng.integers(0, len(e.fraud_ips)))],
                    fraud_country(),
                )
                lat, lon = COUNTRIES[country]
                k = int(rng.integers(4, 13))
                for j in range(k + int(rng.integers(1, 3))):
                    t += int(rng.exponential(15_000)) + 1
                    m = int(rng.integers(0, n_m))
                    small = j < k
                    amount = float(rng.uniform(0.5, 4.99)) if small else float(rng.uniform(150, 1200))
                    rows.add(
                        ts=t,
                        customer=c,
                        merchant=m,
                        channel="ecommerce",
                        amount=amount,
                        device_id=device,
                        ip=ip,
                        payee_iban=m_iban[m],
                        country=country,
                        lat=lat,
                        lon=lon,
                        is_fraud=True,
                        fraud_pattern=pattern,
                    )
                    made += 1
            elif pattern == "account_takeover":
                t = when(3 * 60 * MINUTE_MS)
                device = fraud_device()
                ip = (
                    e.fraud_ips[int(rng.integers(0, len(e.fraud_ips)))]
                    if rng.random() < 0.6
                    else f"45.{int(rng.integers(0, 256))}.{int(rng.integers(0, 256))}.9"
                )
                country = fraud_country() if rng.random() < 0.7 else home_country[c]
                lat, lon = COUNTRIES[country] if country != home_country[c] else (home_lat[c] + 6.0, home_lon[c] + 6.0)
                mule = e.mule_ibans[int(rng.integers(0, len(e.mule_ibans)))]
                for _ in range(int(rng.integers(1, 4))):
                    t += int(rng.exponential(5 * MINUTE_MS)) + 1
                    rows.add(
                        ts=t,
                        customer=c,
                        merchant=int(rng.integers(0, n_m)),
                        channel="transfer",
                        amount=float(rng.uniform(400, 3000)),
                        device_id=device,
                        ip=ip,
                        payee_iban=mule,
                        country=country,
                        lat=float(lat),
                        lon=float(lon),
                        is_fraud=True,
                        fraud_pattern=pattern,
                    )
                    made += 1
            elif pattern == "amount_anomaly":
                t = when(3 * 60 * MINUTE_MS)
                for _ in range(int(rng.integers(1, 4))):
                    t += int(rng.exponential(20 * MINUTE_MS)) + 1
                    m = int(rng.integers(0, n_m))
                    rows.add(
                        ts=t,
                        customer=c,
                        merchant=m,
                        channel="card_present",
                        amount=float(e.typical_amount[c] * rng.uniform(8, 30)),
                        device_id=None,
                        ip=None,
                        payee_iban=m_iban[m],
                        country=m_country[m],
                        lat=float(m_lat[m]) + 3.0,
                        lon=float(m_lon[m]) + 3.0,
                        is_fraud=True,
                        fraud_pattern=pattern,
                    )
                    made += 1
            else:  # compromised merchant
                m = int(today_compromised[int(rng.integers(0, today_compromised.size))])
                t0 = when(2 * 60 * MINUTE_MS)
                shared = [fraud_device() for _ in range(3)]
                ip = e.fraud_ips[int(rng.integers(0, len(e.fraud_ips)))] if rng.random() < 0.5 else None
                for victim in rng.integers(0, n_c, size=int(rng.integers(5, 16))):
                    rows.add(
                        ts=t0 + int(rng.integers(0, 2 * 60 * MINUTE_MS)),
                        customer=int(victim),
                        merchant=m,
                        channel="ecommerce",
                        amount=float(rng.uniform(80, 600)),
                        device_id=shared[int(rng.integers(0, 3))],
                        ip=ip or f"45.1.{int(victim) % 256}.3",
                        payee_iban=m_iban[m],
                        country=m_country[m],
                        lat=float(m_lat[m]),
                        lon=float(m_lon[m]),
                        is_fraud=True,
                        fraud_pattern=pattern,
                    )
                    made += 1


def _finish(df: pl.DataFrame, e: Entities, day: date, start: int) -> pl.DataFrame:
    customer_ids = e.customers["customer_id"]
    merchant_ids = e.merchants["merchant_id"]
    df = df.with_columns(pl.col("ts").clip(start, start + DAY_MS - 1))
    # one customer never pays twice in the same millisecond (profile features rely on the order)
    for _ in range(3):
        df = df.with_columns(ts=pl.col("ts") + pl.int_range(pl.len()).over(["customer", "ts"]))
    df = df.with_columns(pl.col("ts").clip(start, start + DAY_MS - 1)).sort(["ts", "customer", "amount"])
    return df.select(
        tx_id=pl.format("T{}{}", pl.lit(f"{day:%Y%m%d}"), pl.int_range(pl.len()).cast(pl.String).str.zfill(7)),
        ts=pl.col("ts").cast(pl.Datetime("ms")),
        customer_id=customer_ids.gather(df["customer"]),
        card_id=pl.lit("K") + customer_ids.gather(df["customer"]).str.slice(1),
        merchant_id=merchant_ids.gather(df["merchant"]),
        channel=pl.col("channel"),
        amount=pl.col("amount").round(2).clip(0.01, None),
        category=e.merchants["category"].gather(df["merchant"]),
        device_id=pl.col("device_id"),
        ip=pl.col("ip"),
        payee_iban=pl.col("payee_iban"),
        country=pl.col("country"),
        lat=pl.col("lat").round(4),
        lon=pl.col("lon").round(4),
        customer_lat=e.customers["home_lat"].gather(df["customer"]),
        customer_lon=e.customers["home_lon"].gather(df["customer"]),
        is_fraud=pl.col("is_fraud"),
        fraud_pattern=pl.col("fraud_pattern"),
    )


def generate_days(config: WorldConfig, days: list[str] | None = None) -> pl.DataFrame:
    entities = build_entities(config)
    keys = days or config.day_keys
    return pl.concat([generate_day(config, date.fromisoformat(k), entities) for k in keys])

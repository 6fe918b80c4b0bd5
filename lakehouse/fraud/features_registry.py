"""The one feature registry of the fraud case: every feature declared once, by `build_registry`
from the feature settings, and computed two ways: `features_batch` over a transaction history
with Polars (training, evaluation, batch scoring), `features_online` from the facts the Redis
store keeps (the decision service). Semantics shared by both, for a transaction at time t (ms):

* window features of an entity (customer, card, merchant, device, IP, payee IBAN) aggregate
  that entity's earlier transactions with t - window <= ts < t (exact sliding windows);
* history features of a merchant or a category cover whole UTC days before the day of t:
  activity (payments, mean amount) over the last n days, and fraud (known frauds, fraud
  rate) over the n days ending `label_delay_days` before it, so that only labels known at t
  count: a label arriving after t never changes a feature at t;
* profile features of the customer aggregate every earlier transaction of the customer
  (order: time, then transaction id), e.g. mean and spread of amounts, devices, IPs and
  countries seen before, distance and speed from the previous located payment;
* a missing optional column (device, IP, IBAN, country, category, geography) removes the
  features that need it; a null value gives the feature's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

from lakehouse.fraud.settings import FeatureSettings, FraudSettings

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_GAP_S = 30 * 86400.0

# entity -> column; the payee IBAN is an entity of transfers only (mule accounts)
ENTITIES: dict[str, str] = {
    "customer": "customer_id",
    "card": "card_id",
    "merchant": "merchant_id",
    "device": "device_id",
    "ip": "ip",
    "iban": "payee_iban",
}
DISTINCT_OF: dict[str, tuple[str, ...]] = {
    "customer": ("merchant_id", "country", "device_id", "ip"),
    "card": ("merchant_id",),
    "merchant": ("card_id",),
    "device": ("customer_id",),
    "ip": ("customer_id",),
    "iban": ("customer_id",),
}
# Heavy entity (a popular merchant has thousands of events an hour): its exact windows are read for layer 3 only.
LAYER3_ONLY_ENTITIES = ("merchant",)
HISTORY_ENTITIES: dict[str, str] = {"merchant": "merchant_id", "category": "category"}
OPTIONAL_COLUMNS = (
    "device_id",
    "ip",
    "payee_iban",
    "country",
    "category",
    "lat",
    "lon",
    "customer_lat",
    "customer_lon",
)
AGGREGATES = ("count", "sum", "max", "mean", "small")
HISTORY_AGGREGATES = ("count", "mean", "frauds", "fraud_rate")  # frauds and fraud_rate over the label-delayed days


def _window_label(ms: int) -> str:
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    if ms % MINUTE_MS == 0:
        return f"{ms // MINUTE_MS}m"
    return f"{ms // 1000}s"


def _needs(*columns: str | None) -> frozenset[str]:
    return frozenset(c for c in columns if c) & frozenset(OPTIONAL_COLUMNS)


@dataclass(frozen=True)
class WindowFeature:
    name: str
    entity: str
    window_ms: int
    aggregate: str  # count | sum | max | mean | small | distinct
    of: str | None = None  # the column counted by `distinct`

    @property
    def needs(self) -> frozenset[str]:
        return _needs(ENTITIES[self.entity], self.of)


@dataclass(frozen=True)
class HistoryFeature:
    name: str
    entity: str  # merchant | category
    days: int
    aggregate: str  # count | mean | frauds | fraud_rate

    @property
    def needs(self) -> frozenset[str]:
        return _needs(HISTORY_ENTITIES[self.entity])

    @property
    def delayed(self) -> bool:
        return self.aggregate in ("frauds", "fraud_rate")


@dataclass(frozen=True)
class RowFeature:
    """A feature of the transaction itself or of the customer's profile."""

    name: str
    needs: frozenset[str] = frozenset()
    daily_constant: bool = False  # the same for every payment of a day (the weekday): no daily distribution to compare


@dataclass(frozen=True)
class RatioFeature:
    """This amount against a mean of the entity's history (1 when there is none)."""

    name: str
    mean: str  # the feature holding the mean
    needs: frozenset[str] = frozenset()


TX_FEATURES = (
    RowFeature("amount"),
    RowFeature("log_amount"),
    RowFeature("hour"),
    RowFeature("weekday", daily_constant=True),
    RowFeature("is_ecommerce"),
    RowFeature("is_transfer"),
    RowFeature("is_small"),
    RowFeature("has_device", _needs("device_id")),
    RowFeature("has_ip", _needs("ip")),
    RowFeature("home_dist_km", _needs("lat", "lon", "customer_lat", "customer_lon")),
)
PROFILE_FEATURES = (
    RowFeature("cust_tx_before"),
    RowFeature("cust_mean_amount"),
    RowFeature("cust_std_amount"),
    RowFeature("amount_z"),
    RowFeature("amount_ratio_mean"),
    RowFeature("secs_since_prev"),
    RowFeature("new_device", _needs("device_id")),
    RowFeature("new_ip", _needs("ip")),
    RowFeature("new_country", _needs("country")),
    RowFeature("dist_prev_km", _needs("lat", "lon")),
    RowFeature("speed_kmh", _needs("lat", "lon")),
)


@dataclass(frozen=True)
class Registry:
    """Every feature, from the feature settings and the channel roles."""

    settings: FeatureSettings
    ecommerce_channels: tuple[str, ...]
    transfer_channels: tuple[str, ...]
    timezone: str
    windows: tuple[WindowFeature, ...]
    history: tuple[HistoryFeature, ...]
    ratios: tuple[RatioFeature, ...]
    rows: tuple[RowFeature, ...] = TX_FEATURES + PROFILE_FEATURES
    by_entity_window: dict[tuple[str, int], tuple[WindowFeature, ...]] = field(
        default_factory=dict, compare=False, hash=False
    )

    @cached_property
    def all(self) -> tuple[WindowFeature | HistoryFeature | RowFeature | RatioFeature, ...]:
        return (*self.rows, *self.windows, *self.history, *self.ratios)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.all)

    @cached_property
    def by_name(self) -> dict[str, WindowFeature | HistoryFeature | RowFeature | RatioFeature]:
        return {f.name: f for f in self.all}

    @cached_property
    def defaults(self) -> dict[str, float]:
        ones = {f.name for f in self.ratios} | {"amount_ratio_mean"}
        return {f.name: 1.0 if f.name in ones else 0.0 for f in self.all} | {"secs_since_prev": MAX_GAP_S}

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def label_delay(self) -> int:
        return self.settings.label_delay_days

    @cached_property
    def history_span(self) -> int:
        """Days before the payment's day that history features reach (the longest window plus the label delay)."""
        return max(self.settings.history_days) + self.label_delay

    @cached_property
    def horizons(self) -> dict[str, int]:
        """How far back each entity's events are kept and read."""
        return {e: max(f.window_ms for f in self.windows if f.entity == e) for e in ENTITIES}

    def horizon_ms(self, entity: str) -> int:
        return self.horizons[entity]

    @cached_property
    def plans(self) -> dict:
        """(names, entities) -> what `online_features` computes for them, built once per pair."""
        return {}

    def reach_days(self, name: str) -> int:
        """Whole days before a payment that a feature's value depends on (0: the payment and the customer's profile)."""
        f = self.by_name[name]
        if isinstance(f, WindowFeature):
            return math.ceil(f.window_ms / DAY_MS)
        if isinstance(f, HistoryFeature):
            return f.days + (self.label_delay if f.delayed else 0)
        if isinstance(f, RatioFeature):
            return self.reach_days(f.mean)
        return 0

    def not_comparable_daily(self, names, history_days: int) -> dict[str, str]:
        """Of `names` (other names than this registry's are ignored), those whose distribution over a window starting
        `history_days` days after the first day of data cannot be compared with one later day's, and why: features
        constant over a day, the category's whole-day history (a day holds one value per category, a handful of
        point masses that any seasonal change in volume moves all at once), and windows that reach back before the
        data (still filling up, so their values grow with the history whatever the traffic does)."""
        names = [n for n in names if n in self.by_name]
        out = {
            n: "the same for every payment of a day"
            for n in names
            if isinstance(self.by_name[n], RowFeature) and self.by_name[n].daily_constant
        }
        out |= {
            n: "one value per category and day"
            for n in names
            if isinstance(self.by_name[n], HistoryFeature) and self.by_name[n].entity == "category"
        }
        for n in names:
            if n not in out and (reach := self.reach_days(n)) > history_days:
                out[n] = (
                    f"reaches {reach} days back; the reference starts {history_days} days after the first day of data"
                )
        return out

    def available(self, columns) -> tuple[str, ...]:
        """Names of the features computable when the data has these columns."""
        present = set(columns)
        return tuple(f.name for f in self.all if f.needs <= present)

    def window_entities(self, names) -> tuple[str, ...]:
        wanted = set(names)
        return tuple(e for e in ENTITIES if any(f.entity == e and f.name in wanted for f in self.windows))

    @cached_property
    def layer2(self) -> tuple[str, ...]:
        """The light features of layer 2 (seed: about 50; velocity, amount vs history, geography,
        device, merchant and category history), all read in the first round trip."""
        one_day = DAY_MS
        short = {f.window_ms for f in self.windows if f.window_ms <= 15 * MINUTE_MS}
        picked = [f.name for f in self.rows] + [f.name for f in self.ratios]
        for f in self.windows:
            w, a, e = f.window_ms, f.aggregate, f.entity
            if (
                (
                    e == "customer"
                    and (a == "count" or (a == "mean" and w >= one_day) or (a == "sum" and HOUR_MS <= w <= one_day))
                )
                or (e == "customer" and a == "distinct" and w == one_day)
                or (e == "card" and a in ("count", "small") and w in short)
                or (e in ("device", "ip", "iban") and a in ("count", "distinct") and w in (HOUR_MS, one_day))
            ):
                picked.append(f.name)
        longest = max(self.settings.history_days)
        picked += [
            f.name
            for f in self.history
            if f.aggregate in ("count", "fraud_rate") or (f.aggregate == "mean" and f.days == longest)
        ]
        return tuple(n for n in self.names if n in set(picked))

    def spec(self) -> dict:
        """What a model stores to rebuild this registry (see `registry_from_spec`)."""
        return {
            "features": self.settings.model_dump(mode="json"),
            "ecommerce_channels": list(self.ecommerce_channels),
            "transfer_channels": list(self.transfer_channels),
            "timezone": self.timezone,
        }


@lru_cache(maxsize=16)
def build_registry(
    settings: FeatureSettings, ecommerce_channels: tuple[str, ...], transfer_channels: tuple[str, ...], timezone: str
) -> Registry:
    def ms(windows) -> list[int]:
        return [round(w.total_seconds() * 1000) for w in windows]

    by_entity = {e: ms(settings.windows) for e in ENTITIES}
    by_entity["customer"] = sorted(set(by_entity["customer"]) | set(ms(settings.customer_windows)))
    by_entity["merchant"] = ms(settings.merchant_windows)
    windows = []
    for entity, lengths in by_entity.items():
        for w in lengths:
            label = _window_label(w)
            windows += [WindowFeature(f"{entity}_{agg}_{label}", entity, w, agg) for agg in AGGREGATES]
            windows += [
                WindowFeature(f"{entity}_distinct_{of.removesuffix('_id')}_{label}", entity, w, "distinct", of)
                for of in DISTINCT_OF[entity]
            ]
    history = [
        HistoryFeature(f"{entity}_hist_{agg}_{d}d", entity, d, agg)
        for entity in HISTORY_ENTITIES
        for d in settings.history_days
        for agg in HISTORY_AGGREGATES
    ]
    ratios = [
        RatioFeature(f"amount_vs_customer_{_window_label(w)}", f"customer_mean_{_window_label(w)}")
        for w in by_entity["customer"]
        if w >= DAY_MS
    ]
    longest = max(settings.history_days)
    ratios.append(RatioFeature(f"amount_vs_merchant_{longest}d", f"merchant_hist_mean_{longest}d"))
    grouped: dict[tuple[str, int], list[WindowFeature]] = {}
    for f in windows:
        grouped.setdefault((f.entity, f.window_ms), []).append(f)
    return Registry(
        settings,
        ecommerce_channels,
        transfer_channels,
        timezone,
        tuple(windows),
        tuple(history),
        tuple(ratios),
        by_entity_window={k: tuple(v) for k, v in grouped.items()},
    )


def registry_for(settings: FraudSettings) -> Registry:
    return build_registry(
        settings.features, tuple(settings.ecommerce_channels), tuple(settings.transfer_channels), settings.hour_timezone
    )


def registry_from_spec(spec: dict) -> Registry:
    return build_registry(
        FeatureSettings.model_validate(spec["features"]),
        tuple(spec["ecommerce_channels"]),
        tuple(spec["transfer_channels"]),
        spec["timezone"],
    )

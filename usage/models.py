"""What the site stores: usage records posted by desktop apps, the API tokens they use,
rollups of the records (and the records not counted into them yet), model prices, the
plugin-generation ledger and the audit log."""

from django.conf import settings
from django.db import models
from django.utils import timezone

MODEL_NAME_MAX_LENGTH = 100
EVENT_ID_MAX_LENGTH = 100
MAX_IMAGE_COUNT = 10_000
# What every raw API token starts with, so that a leaked one is recognisable (and greppable).
TOKEN_SCHEME = "usg_"


class ApiToken(models.Model):
    """A bearer token for the API. Only a hash of the secret is stored (see ``usage.tokens``)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Where it was last used from: the client address at the last ``last_used_at`` update.
    last_used_address = models.CharField(max_length=45, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When its owner took it off their list (only a revoked token can be). The row stays:
    # records, the per-device figures and the audit log still refer to it.
    removed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.display_prefix} ({self.name})"

    @property
    def display_prefix(self) -> str:
        return f"{TOKEN_SCHEME}{self.prefix}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class UsageRecord(models.Model):
    """One generation in a desktop app: which model made how many images, for whom, when."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="usage_records",
        # The (owner, occurred_at) index below serves every lookup by owner.
        db_index=False,
    )
    model = models.CharField(max_length=MODEL_NAME_MAX_LENGTH)
    image_count = models.PositiveIntegerField()
    occurred_at = models.DateTimeField(help_text="When it happened, by the client's clock.")
    received_at = models.DateTimeField(help_text="When the server stored it.")
    # NULL, not "", for "no id": NULLs never collide in the unique constraint below.
    event_id = models.CharField(  # noqa: DJ001
        max_length=EVENT_ID_MAX_LENGTH,
        null=True,
        blank=True,
        help_text="The client's idempotency key, unique per owner.",
    )
    token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="records"
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # NULL event ids never conflict, on PostgreSQL and SQLite alike.
            models.UniqueConstraint(fields=["owner", "event_id"], name="usage_record_owner_event"),
            models.CheckConstraint(
                condition=models.Q(image_count__gte=1, image_count__lte=MAX_IMAGE_COUNT),
                name="usage_record_image_count_range",
            ),
        ]
        indexes = [
            # "One user's records in a time range, newest first" and the keyset cursor.
            models.Index(fields=["owner", "-occurred_at", "-id"], name="usage_record_owner_time"),
        ]

    def __str__(self) -> str:
        return f"{self.model} x{self.image_count} @ {self.occurred_at:%Y-%m-%d %H:%M}"


# What a rollup row's token_id holds for records sent without a token (or whose token
# field is empty): the API's own records always have one, records loaded otherwise may not.
NO_TOKEN = 0


def token_dimension() -> models.BigIntegerField:
    """The rollups' token column: the id of the ``ApiToken`` that sent the records, or
    ``NO_TOKEN``. A plain integer, not a foreign key: NOT NULL so that it can be in the
    primary key, and without a constraint so that nothing done to a token (revoking it,
    hiding it) ever has to touch the rollups."""
    return models.BigIntegerField(
        default=NO_TOKEN, help_text="The API token that sent the records; 0 for none."
    )


class UsageRollup(models.Model):
    """One owner's images and generations with one model and one API token in one UTC hour,
    split by quarter.

    Kept in step with ``UsageRecord`` in the same transaction as each insert
    (``usage.rollups``), so that summaries cost what their date range costs, not what the
    table holds. Every zone in use today is offset from UTC by a multiple of 15 minutes, so
    a local midnight never falls inside a quarter of a UTC hour: the quarters keep days
    exact in India (+05:30), Nepal (+05:45) or Newfoundland (-03:30) as well.
    """

    pk = models.CompositePrimaryKey("owner", "hour", "model", "token_id")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hour = models.DateTimeField(help_text="The start of the UTC hour.")
    model = models.CharField(max_length=MODEL_NAME_MAX_LENGTH)
    token_id = token_dimension()
    # Minutes 0-14, 15-29, 30-44 and 45-59 of the hour.
    images_q0 = models.BigIntegerField(default=0)
    images_q1 = models.BigIntegerField(default=0)
    images_q2 = models.BigIntegerField(default=0)
    images_q3 = models.BigIntegerField(default=0)
    events_q0 = models.BigIntegerField(default=0)
    events_q1 = models.BigIntegerField(default=0)
    events_q2 = models.BigIntegerField(default=0)
    events_q3 = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "hourly usage rollup"

    def __str__(self) -> str:
        return f"{self.model} @ {self.hour:%Y-%m-%d %H:00} UTC"

    @property
    def images(self) -> int:
        return self.images_q0 + self.images_q1 + self.images_q2 + self.images_q3

    @property
    def events(self) -> int:
        return self.events_q0 + self.events_q1 + self.events_q2 + self.events_q3


class PluginGeneration(models.Model):
    """One plugin generation that reached the external API: who, when, its tokens, its end.

    Written after the upstream answered (or failed), never inside a transaction that spans
    the call, so that an admin can check the upstream's totals and see usage while the
    upstream is down. Token counts are NULL when the upstream did not report them.
    """

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        REJECTED = "rejected_by_upstream", "rejected by the upstream (4xx)"
        UPSTREAM_ERROR = "upstream_error", "upstream error (5xx or a bad answer)"
        TIMEOUT = "upstream_timeout", "timed out"
        UNREACHABLE = "upstream_unreachable", "connection lost"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="plugin_generations",
        # The (user, created_at) index below serves every lookup by user.
        db_index=False,
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    prompt_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    total_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    upstream_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The upstream's HTTP status; empty when it gave none."
    )
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    duration_ms = models.PositiveIntegerField(help_text="How long the upstream call took.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="plugin_generation_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} @ {self.created_at:%Y-%m-%d %H:%M}"


class DailyUsageRollup(models.Model):
    """One owner's images and generations with one model and one API token on one UTC day,
    as running totals.

    ``images_by_07`` holds the images of 00:00 to 06:59 UTC, ``images_by_24`` the whole day,
    so the part of a UTC day on either side of any whole hour is one subtraction. Summaries
    read one of these rows per model, token and day instead of 24 hourly ones: a local day in any
    zone is a few such parts (``usage.summary.daily_totals``). Kept in step with the hourly
    rollups by ``usage.rollups``.
    """

    pk = models.CompositePrimaryKey("owner", "day", "model", "token_id")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField(help_text="The UTC day.")
    model = models.CharField(max_length=MODEL_NAME_MAX_LENGTH)
    token_id = token_dimension()

    class Meta:
        verbose_name = "daily usage rollup"

    def __str__(self) -> str:
        return f"{self.model} on {self.day} (UTC)"


# The 48 running totals of DailyUsageRollup, added by the loop below rather than written
# out as 48 lines (usage.rollups.IMAGES_BY and EVENTS_BY name them in this order). Each is
# listed here so that a search for its name finds where it is defined:
#   images_by_01 images_by_02 images_by_03 images_by_04 images_by_05 images_by_06
#   images_by_07 images_by_08 images_by_09 images_by_10 images_by_11 images_by_12
#   images_by_13 images_by_14 images_by_15 images_by_16 images_by_17 images_by_18
#   images_by_19 images_by_20 images_by_21 images_by_22 images_by_23 images_by_24
#   events_by_01 events_by_02 events_by_03 events_by_04 events_by_05 events_by_06
#   events_by_07 events_by_08 events_by_09 events_by_10 events_by_11 events_by_12
#   events_by_13 events_by_14 events_by_15 events_by_16 events_by_17 events_by_18
#   events_by_19 events_by_20 events_by_21 events_by_22 events_by_23 events_by_24
for _kind in ("images", "events"):
    for _hour in range(1, 25):
        DailyUsageRollup.add_to_class(f"{_kind}_by_{_hour:02d}", models.BigIntegerField(default=0))


class UncountedRecord(models.Model):
    """A stored record not yet counted into the rollups.

    Single records and small batches are only inserted, with one of these beside each; a
    thread in each server process counts them into the rollups in bulk about once a second
    and deletes them (``usage.rollups.fold``). Every read of the rollups adds what is still
    uncounted in the same statement (``usage.summary``), so figures are exact at any moment.
    A record deleted some other way leaves its row behind, which the next fold drops.
    """

    record = models.OneToOneField(
        UsageRecord,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="+",
        # No foreign key in the database: the insert stays one index entry, and a record
        # deleted without the ORM (bulk SQL, retention) leaves a row that folding drops.
        db_constraint=False,
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )

    def __str__(self) -> str:
        return f"record {self.record_id} (not counted yet)"


class RecordKey(models.Model):
    """An event id an owner has sent, so that a resend of it is stored once (PostgreSQL only).

    A partitioned table's unique indexes must include the partition key (``occurred_at``),
    so the records themselves cannot refuse an event id stored in another month. Ingestion
    inserts the batch's ids here first and stores only the records whose ids were new, in
    the same statement (``usage.dialects.postgresql``). Ingestion refuses records older than
    ``usage.ingest.MAX_AGE``, so keys older than that can never match again and are deleted
    by ``usage.retention.prune``: the table holds about a year of keyed records, whatever
    the raw records' retention. SQLite keeps its unique (owner, event id) on the records.
    """

    pk = models.CompositePrimaryKey("owner", "event_id")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        # No foreign key in the database: the hot insert checks one index, not two tables.
        db_constraint=False,
    )
    event_id = models.CharField(max_length=EVENT_ID_MAX_LENGTH)
    # When the record happened, for deleting keys older than ingestion accepts.
    occurred_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"event {self.event_id}"


class RecordRetention(models.Model):
    """Since when raw records are kept: one row, written by the first prune and moved
    forward by each later one (``usage.retention``). No row: every record is kept.

    Stored rather than computed from ``RECORD_RETENTION_MONTHS``, so that a rebuild of the
    rollups never recounts (and so erases) months whose records are gone, even after the
    setting is changed or turned off.
    """

    kept_from = models.DateTimeField(help_text="Raw records before this moment were dropped.")

    class Meta:
        verbose_name = "record retention"

    def __str__(self) -> str:
        return f"raw records kept from {self.kept_from:%Y-%m-%d}"


class ModelPrice(models.Model):
    """A model's price per image, in force from ``valid_from`` until its next price.

    Prices are added, never edited, so that the history stays: a record costs its images
    times the price in force when it occurred (``usage.costs``). Before a model's first
    price its images have no price. ``valid_from`` falls on a quarter hour (checked by
    ``usage.costs.check_price``), the finest time the rollups resolve, so that costs come
    from the rollups exactly, whatever the zone or where in a day the price changes.
    """

    model = models.CharField(
        max_length=MODEL_NAME_MAX_LENGTH,
        help_text="The model's name as records store it (normalised like them).",
    )
    price_per_image = models.DecimalField(
        max_digits=18,
        decimal_places=8,
        help_text="In the site's currency (the SITE_CURRENCY setting).",
    )
    valid_from = models.DateTimeField(
        help_text="When this price starts, on a quarter hour (:00, :15, :30 or :45)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            # Also the index of "a model's prices in time order".
            models.UniqueConstraint(fields=["model", "valid_from"], name="model_price_model_time"),
            models.CheckConstraint(
                condition=models.Q(price_per_image__gte=0), name="model_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.price_per_image} from {self.valid_from:%Y-%m-%d %H:%M} UTC"


class AuditEvent(models.Model):
    """Who did what to whose tokens or data: token creation, revocation, renaming and
    removal from the list, staff reading another user's usage. Written by ``usage.audit``;
    read-only in the admin.

    Names are copied beside the foreign keys, so an event still says who it was about
    after that user is deleted.
    """

    class Action(models.TextChoices):
        TOKEN_CREATED = "token_created", "API token created"
        TOKEN_REVOKED = "token_revoked", "API token revoked"
        TOKEN_RENAMED = "token_renamed", "API token renamed"
        TOKEN_REMOVED = "token_removed", "Revoked API token removed from its owner's list"
        STAFF_VIEWED = "staff_viewed", "Staff viewed another user's usage"

    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    # Null when the actor is the command line (create_api_token) or was deleted since.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150)
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    subject_name = models.CharField(max_length=150)
    # The token's public prefix and name, or the page or API path that was read.
    detail = models.CharField(max_length=300, blank=True)
    # Empty for the command line.
    address = models.CharField(max_length=45, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["subject", "-at"], name="audit_subject_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.subject_name}"


class Budget(models.Model):
    """A user's monthly budget, in images or in money (the site's currency, priced by
    ``usage.costs``), with the thresholds that send alerts and where they go besides email:
    an optional webhook, signed with ``webhook_secret`` (``usage.webhooks``). Months run
    in ``time_zone`` (``usage.budgets``)."""

    class Unit(models.TextChoices):
        IMAGES = "images", "images"
        MONEY = "money", "money"

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget"
    )
    unit = models.CharField(max_length=6, choices=Unit.choices, default=Unit.IMAGES)
    image_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Images a month (a budget in images)."
    )
    money_limit = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Spend a month in the site's currency (a budget in money).",
    )
    # Percentages of the limit, ascending, comma-separated: "50,80,100".
    thresholds = models.CharField(max_length=100, default="50,80,100")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="An IANA zone name.")
    webhook_url = models.URLField(max_length=500, blank=True)
    # Shown to its owner to verify signatures with: kept readable, as Stripe and GitHub do.
    webhook_secret = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(unit="images", image_limit__gte=1)
                | models.Q(unit="money", money_limit__gt=0),
                name="budget_limit_of_its_unit",
            )
        ]

    def __str__(self) -> str:
        return f"{self.owner}: {self.limit} {self.unit} a month"

    @property
    def limit(self):
        """The month's limit: whole images, or a ``Decimal`` amount of money."""
        return self.image_limit if self.unit == self.Unit.IMAGES else self.money_limit

    @property
    def threshold_list(self) -> list[int]:
        return sorted({int(part) for part in self.thresholds.split(",") if part.strip()})


class BudgetAlert(models.Model):
    """One threshold of one month's budget, crossed. The unique constraint is what makes it
    one alert per threshold per month, whichever worker (or retry) gets there first:
    only the worker whose insert succeeds creates the deliveries (``usage.alerts``)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_alerts"
    )
    month = models.DateField(help_text="The first day of the month, in the budget's zone.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the limit.")
    created_at = models.DateTimeField(default=timezone.now)
    # The budget and the month's use when the threshold was crossed: images, or money.
    unit = models.CharField(max_length=6, choices=Budget.Unit.choices)
    used = models.DecimalField(max_digits=32, decimal_places=8)
    limit = models.DecimalField(max_digits=16, decimal_places=4)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "month", "threshold"], name="budget_alert_once_a_month"
            )
        ]

    def __str__(self) -> str:
        return f"{self.owner} {self.month:%Y-%m} {self.threshold}%"


class Delivery(models.Model):
    """One event sent to one place (an email address or a webhook), until it arrives or its
    retry window ends. The state lives here, not in the task queue, so that a worker killed
    mid-send leaves the delivery leased: once the lease ends another worker sends it again,
    with the same ``event_id`` and the same body (``usage.deliveries``)."""

    class Channel(models.TextChoices):
        EMAIL = "email", "email"
        WEBHOOK = "webhook", "webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "gave up"

    event_id = models.UUIDField(unique=True, editable=False)
    event_type = models.CharField(max_length=50)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries"
    )
    alert = models.ForeignKey(
        BudgetAlert, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=500, help_text="The address or URL, as of sending.")
    # The event as sent: fixed when the event happens, so that every attempt sends the same.
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="delivery_once_per_alert")
        ]
        indexes = [
            # What the sweep asks for: pending deliveries that are due.
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} by {self.channel} to {self.target}"


class DeliveryAttempt(models.Model):
    """One try at a delivery: written as it starts, finished when it ends. One left
    ``sending`` was cut off (the worker died); the delivery is sent again."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "sending"
        OK = "ok", "delivered"
        FAILED = "failed", "failed"
        INTERRUPTED = "interrupted", "interrupted (worker stopped)"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"

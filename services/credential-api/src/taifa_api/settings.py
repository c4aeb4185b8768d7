"""Every setting of the credential API (and `taifa-admin`): one pydantic-settings model, env prefix `TAIFA_`."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from taifa_events import auth_cache
from taifa_events.signing import InvalidKeyring, Keyring
from taifa_runtime.kafka import KafkaConnectionSettings

from taifa_api.domain.plans import DEFAULT_MAX_DOMAINS, DEFAULT_PLAN_DAILY_QUOTAS, DEFAULT_PLAN_LIMITS

MIN_HS256_SECRET_BYTES = 32


class Settings(BaseSettings, KafkaConnectionSettings):
    """The credential API's configuration. Infrastructure names are shared with the other services."""

    model_config = SettingsConfigDict(env_prefix="TAIFA_", extra="ignore", frozen=True)

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/taifa",
        description="PostgreSQL DSN (asyncpg form) of the event store, write-side tables and read models.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL: rate limits and the projector's applied signal."
    )

    api_host: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    api_port: int = Field(8080, description="HTTP port of the API (also /healthz, /readyz, /metrics).")
    api_log_level: str = Field("info", description="Log level of the API process (debug, info, warning, error).")

    api_jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret for the `taifa_session` cookie JWT; unset disables HS256."
    )
    api_jwt_public_keys: str | None = Field(
        None,
        description="PEM public key(s) (RSA, EC P-256 or Ed25519, concatenated), or the path of a file holding "
        "them, for RS256/ES256/EdDSA session JWTs.",
    )
    api_jwt_issuer: str | None = Field(None, description="Required `iss` claim of session JWTs, when set.")
    api_jwt_audience: str | None = Field(None, description="Required `aud` claim of session JWTs, when set.")
    api_jwt_leeway_seconds: int = Field(0, description="Clock skew allowed on `exp`/`nbf` of session JWTs.")
    api_jwt_max_lifetime_seconds: int = Field(
        43200,
        gt=0,
        description="Longest session JWT accepted: `exp` may lie at most this far after `iat` (after now when the "
        "token has no `iat`).",
    )
    api_jwt_require_jti: bool = Field(
        False,
        description="Refuse session JWTs without a `jti` claim (only tokens with one can be revoked one by one "
        "with `taifa-admin session revoke`).",
    )

    api_plan_limit_free: int = Field(DEFAULT_PLAN_LIMITS["free"], description="Active SMTP credentials, plan free.")
    api_plan_limit_starter: int = Field(
        DEFAULT_PLAN_LIMITS["starter"], description="Active SMTP credentials, plan starter."
    )
    api_plan_limit_pro: int = Field(DEFAULT_PLAN_LIMITS["pro"], description="Active SMTP credentials, plan pro.")
    api_plan_limit_enterprise: int = Field(
        DEFAULT_PLAN_LIMITS["enterprise"], description="Active SMTP credentials, plan enterprise."
    )
    api_plan_daily_quota_free: int = Field(
        DEFAULT_PLAN_DAILY_QUOTAS["free"],
        ge=1,
        description="Recipients per UTC day, plan free: a credential's `limits` may not exceed it (422).",
    )
    api_plan_daily_quota_starter: int = Field(
        DEFAULT_PLAN_DAILY_QUOTAS["starter"], ge=1, description="Recipients per UTC day, plan starter (as free)."
    )
    api_plan_daily_quota_pro: int = Field(
        DEFAULT_PLAN_DAILY_QUOTAS["pro"], ge=1, description="Recipients per UTC day, plan pro (as free)."
    )
    api_plan_daily_quota_enterprise: int = Field(
        DEFAULT_PLAN_DAILY_QUOTAS["enterprise"],
        ge=1,
        description="Recipients per UTC day, plan enterprise (as free).",
    )

    api_projection_wait_seconds: float = Field(
        5.0,
        ge=0,
        le=auth_cache.APPLIED_TTL_SECONDS,  # the applied signal's key must outlive the wait
        description="How long POST/DELETE wait for the projector's applied signal before answering "
        "with `X-Taifa-Projection: pending`.",
    )
    api_rate_limit_requests: int = Field(600, description="Requests allowed per API key/account per window.")
    api_rate_limit_window_seconds: int = Field(60, description="Length of the rate-limit window in seconds.")
    api_max_body_bytes: int = Field(65536, description="Largest request body accepted; larger gets 413.")
    api_auth_failure_limit: int = Field(
        30,
        gt=0,
        description="Failed authentications allowed per client address (IPv6: per /64) per window, checked "
        "before any lookup; beyond it `429` with `Retry-After`. Successful requests do not count.",
    )
    api_auth_failure_window_seconds: int = Field(
        60, gt=0, description="Window of `TAIFA_API_AUTH_FAILURE_LIMIT` (its tokens refill evenly over it)."
    )
    api_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDRs of reverse proxies (the Ingress controller) whose "
        "`X-Forwarded-For` names the client; empty = the peer address is the client.",
    )

    api_dns_nameservers: str = Field(
        "",
        description="Comma-separated nameservers for domain verification (`ip` or `ip:port`); empty = system.",
    )
    api_dns_timeout_seconds: float = Field(3.0, description="Total time allowed for one verification lookup.")
    api_domain_recheck_interval_seconds: int = Field(
        86400,
        ge=0,
        description="`taifa-admin domain recheck` looks a verified domain's TXT record up again once its last check "
        "is older than this (the CronJob runs hourly, so each domain is re-checked about daily).",
    )
    api_domain_recheck_grace_seconds: int = Field(
        259200,
        ge=0,
        description="A verified domain whose TXT record has been missing this long (72 h by default) is released "
        "(`DomainReleased`, reason `verification_lost`) and its credentials deactivated.",
    )
    api_max_domains_per_account: int = Field(
        DEFAULT_MAX_DOMAINS,
        ge=1,
        description="Domains (pending or verified) one account may hold; registering one more is "
        "`403 domain_limit_reached`.",
    )

    api_smtp_host: str = Field("mail.govconnect.ke", description="SMTP host shown in credential responses.")
    api_smtp_port: int = Field(587, description="SMTP port shown in credential responses.")
    api_smtp_encryption: str = Field("STARTTLS", description="SMTP encryption shown in credential responses.")
    api_smtps_port: int = Field(465, description="Implicit-TLS SMTP port the console shows beside TAIFA_API_SMTP_PORT.")
    api_dev_sign_in: bool = Field(
        False,
        description="Development only: serve `/console/dev/sign-in`, which turns a one-time token of "
        "`taifa-admin session sign-in-link` into session cookies. `make dev` turns it on; never in production.",
    )

    api_publisher_enabled: bool = Field(True, description="Run the outbox publisher inside the API process.")
    api_publisher_batch_size: int = Field(500, description="Events read from the event store per publish batch.")
    api_publisher_idle_poll_seconds: float = Field(
        2.0, description="Safety re-check interval of the publisher between LISTEN/NOTIFY wake-ups."
    )
    api_publisher_retry_seconds: float = Field(
        1.0, description="Pause before the publisher retries after losing the database or the broker."
    )

    api_publisher_log_check_seconds: float = Field(
        30.0,
        description="How often the publisher checks that the broker still holds what it sent "
        "(an emptied log is replayed from the event store).",
    )

    event_signing_keys: SecretStr | None = Field(
        None,
        description="Event signing keys, `id:secret[,id:secret]` (each secret 32+ bytes, from a Secret): the API's "
        "outbox publisher signs every Kafka record (HMAC-SHA256) with the active one; the projector applies only "
        "records one of them signed. Required by both (`taifa-admin` alone does without).",
    )
    event_signing_key_id: str | None = Field(
        None, description="Id of the key in TAIFA_EVENT_SIGNING_KEYS that signs new events (the active key)."
    )

    api_db_pool_min: int = Field(2, description="Minimum PostgreSQL connections in the API pool.")
    api_db_pool_max: int = Field(20, description="Maximum PostgreSQL connections in the API pool.")

    webhook_secret_keys: SecretStr | None = Field(
        None,
        description="AES-256-GCM keys that encrypt webhook signing secrets at rest, `id:base64key[,id:base64key]` "
        "(32-byte keys, from a Secret; `openssl rand -base64 32`): the first encrypts, every one decrypts (the API "
        "and `taifa-webhooks`; `taifa-admin webhook reencrypt` moves stored secrets to the first). Unset: creating or "
        "rotating a webhook answers `503`.",
    )
    webhook_allow_http: bool = Field(
        False,
        description="Development only: webhook URLs may use plain `http` and resolve to loopback addresses "
        "(link-local and cloud metadata addresses stay refused). Never set in production.",
    )
    webhook_max_endpoints_per_account: int = Field(
        10, ge=1, description="Webhook endpoints one account may have; one more is `403 webhook_limit_reached`."
    )
    webhook_dns_timeout_seconds: float = Field(
        3.0,
        gt=0,
        description="Time allowed to resolve a webhook URL's host: at creation (`422` beyond) and by the dispatcher "
        "before each attempt.",
    )

    webhooks_group_id: str = Field(
        "taifa-webhooks", description="Kafka consumer group of the webhook dispatcher (`taifa-webhooks`)."
    )
    webhooks_health_host: str = Field("0.0.0.0", description="Address of the dispatcher's /healthz, /readyz, /metrics.")
    webhooks_health_port: int = Field(9103, description="Port of the dispatcher's /healthz, /readyz and /metrics.")
    webhooks_concurrency: int = Field(
        50, ge=1, description="Webhook attempts in flight at once per dispatcher (never two to the same endpoint)."
    )
    webhooks_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Time allowed to connect to a webhook endpoint (TLS handshake included)."
    )
    webhooks_request_timeout_seconds: float = Field(
        15.0, gt=0, description="Time allowed for a whole webhook attempt (resolve, connect, send, read the status)."
    )
    webhooks_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="A claimed delivery is not due again for this long (longer than an attempt): a dispatcher that "
        "dies mid-attempt leaves it to be sent again (same `webhook-id`) after it.",
    )
    webhooks_poll_seconds: float = Field(
        1.0, gt=0, description="How often the dispatcher looks for retries that came due (new events wake it at once)."
    )
    webhooks_batch_size: int = Field(500, ge=1, description="Kafka records turned into deliveries per transaction.")
    webhooks_retry_scale: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Multiplies the retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, then 10 h: about 3 days); tests "
        "and benchmarks shrink it. Keep 1 in production.",
    )
    webhooks_db_pool_max: int = Field(10, ge=2, description="Maximum PostgreSQL connections of the dispatcher.")

    @field_validator("api_jwt_secret")
    @classmethod
    def _hs256_secret_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (32 bytes)."""
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 section 3.2)")
        return value

    @model_validator(mode="after")
    def _signing_keys_parse(self) -> Settings:
        # Malformed keys fail at once (every command); missing keys only where events are signed.
        if self.event_signing_keys is not None:
            try:
                Keyring.parse(self.event_signing_keys.get_secret_value(), self.event_signing_key_id)
            except InvalidKeyring as exc:
                raise ValueError(str(exc)) from None
        return self

    def event_keyring(self) -> Keyring:
        """The keyring the outbox publisher signs with; InvalidKeyring (a message for operators) if unusable."""
        if self.event_signing_keys is None or not self.event_signing_key_id:
            raise InvalidKeyring(
                "TAIFA_EVENT_SIGNING_KEYS and TAIFA_EVENT_SIGNING_KEY_ID must be set: the outbox publisher signs "
                "every event it sends and the projector applies only signed events (or set "
                "TAIFA_API_PUBLISHER_ENABLED=false in a process that must not publish)"
            )
        return Keyring.parse(self.event_signing_keys.get_secret_value(), self.event_signing_key_id)

    @cached_property
    def plan_limits(self) -> dict[str, int]:
        return {
            "free": self.api_plan_limit_free,
            "starter": self.api_plan_limit_starter,
            "pro": self.api_plan_limit_pro,
            "enterprise": self.api_plan_limit_enterprise,
        }

    @cached_property
    def plan_daily_quotas(self) -> dict[str, int]:
        return {
            "free": self.api_plan_daily_quota_free,
            "starter": self.api_plan_daily_quota_starter,
            "pro": self.api_plan_daily_quota_pro,
            "enterprise": self.api_plan_daily_quota_enterprise,
        }

    @cached_property
    def dns_nameservers(self) -> list[tuple[str, int]]:
        """Parsed `api_dns_nameservers` as (address, port) pairs."""
        servers: list[tuple[str, int]] = []
        for item in (part.strip() for part in self.api_dns_nameservers.split(",")):
            if not item:
                continue
            host, sep, port = item.rpartition(":")
            if sep and host and port.isdigit() and (host.count(":") == 0 or host.startswith("[")):
                servers.append((host.strip("[]"), int(port)))
            else:
                servers.append((item.strip("[]"), 53))
        return servers

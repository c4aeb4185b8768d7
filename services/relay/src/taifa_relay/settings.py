"""Every TAIFA_RELAY_* setting (and TAIFA_REDIS_URL) of the SMTP relay, in one pydantic-settings model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from taifa_events.usage import PLAN_DAILY_QUOTAS


class Settings(BaseSettings):
    """The relay's configuration; each field is the environment variable TAIFA_<NAME upper-cased>."""

    model_config = SettingsConfigDict(env_prefix="TAIFA_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the auth cache (read) and the relay's failure counters (write).",
    )

    relay_hostname: str = Field("localhost", description="Name in the banner, EHLO reply and Received: headers.")
    relay_bind_host: str = Field("0.0.0.0", description="Address the SMTP and HTTP listeners bind to.")
    relay_submission_port: int = Field(587, description="Submission port (STARTTLS required before anything else).")
    relay_smtps_port: int = Field(465, description="Implicit-TLS submission port.")
    relay_health_port: int = Field(9101, description="HTTP port for /healthz, /readyz and /metrics.")
    relay_tls_cert_file: Path = Field(Path("relay.crt"), description="PEM certificate chain (reloaded on change).")
    relay_tls_key_file: Path = Field(Path("relay.key"), description="PEM private key (reloaded on change).")
    relay_tls_reload_seconds: float = Field(5.0, description="How often the certificate files are checked.")

    relay_upstream_host: str = Field("127.0.0.1", description="Upstream MTA the relay forwards to.")
    relay_upstream_port: int = Field(25, description="Upstream MTA port.")
    relay_upstream_tls: Literal["required", "opportunistic", "none"] = Field(
        "required",
        description="TLS to the upstream MTA. `required`: it must offer STARTTLS and its certificate must verify, "
        "else nothing is sent and the client gets 451 4.4.1 (never a fallback to plaintext); `opportunistic`: "
        "STARTTLS when offered, plaintext otherwise; `none`: plaintext.",
    )
    relay_upstream_verify: bool = Field(
        True, description="Verify the upstream's certificate (and hostname); `required` TLS always verifies."
    )
    relay_upstream_ca_file: Path | None = Field(None, description="CA bundle for the upstream; system CAs if unset.")
    relay_upstream_timeout_seconds: float = Field(
        30.0,
        description="Timeout of each upstream SMTP step; a whole delivery (connection, envelope, data and reply) has "
        "at most four times this (the drain on SIGTERM lets a delivery under way run that long).",
    )
    relay_upstream_pool_size: int = Field(32, description="Idle upstream connections kept for reuse.")

    relay_recheck_cache_seconds: float = Field(
        0.0,
        description="How long one per-transaction re-check of a credential may be reused by other sessions of "
        "the same username (0: every MAIL reads Redis). Revocation messages, change notices and resubscriptions "
        "clear it; the check at the end of DATA always reads Redis.",
    )
    relay_max_message_bytes: int = Field(10_240_000, description="Message size limit (advertised with SIZE).")
    relay_max_recipients: int = Field(100, description="Recipients per message; more get 452 4.5.3.")
    relay_max_line_length: int = Field(1001, description="Longest DATA line accepted, CRLF included (RFC 5321).")
    relay_max_command_length: int = Field(512, description="Longest command line, CRLF included (RFC 5321).")
    relay_idle_timeout_seconds: float = Field(300.0, description="Idle connections get 421 4.4.2 and are closed.")
    relay_min_data_rate: int = Field(500, description="Minimum DATA rate in bytes/second after the grace period.")
    relay_data_rate_grace_seconds: float = Field(10.0, description="Time DATA may take before the rate is enforced.")
    relay_max_sessions: int = Field(
        2000, description="Concurrent sessions of this relay process (TLS handshakes included); more get 421 4.7.0."
    )
    relay_max_sessions_per_client: int = Field(50, description="Concurrent sessions per client address (IPv6: /64).")
    relay_max_connections_per_minute: int = Field(
        120, description="New connections per client address (IPv6: /64) per minute, counted before TLS."
    )
    relay_max_auth_failures_per_connection: int = Field(3, description="Failed AUTHs before 454 and disconnect.")
    relay_max_auth_failures_per_address_username: int = Field(
        10,
        description="Failed AUTHs for one username from one client address (IPv6: its /64) per window; then that "
        "username gets 454 4.7.0 from that address (other usernames and other addresses are not affected).",
    )
    relay_max_auth_failures_per_address: int = Field(
        200,
        description="Failed AUTHs from one client address (IPv6: its /64) across all usernames per window "
        "(credential stuffing); then every AUTH from it gets 454 4.7.0. Far above the per-username limit, so "
        "that one stale credential never locks out the others used from a shared address.",
    )
    relay_auth_failure_window_seconds: int = Field(60, description="Window of the AUTH failure counts (seconds).")
    relay_error_soft_limit: int = Field(10, description="Error replies after which each further reply is delayed.")
    relay_error_hard_limit: int = Field(20, description="Error replies after which the connection is closed.")
    relay_error_delay_seconds: float = Field(1.0, description="Delay added per error reply past the soft limit.")
    relay_max_own_received_headers: int = Field(3, description="Own Received: headers tolerated before 550 (loop).")
    relay_proxy_protocol: bool = Field(
        False,
        description="Expect a PROXY protocol v1/v2 header on connections from TAIFA_RELAY_PROXY_TRUSTED_CIDRS (the "
        "load balancer); a connection from anywhere else is served as the client it is, its header never read.",
    )
    relay_proxy_trusted_cidrs: str = Field(
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7",
        description="Networks whose connections may name the client in a PROXY header (comma-separated CIDRs): your "
        "load balancer's addresses. Anyone else's header would choose the address that allowlists and throttles see.",
    )
    relay_proxy_protocol_timeout_seconds: float = Field(5.0, description="Time allowed for the PROXY header.")
    relay_drain_grace_seconds: float = Field(30.0, description="On SIGTERM, time sessions get to finish.")
    relay_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Relay processes sharing the SMTP listeners (SO_REUSEPORT; the kernel spreads connections). Worker "
        "i serves health and metrics on TAIFA_RELAY_HEALTH_PORT + i; the session caps are per process. For a pod with "
        "more than one core (docs/operations.md).",
    )
    relay_usage_enabled: bool = Field(
        True,
        description="Count usage per credential (messages, recipients, bytes, AUTH results, refusals by reason, last "
        "use) in Redis for the usage API. Sending limits and plan quotas are enforced either way; off only to measure "
        "what counting costs (the relay benchmark).",
    )
    relay_plan_daily_quota_free: int = Field(
        PLAN_DAILY_QUOTAS["free"],
        ge=1,
        description="Recipients per UTC day of an account on the free plan "
        "(also the quota of an entry without a plan).",
    )
    relay_plan_daily_quota_starter: int = Field(
        PLAN_DAILY_QUOTAS["starter"], ge=1, description="Recipients per UTC day on the starter plan."
    )
    relay_plan_daily_quota_pro: int = Field(
        PLAN_DAILY_QUOTAS["pro"], ge=1, description="Recipients per UTC day on the pro plan."
    )
    relay_plan_daily_quota_enterprise: int = Field(
        PLAN_DAILY_QUOTAS["enterprise"], ge=1, description="Recipients per UTC day on the enterprise plan."
    )

    def plan_daily_quotas(self) -> dict[str, int]:
        return {
            "free": self.relay_plan_daily_quota_free,
            "starter": self.relay_plan_daily_quota_starter,
            "pro": self.relay_plan_daily_quota_pro,
            "enterprise": self.relay_plan_daily_quota_enterprise,
        }

    relay_log_level: str = Field("INFO", description="Log level of the relay's JSON logs.")

    @property
    def relay_upstream_delivery_seconds(self) -> float:
        """The bound of one whole delivery to the upstream: four upstream steps."""
        return 4 * self.relay_upstream_timeout_seconds

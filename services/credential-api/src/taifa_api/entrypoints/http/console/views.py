"""What the console's templates show, shaped from the API's own bodies: the SMTP settings and client snippets,
the grace-period choices of a rotation, and the geometry of the 7-day usage chart (drawn as inline SVG)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from taifa_api.domain import usage
from taifa_api.domain.lifecycle import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS
from taifa_api.settings import Settings

GRACE_CHOICES: Final[list[tuple[int, str]]] = [
    (0, "None: the current password stops working at once"),
    (3600, "1 hour"),
    (DEFAULT_GRACE_SECONDS, "24 hours (recommended)"),
    (3 * 86400, "3 days"),
    (MAX_GRACE_SECONDS, "7 days"),
]
CHART_DAYS: Final = 7


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    starttls_port: int
    tls_port: int


def smtp_settings(settings: Settings) -> SmtpSettings:
    return SmtpSettings(settings.api_smtp_host, settings.api_smtp_port, settings.api_smtps_port)


def snippets(smtp: SmtpSettings, username: str, domain: str) -> list[tuple[str, str]]:
    """Ready-to-paste clients; each reads the password from TAIFA_SMTP_PASSWORD, never from source code."""
    sender = f"hello@{domain}"
    python = (
        "import os, smtplib\n"
        "from email.message import EmailMessage\n\n"
        "msg = EmailMessage()\n"
        f'msg["From"] = "{sender}"\n'
        'msg["To"] = "someone@example.net"\n'
        'msg["Subject"] = "Hello from Taifa Mail"\n'
        'msg.set_content("Sent through the Taifa relay.")\n\n'
        f'with smtplib.SMTP("{smtp.host}", {smtp.starttls_port}) as smtp:\n'
        "    smtp.starttls()\n"
        f'    smtp.login("{username}", os.environ["TAIFA_SMTP_PASSWORD"])\n'
        "    smtp.send_message(msg)\n"
    )
    node = (
        'import nodemailer from "nodemailer";\n\n'
        "const transport = nodemailer.createTransport({\n"
        f'  host: "{smtp.host}",\n'
        f"  port: {smtp.starttls_port},\n"
        "  secure: false, // STARTTLS; use port " + f"{smtp.tls_port} with secure: true for implicit TLS\n"
        "  requireTLS: true,\n"
        f'  auth: {{ user: "{username}", pass: process.env.TAIFA_SMTP_PASSWORD }},\n'
        "});\n\n"
        "await transport.sendMail({\n"
        f'  from: "{sender}",\n'
        '  to: "someone@example.net",\n'
        '  subject: "Hello from Taifa Mail",\n'
        '  text: "Sent through the Taifa relay.",\n'
        "});\n"
    )
    swaks = (
        f"swaks --server {smtp.host} --port {smtp.starttls_port} --tls \\\n"
        f'  --auth LOGIN --auth-user "{username}" --auth-password "$TAIFA_SMTP_PASSWORD" \\\n'
        f"  --from {sender} --to someone@example.net \\\n"
        '  --header "Subject: Hello from Taifa Mail"\n'
    )
    return [("Python (smtplib)", python), ("Node.js (nodemailer)", node), ("swaks", swaks)]


def chart_range(now: datetime) -> usage.UsageRange:
    """The last seven UTC days, today included."""
    first = usage.align(now, "day") - timedelta(days=CHART_DAYS - 1)
    return usage.UsageRange(first=first, end=now.astimezone(UTC), granularity="day")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    value: int


@dataclass(frozen=True)
class ChartDay:
    label: str
    day: str
    messages: Bar
    refusals: Bar


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    baseline: float
    bar_width: float
    peak: int
    days: list[ChartDay]
    total_messages: int
    total_refusals: int


def usage_chart(buckets: list[usage.Bucket], width: int = 420, height: int = 140) -> Chart:
    """Two bars a day (messages, refusals), scaled to the busiest value; the numbers are also in the page's table."""
    plot_top, baseline = 12.0, float(height - 22)
    peak = max([1, *(b.counts.messages for b in buckets), *(sum(b.counts.refused.values()) for b in buckets)])
    slot = width / max(1, len(buckets))
    bar_width = slot * 0.32

    def bar(x: float, value: int) -> Bar:
        scaled = (baseline - plot_top) * value / peak
        return Bar(round(x, 1), round(baseline - scaled, 1), round(scaled, 1), value)

    days = []
    for index, bucket in enumerate(buckets):
        left = index * slot + slot * 0.16
        refused = sum(bucket.counts.refused.values())
        days.append(
            ChartDay(
                label=bucket.start.strftime("%a"),
                day=bucket.start.strftime("%Y-%m-%d"),
                messages=bar(left, bucket.counts.messages),
                refusals=bar(left + bar_width + 2, refused),
            )
        )
    return Chart(
        width=width,
        height=height,
        baseline=baseline,
        bar_width=round(bar_width, 1),
        peak=peak,
        days=days,
        total_messages=sum(b.counts.messages for b in buckets),
        total_refusals=sum(sum(b.counts.refused.values()) for b in buckets),
    )

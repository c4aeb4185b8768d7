"""The console's parts that need no I/O: the error-code table, the sessions it mints, the 7-day chart, the
snippets, the static assets and the security headers."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import jwt
from taifa_api.domain import errors, usage
from taifa_api.entrypoints import session_tokens
from taifa_api.entrypoints.http.auth import Authenticator
from taifa_api.entrypoints.http.console import messages, rendering, views
from taifa_api.settings import Settings

SECRET = "s" * 40


def _settings(**extra: object) -> Settings:
    return Settings(api_jwt_secret=SECRET, **extra)  # type: ignore[arg-type]


def _authenticator(settings: Settings) -> Authenticator:
    return Authenticator(settings, pool=None)  # type: ignore[arg-type]


def test_every_contract_error_code_has_customer_words_without_the_code_itself() -> None:
    declared = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)}
    assert declared <= set(messages.CUSTOMER_MESSAGES)
    for code, text in messages.CUSTOMER_MESSAGES.items():
        assert ("_" not in code or code not in text) and text.endswith(".")
    assert messages.customer_message("no_such_code") == messages.GENERIC


def test_a_minted_session_is_accepted_as_the_api_accepts_the_platforms() -> None:
    settings = _settings(api_jwt_issuer="taifa", api_jwt_audience="console")
    account = uuid.uuid4()
    minted = session_tokens.mint_session(settings, account)
    claims = _authenticator(settings).decode_session(minted.token)
    assert claims is not None and claims["account_id"] == str(account) and claims["jti"] == minted.jti
    assert claims["exp"] - claims["iat"] == settings.api_jwt_max_lifetime_seconds


def test_a_sign_in_token_is_never_a_session_and_a_session_is_never_a_sign_in_token() -> None:
    settings = _settings()
    account = uuid.uuid4()
    sign_in = session_tokens.mint_sign_in_token(settings, account, ttl_seconds=600)
    assert _authenticator(settings).decode_session(sign_in.token) is None
    read = session_tokens.read_sign_in_token(settings, sign_in.token)
    assert read is not None and read.account_id == account and read.jti == sign_in.jti
    assert session_tokens.read_sign_in_token(settings, session_tokens.mint_session(settings, account).token) is None


def test_expired_forged_or_unsigned_sign_in_tokens_are_refused() -> None:
    settings = _settings()
    now = int(time.time())
    claims = {"sub": str(uuid.uuid4()), "aud": session_tokens.SIGN_IN_AUDIENCE, "jti": "x", "iat": now}
    expired = jwt.encode({**claims, "exp": now - 5}, SECRET, algorithm="HS256")
    forged = jwt.encode({**claims, "exp": now + 60}, "f" * 40, algorithm="HS256")
    unsigned = jwt.encode({**claims, "exp": now + 60}, None, algorithm="none")
    for token in (expired, forged, unsigned, "", "x" * 5000):
        assert session_tokens.read_sign_in_token(settings, token) is None
    assert session_tokens.read_sign_in_token(Settings(), forged) is None  # no secret: nothing is valid


def test_the_chart_covers_seven_utc_days_and_scales_to_the_busiest_bar() -> None:
    now = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
    wanted = views.chart_range(now)
    assert wanted.bucket_starts()[0] == datetime(2026, 11, 22, tzinfo=UTC)
    assert len(wanted.bucket_starts()) == 7
    busy = usage.Counts(messages=40, refused={"limits": 5, "auth_secret": 5})
    chart = views.usage_chart(usage.series(wanted, {datetime(2026, 11, 27, tzinfo=UTC): busy}))
    assert [day.label for day in chart.days] == ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    friday = chart.days[5]
    assert friday.messages.value == 40 and friday.refusals.value == 10
    assert friday.messages.height == chart.baseline - 12.0  # the peak reaches the top of the plot
    assert friday.refusals.height == friday.messages.height / 4
    assert chart.days[0].messages.height == 0 and chart.days[0].messages.y == chart.baseline
    assert (chart.total_messages, chart.total_refusals) == (40, 10)


def test_snippets_name_host_port_and_username_but_never_hold_a_password() -> None:
    smtp = views.smtp_settings(Settings())
    assert (smtp.host, smtp.starttls_port, smtp.tls_port) == ("mail.govconnect.ke", 587, 465)
    shown = views.snippets(smtp, "3f2a9c1b@example.com", "example.com")
    assert [title for title, _ in shown] == ["Python (smtplib)", "Node.js (nodemailer)", "swaks"]
    for _, code in shown:
        assert "mail.govconnect.ke" in code and "587" in code and "3f2a9c1b@example.com" in code
        assert "TAIFA_SMTP_PASSWORD" in code


def test_static_assets_have_fingerprinted_names_and_a_year_long_cache() -> None:
    url = rendering.static_url("console.js")
    name = url.removeprefix(rendering.STATIC_PREFIX)
    assert name.startswith("console.") and name.endswith(".js") and name != "console.js"
    response = rendering.asset_response(name)
    assert response is not None and "immutable" in response.headers["cache-control"]
    assert response.headers["content-type"].startswith("text/javascript")
    assert rendering.asset_response("console.js") is None  # only fingerprinted names are served


def test_the_policy_allows_scripts_from_this_origin_only() -> None:
    policy = rendering.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    headers = dict(rendering.SECURITY_HEADERS)
    assert headers[b"x-frame-options"] == b"DENY" and headers[b"referrer-policy"] == b"no-referrer"


def test_templates_escape_what_they_show_and_carry_no_inline_script() -> None:
    template = rendering.ENVIRONMENT.get_template("password.html")
    html = template.render(
        title="t",
        signed_in=True,
        notice=None,
        error=None,
        dev_sign_in=False,
        csrf_token="tok",
        credential_id=uuid.uuid4(),
        username="a@<b>.example",
        password="<script>alert(1)</script>",
        rotated=False,
        smtp=views.smtp_settings(Settings()),
        snippets=[],
    )
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    for source in rendering.ENVIRONMENT.list_templates():
        text = (rendering.HERE / "templates" / source).read_text()
        assert "<script>" not in text, source  # scripts only by src, from this origin
        assert not re.search(r"\son[a-z]+\s*=", text), source  # no inline event handler
        assert "style=" not in text, source

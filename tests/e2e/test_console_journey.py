"""The customers' console in a real browser (Playwright driving Debian's Chromium, headless) on the make-dev stack.

One journey, as a customer would walk it: the dev sign-in link, a new domain (verified with `taifa-admin domain
verify --force`), a credential whose password is read from the dialog and used with smtplib through the relay,
a rotation, a suspension (the relay answers 451) and resume, a change without the CSRF cookie (the page says so
in words), and the typed-confirmation deactivation. Every page is checked with axe-core (no serious or critical
violation) and against the Content-Security-Policy (no violation reported); a screenshot of each step is saved
under the test's tmp directory, or TAIFA_CONSOLE_SCREENSHOTS when set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from taifa_localstack import wait_until

from tests.e2e.conftest import admin, delivered
from tests.e2e.test_lifecycle_journeys import _send_one  # AUTH, MAIL, RCPT, DATA codes of one message

AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make setup` installs it (deploy/scripts/system-packages.sh)"
    assert AXE.is_file(), f"{AXE} is missing: `make setup` installs tests/e2e/node (npm ci)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


class Console:
    """One signed-in browser tab, with the checks every page gets."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.step = 0
        self.csp_violations: list[str] = []
        self.axe_source = AXE.read_text()
        page.on("console", self._console)

    def _console(self, entry: object) -> None:
        text = getattr(entry, "text", "")
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp_violations.append(text)

    def check(self, name: str) -> None:
        """Screenshot, then axe-core on the page as it is (evaluated over CDP: the page's CSP stays strict)."""
        self.step += 1
        self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"), full_page=True)
        self.page.evaluate(self.axe_source)
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in SERIOUS
        ]
        assert not serious, f"axe-core on {name}: {serious}"

    def notice(self) -> str:
        return self.page.locator(".notice").inner_text()

    def error(self) -> str:
        return self.page.locator(".error").inner_text()


def _relay_answers(env: dict[str, str], username: str, password: str, domain: str, expected: list[int]) -> str:
    """The relay gives `expected` to a new message (polled: on a busy machine the API may answer before the
    projector has applied the change, with `X-Taifa-Projection: pending`); returns the subject that got it."""
    subject = ""

    def answers() -> bool:
        nonlocal subject
        subject = f"console journey {uuid.uuid4().hex}"
        return _send_one(env, username, password, f"hello@{domain}", subject) == expected

    wait_until(answers, 30, f"the relay answering {expected}", interval=1.0)  # gentle on the per-address cap
    return subject


def test_console_journey_in_a_real_browser(env: dict[str, str], browser: Browser, tmp_path: Path) -> None:
    shots = Path(os.environ.get("TAIFA_CONSOLE_SCREENSHOTS") or tmp_path / "console-screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1100, "height": 900}, base_url=env["TAIFA_API_URL"])
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    console = Console(context.new_page(), shots)
    page = console.page

    # Without a session: a 401 page that says how to sign in.
    answer = page.goto("/console/")
    assert answer is not None and answer.status == 401
    assert "Sign in" in page.locator("h1").inner_text()
    console.check("sign-in-needed")

    # The one-time link `make dev` prints signs in, once.
    page.goto(env["TAIFA_CONSOLE_SIGN_IN_URL"])
    console.check("dev-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")
    assert page.locator("h1").inner_text() == "Domains"
    console.check("domains")
    token = env["TAIFA_CONSOLE_SIGN_IN_URL"].partition("token=")[2]
    again = httpx.post(f"{env['TAIFA_API_URL']}/console/dev/sign-in", data={"token": token}, timeout=30)
    assert again.status_code == 401, "a sign-in link works once"

    # Headers of every console response, and the static assets' long cache.
    response = page.goto("/console/")
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    script = page.locator("script[src]").get_attribute("src")
    assert script is not None
    asset = httpx.get(env["TAIFA_API_URL"] + script, timeout=30)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]

    # Register a domain; an operator verifies it without DNS.
    name = f"console-{uuid.uuid4().hex[:8]}.example.com"
    page.get_by_label("Domain name").fill(name)
    page.get_by_role("button", name="Add domain").click()
    assert "Domain added" in console.notice()
    assert page.locator("#txt-value").inner_text().startswith("taifa-verification=")
    console.check("domain-pending")
    domain_id = page.url.rsplit("/", 1)[1].split("?")[0]
    admin(env, "domain", "verify", "--force", domain_id)

    def verified() -> bool:
        page.reload()
        return page.get_by_role("button", name="Create SMTP credential").count() == 1

    wait_until(verified, 30, "the verified domain in the console")

    # Create: the password is shown once, in the dialog, with the SMTP settings and snippets.
    page.get_by_role("button", name="Create SMTP credential").click()
    dialog = page.locator("dialog#password-dialog")
    assert dialog.is_visible()
    assert "cannot be shown again" in dialog.inner_text()
    password = page.locator("#password").input_value()
    username = page.locator("#smtp-username").inner_text()
    assert password.startswith("tmsmtp_") and username.endswith("@" + name)
    copy = page.locator("button[data-copy=password]")  # by its role and name once it says "Copied"
    page.get_by_role("button", name="Copy password").click()
    expect(copy).to_have_text("Copied")  # the clipboard write has completed
    assert page.evaluate("navigator.clipboard.readText()") == password
    console.check("password-dialog")

    subject = f"console journey {uuid.uuid4().hex}"
    assert _send_one(env, username, password, f"hello@{name}", subject) == [235, 250, 250, 250]
    assert delivered(env, subject)

    page.get_by_role("link", name="I have stored it, close").click()
    assert "cannot be shown again" in console.notice()
    assert page.locator("#password").count() == 0
    console.check("credential")

    # Rotate with a one-hour grace: the new password works at once.
    page.get_by_label("Grace period for the current password").select_option("3600")
    page.get_by_role("button", name="Rotate password").click()
    rotated = page.locator("#password").input_value()
    assert rotated.startswith("tmsmtp_") and rotated != password
    console.check("rotated-dialog")
    page.get_by_role("link", name="I have stored it, close").click()
    assert page.get_by_role("button", name="End grace period now").count() == 1

    # Suspend: logins still work, MAIL is deferred with 451; resume: it sends again.
    page.get_by_label("Reason (optional, shown here)").fill("console journey")
    page.get_by_role("button", name="Suspend credential").click()
    assert "suspended" in console.notice()
    console.check("suspended")
    _relay_answers(env, username, rotated, name, [235, 451])
    page.get_by_role("button", name="Resume credential").click()
    assert "active again" in console.notice()
    assert delivered(env, _relay_answers(env, username, rotated, name, [235, 250, 250, 250]))

    # Restrictions: a malformed network is refused in words naming the field; valid ones are saved.
    page.get_by_label("Allowed networks (one CIDR per line; empty: any address)").fill("203.0.113.7/24")
    page.get_by_role("button", name="Save restrictions").click()
    assert "not valid" in console.error() and "Allowed networks" in page.locator(".details").inner_text(), page.locator(
        "main"
    ).inner_text()
    console.check("restrictions-invalid")
    page.get_by_role("link", name="Go back").click()
    page.get_by_label("Allowed networks (one CIDR per line; empty: any address)").fill("127.0.0.0/8\n::1/128")
    page.get_by_label("Messages per minute (empty: no limit)").fill("120")
    page.get_by_role("button", name="Save restrictions").click()
    assert "Restrictions saved" in console.notice()
    assert "127.0.0.0/8" in page.locator("dl.facts").inner_text()

    # A change without the CSRF cookie is refused, and the page says so in words.
    context.clear_cookies(name="taifa_csrf")
    page.get_by_role("button", name="Suspend credential").click()
    assert "nothing was changed" in console.error()
    assert "csrf" not in page.content().lower().replace("csrf_token", "")
    console.check("csrf-refused")
    page.get_by_role("link", name="Go back").click()
    assert "active" in page.locator("h1 .status").inner_text()

    # Deactivate: the button waits for the typed domain name; then the relay refuses the credential.
    button = page.get_by_role("button", name="Deactivate for good")
    confirm = page.get_by_label(f"Type {name} to confirm")
    confirm.fill("not-the-name.example.com")
    assert button.is_disabled()
    confirm.fill(name)
    assert button.is_enabled()
    console.check("deactivate-confirm")
    button.click()
    assert "deactivated" in console.notice()
    _relay_answers(env, username, rotated, name, [535])
    console.check("deactivated")

    # The audit trail shows the console's changes as the session's; the webhooks page lists endpoints (none).
    def audited() -> bool:
        page.goto("/console/events")
        return page.locator("td code", has_text="smtp_credential.deactivated").count() >= 1

    wait_until(audited, 30, "the deactivation in the console's activity page", interval=0.5)
    assert "session" in page.locator("tbody tr").first.inner_text()
    console.check("activity")
    page.goto("/console/webhooks")
    assert page.locator("h1").inner_text() == "Webhooks"
    console.check("webhooks")

    page.goto("/console/smtp")
    assert "STARTTLS" in page.locator("main").inner_text()
    console.check("smtp-settings")
    assert not console.csp_violations, console.csp_violations
    context.close()

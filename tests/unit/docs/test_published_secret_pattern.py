"""The regular expression and the gitleaks rule that docs/api.md publishes find the passwords Taifa Mail issues.

Customers copy both into their secret scanners; if the docs drifted from the generator, leaked SMTP passwords
would go unnoticed. The test reads the published text itself, not a copy of it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from taifa_events.secrets import SMTP_PASSWORD_PATTERN, new_smtp_password

API_DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"
# Inline code spans that are the published pattern: they start with the prefix and a character class.
PUBLISHED = re.compile(r"`(tmsmtp_\[[^`]+)`")
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def published_pattern() -> str:
    patterns = set(PUBLISHED.findall(API_DOCS.read_text(encoding="utf-8")))
    assert len(patterns) == 1, f"docs/api.md publishes exactly one SMTP password pattern, found {sorted(patterns)}"
    return patterns.pop()


def gitleaks_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for block in TOML_BLOCK.findall(API_DOCS.read_text(encoding="utf-8")):
        document = tomllib.loads(block)  # the published snippet must be valid TOML as it stands
        rules += [rule for rule in document.get("rules", []) if "tmsmtp" in str(rule.get("regex", ""))]
    return rules


def test_the_published_pattern_matches_every_generated_password() -> None:
    pattern = re.compile(published_pattern())
    passwords = [new_smtp_password() for _ in range(500)]
    assert all(pattern.fullmatch(p) for p in passwords)


def test_the_published_pattern_is_the_generators_pattern() -> None:
    assert f"^{published_pattern()}$" == SMTP_PASSWORD_PATTERN


def test_the_published_pattern_finds_a_password_leaked_inside_text_and_not_a_shorter_one() -> None:
    pattern = re.compile(published_pattern())
    password = new_smtp_password()
    leaked = f'SMTP_USER=3f2a9c1b@example.com\nSMTP_PASS="{password}"\n'
    assert [m.group(0) for m in pattern.finditer(leaked)] == [password]
    assert pattern.search(password[:-1]) is None


def test_the_gitleaks_rule_has_an_id_keywords_and_the_published_regex() -> None:
    rules = gitleaks_rules()
    assert len(rules) == 1, "docs/api.md has one gitleaks [[rules]] entry for SMTP passwords"
    rule = rules[0]
    assert isinstance(rule.get("id"), str) and rule["id"]
    assert rule["regex"] == published_pattern()
    keywords = rule.get("keywords")
    assert isinstance(keywords, list) and "tmsmtp_" in keywords
    assert all(str(k) in new_smtp_password() for k in keywords), "gitleaks prefilters on keywords: each must occur"

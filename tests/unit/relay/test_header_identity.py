"""Who a message claims to be from: every header line some RFC 5322 reader takes for From (issue 13, item 13),
and subdomains that another account has verified (item 12). Pure rules, no sockets."""

from __future__ import annotations

import email.parser
import email.policy

import pytest
from taifa_relay.domain import policy, replies

OWN = "own.example"
FORGED = b"ceo@bank.example"


def _verdict(headers: bytes) -> policy.HeaderVerdict:
    return policy.check_header_identities(policy.header_block(headers + b"\r\nbody\r\n"), OWN)


# Each of these carries one visible, allowed From and one more line that some reader takes for From.
SECOND_FROM_VARIANTS = [
    b"From : " + FORGED + b"\r\nFrom: app@own.example\r\n",  # obsolete WSP before the colon (RFC 5322 4.5.3)
    b"From\t: " + FORGED + b"\r\nFrom: app@own.example\r\n",
    b"From: app@own.example\r\nFROM : " + FORGED + b"\r\n",
    b"From: app@own.example\r\nfRoM:" + FORGED + b"\r\n",
    b" From: " + FORGED + b"\r\nFrom: app@own.example\r\n",  # indented first line: a field of its own
    b"\tFrom: " + FORGED + b"\r\nSubject: x\r\nFrom: app@own.example\r\n",
    b"Subject: x\r\nnot a field\r\n From: " + FORGED + b"\r\nFrom: app@own.example\r\n",  # continues nothing
    b"From: app@own.example\r\n\x0bFrom: " + FORGED + b"\r\n",  # other whitespace is not folding
    b"From " + FORGED + b" Sat Jan  1 00:00:00 2026\r\nFrom: app@own.example\r\n",  # mbox separator
    b"Subject: x\r\nFrom: app@own.example\r\nFrom:\r\n " + FORGED + b"\r\n",  # folded first line
]


@pytest.mark.parametrize("headers", SECOND_FROM_VARIANTS)
def test_a_second_line_any_reader_takes_for_from_is_refused(headers: bytes) -> None:
    assert _verdict(headers).refusal == replies.HEADER_FROM_MISSING


@pytest.mark.parametrize(
    "headers",
    [
        b"From : " + FORGED + b"\r\n",
        b"FROM:\r\n\t" + FORGED + b"\r\n",  # the address only on the folded line
        b" From: " + FORGED + b"\r\n",
        b"Subject: x\r\n\tFrom: " + FORGED + b"\r\nfrom\t:" + FORGED + b"\r\n",
    ],
)
def test_an_only_from_in_an_odd_form_is_still_checked(headers: bytes) -> None:
    assert _verdict(headers).refusal in (replies.HEADER_FROM_NOT_ALLOWED, replies.HEADER_FROM_MISSING)


@pytest.mark.parametrize(
    "headers",
    [
        b"From: app@own.example\r\n",
        b"From : App <app@own.example>\r\n",
        b"FROM:\r\n App\r\n <app@own.example>\r\n",
        b"Subject: a subject\r\n folded with from: words\r\nFrom: app@own.example\r\n",  # a continuation stays one
        b"DKIM-Signature: v=1; h=Subject:\r\n\tFrom:To; b=x\r\nFrom: app@own.example\r\n",
        b"From: app@own.example\r\nResent-From: other@bank.example\r\nX-Original-From: a@b.example\r\n",
    ],
)
def test_one_owned_from_in_any_form_is_allowed(headers: bytes) -> None:
    assert _verdict(headers) == policy.HeaderVerdict(None, [])


# getaddresses alone reads these as one address in a subdomain of own.example (`ceo@bank.examplex.own.example`);
# RFC 5322, and the standard library's own parser, read `ceo@bank.example`: the domain is split by CFWS.
SPLIT_DOMAINS = [
    b"ceo@bank.example x.own.example",
    b"CEO <ceo@bank.example x.own.example>",
    b"CEO <ceo@bank.example\r\n x.own.example>",
    b"ceo@bank.example()x.own.example",
    b"PayPal <service@paypal.com\r\n x.own.example>",
]


@pytest.mark.parametrize("value", SPLIT_DOMAINS)
def test_a_from_whose_domain_parsers_read_differently_is_refused(value: bytes) -> None:
    headers = b"From: " + value + b"\r\n"
    assert _verdict(headers).refusal == replies.HEADER_FROM_MISSING
    parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(headers + b"\r\n")
    assert [a.domain for a in parsed["From"].addresses] != [OWN]  # what a mail client shows is not ours


@pytest.mark.parametrize("value", SPLIT_DOMAINS)
def test_a_sender_whose_domain_parsers_read_differently_is_refused(value: bytes) -> None:
    assert _verdict(b"From: app@own.example\r\nSender: " + value + b"\r\n").refusal == replies.HEADER_SENDER_NOT_ALLOWED


@pytest.mark.parametrize(
    "headers",
    [
        b"From: app@own.example\r\nFrom\r\n\t: " + FORGED + b"\r\n",  # a name alone, its colon folded onto the next
        b"From\r\n : " + FORGED + b"\r\nFrom: app@own.example\r\n",
        b"From\r\n \r\n : " + FORGED + b"\r\nFrom: app@own.example\r\n",
    ],
)
def test_a_from_name_folded_onto_its_colon_counts_as_a_second_from(headers: bytes) -> None:
    assert _verdict(headers).refusal == replies.HEADER_FROM_MISSING


def test_a_sender_name_folded_onto_its_colon_is_seen() -> None:
    headers = b"From: app@own.example\r\nSender\r\n : " + FORGED + b"\r\n"
    assert _verdict(headers).refusal == replies.HEADER_SENDER_NOT_ALLOWED


@pytest.mark.parametrize(
    "value",
    [
        b"=?utf-8?q?App_Caf=C3=A9?= <app@own.example>",
        b'"App, Inc." <app@own.example>',
        b"App (the app) <app@own.example>",
        b"app@own.example (Comment)",
        b"app@sub .own.example",  # obsolete CFWS around a dot: both readers read sub.own.example
        b"<@relay.example:app@own.example>",  # an obsolete route: the address is app@own.example
        b"App\r\n <app@own.example>",
        b'"=?utf-8?Q?Caf=C3=A9?=" <app@own.example>',  # an encoded word in quotes: a defect to one reader, not a domain
        b"=?UTF-8?Q?Alice?=<app@own.example>",
    ],
)
def test_an_owned_from_both_readers_agree_on_is_allowed(value: bytes) -> None:
    verdict = _verdict(b"From: " + value + b"\r\n")
    assert verdict.refusal is None, value


def test_every_from_that_pythons_parser_sees_is_seen_here() -> None:
    """A second opinion: whatever the standard library reads as From is among the fields counted here."""
    for headers in SECOND_FROM_VARIANTS:
        for style in (email.policy.compat32, email.policy.default):
            parsed = email.parser.BytesHeaderParser(policy=style).parsebytes(headers + b"\r\n")
            theirs = [str(v).strip() for v in parsed.get_all("From") or []]
            ours = policy.header_values(policy.header_block(headers + b"\r\n"), "From")
            assert set(theirs) <= set(ours), headers


@pytest.mark.parametrize(
    ("sender", "refusal"),
    [
        (b"", None),
        (b"Sender: app@own.example\r\n", None),
        (b"Sender: ops@mail.own.example\r\n", None),
        (b"Sender: " + FORGED + b"\r\n", replies.HEADER_SENDER_NOT_ALLOWED),
        (b"Sender : " + FORGED + b"\r\n", replies.HEADER_SENDER_NOT_ALLOWED),
        (b"Sender: app@own.example, b@own.example\r\n", replies.HEADER_SENDER_NOT_ALLOWED),
        (b"Sender: a@own.example\r\nSender: b@own.example\r\n", replies.HEADER_SENDER_NOT_ALLOWED),
        (b"Sender: undisclosed\r\n", replies.HEADER_SENDER_NOT_ALLOWED),
    ],
)
def test_sender_header_when_present_is_one_owned_mailbox(sender: bytes, refusal: str | None) -> None:
    assert _verdict(b"From: app@own.example\r\n" + sender).refusal == refusal


@pytest.mark.parametrize(
    ("sender_domain", "names"),
    [
        ("own.example", []),
        ("OWN.EXAMPLE.", []),
        ("mail.own.example", ["mail.own.example"]),
        ("a.b.own.example", ["a.b.own.example", "b.own.example"]),
        ("bank.example", []),
        ("evilown.example", []),
    ],
)
def test_owner_lookups_cover_the_sender_domain_and_every_domain_between(sender_domain: str, names: list[str]) -> None:
    assert policy.owner_lookup_names(sender_domain, OWN) == names


def test_header_addresses_in_subdomains_need_owner_lookups() -> None:
    verdict = _verdict(b"From: a@x.b.own.example\r\nSender: s@mail.own.example\r\n")
    assert verdict == policy.HeaderVerdict(None, ["b.own.example", "mail.own.example", "x.b.own.example"])


def test_a_from_with_two_addresses_is_refused_even_when_both_are_owned() -> None:
    assert _verdict(b"From: a@own.example, b@own.example\r\n").refusal == replies.HEADER_FROM_MISSING


MINE = "6f1c9c8e-0000-4000-8000-000000000001"
THEIRS = "6f1c9c8e-0000-4000-8000-000000000002"


@pytest.mark.parametrize(
    ("owners", "allowed"),
    [
        ([], True),
        ([None], True),
        ([None, None], True),
        ([MINE], True),
        ([MINE.upper(), None], True),
        ([THEIRS], False),
        ([None, THEIRS], False),  # a.b.example.com refused when another account holds b.example.com
        ([MINE, THEIRS], False),
    ],
)
def test_a_subdomain_verified_by_another_account_is_theirs(owners: list[str | None], allowed: bool) -> None:
    assert policy.owners_allow(owners, MINE) is allowed


def test_without_an_account_id_any_owner_refuses() -> None:
    assert policy.owners_allow([MINE], None) is False
    assert policy.owners_allow([None], None) is True


@pytest.mark.parametrize(
    "value",
    [
        b"\r\n ".join([b"a." * 400] * 200) + b" <app@own.example>",  # 160 KB: the strict reader is quadratic on it
        b'"a' * 2000 + b" <app@own.example>",
        b"(" * 500 + b"app@own.example",  # nested deeper than getaddresses recurses
    ],
)
def test_a_from_too_long_or_too_deep_to_read_safely_is_refused_at_once(value: bytes) -> None:
    assert _verdict(b"From: " + value + b"\r\n").refusal == replies.HEADER_FROM_MISSING

"""Tenant isolation of subdomains (docs/api.md: a subdomain another account has verified is that account's) and
the header From read the way any RFC 5322 reader would, through a running relay, a real Redis and the sink."""

from __future__ import annotations

import uuid

import redis
from taifa_events.auth_cache import domain_owner_key

from tests.integration.relay.support import Client, Credentials, Sink, message


def test_mail_from_a_subdomain_verified_by_another_account_is_refused(
    client: Client, credentials: Credentials, rdb: redis.Redis
) -> None:
    mine = credentials.create()
    sub = f"mail.{mine.domain}"
    rdb.set(domain_owner_key(sub), str(uuid.uuid4()))
    try:
        with client.login(mine) as smtp:
            for sender, code in [
                (f"app@{sub}", 553),
                (f"app@deeper.{sub}", 553),  # a domain between the sender's and the credential's is taken
                (f"app@news.{mine.domain}", 250),  # nobody has verified it: the credential's, as before
                (f"app@{mine.domain}", 250),
            ]:
                reply = smtp.docmd(f"MAIL FROM:<{sender}>")
                assert reply[0] == code, (sender, reply)
                if code == 553:
                    assert reply[1].startswith(b"5.7.1"), reply
                smtp.rset()
        rdb.set(domain_owner_key(sub), str(mine.entry.account_id))  # the session's own account verified it
        with client.login(mine) as smtp:
            assert smtp.docmd(f"MAIL FROM:<app@{sub}>")[0] == 250
    finally:
        rdb.delete(domain_owner_key(sub))


def test_header_from_in_a_subdomain_verified_by_another_account_is_refused(
    client: Client, credentials: Credentials, rdb: redis.Redis, sink: Sink
) -> None:
    mine = credentials.create()
    sub = f"mail.{mine.domain}"
    rdb.set(domain_owner_key(sub), str(uuid.uuid4()))
    sender = f"app@{mine.domain}"
    before = sink.count()
    try:
        with client.login(mine) as smtp:
            smtp.mail(sender)
            smtp.rcpt("a@dest.example")
            assert smtp.data(message(sender, from_header=f"CEO <ceo@{sub}>")) == (
                550,
                b"5.7.1 From: header rejected: not owned by user",
            )
    finally:
        rdb.delete(domain_owner_key(sub))
    assert sink.count() == before


def test_a_second_from_in_the_obsolete_form_is_refused_and_one_such_from_is_checked(
    client: Client, credentials: Credentials, sink: Sink
) -> None:
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    before = sink.count()
    with client.login(cred) as smtp:
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        code, text = smtp.data(b"From : ceo@bank.example\r\n" + message(sender))
        assert (code, text[:5]) == (550, b"5.7.1")
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        code, _ = smtp.data(b" From: ceo@bank.example\r\nSubject: indented first line\r\n\r\nx\r\n")
        assert code == 550
        assert sink.count() == before
        smtp.mail(sender)
        smtp.rcpt("a@dest.example")
        assert smtp.data(f"From : App <{sender}>\r\nSubject: obsolete but one\r\n\r\nx\r\n".encode())[0] == 250
    assert sink.count() == before + 1

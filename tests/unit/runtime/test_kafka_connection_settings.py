"""TAIFA_KAFKA_* settings become the aiokafka client options every Kafka client of a service is built with."""

from __future__ import annotations

import ssl

import pydantic
import pytest
import trustme
from taifa_runtime.kafka import KafkaConnectionSettings


def test_plaintext_is_the_default_and_carries_no_tls_or_sasl() -> None:
    options = KafkaConnectionSettings(kafka_bootstrap="k1:9092,k2:9092").kafka_client_options()
    assert options == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_a_verifying_tls_context_and_scram_credentials(tmp_path) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    settings = KafkaConnectionSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="taifa-projector",
        kafka_sasl_password="s3cret-from-a-secret",
        kafka_ca_file=ca_file,
    )
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "taifa-projector"
    assert options["sasl_plain_password"] == "s3cret-from-a-secret"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "s3cret" not in repr(settings), "the password is a SecretStr"


def test_sasl_without_credentials_is_refused_without_echoing_inputs() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        KafkaConnectionSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="only-the-password")
    assert "SASL_USERNAME" in str(refused.value)
    assert "only-the-password" not in str(refused.value)


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        KafkaConnectionSettings(kafka_security_protocol="SASL_MAGIC")

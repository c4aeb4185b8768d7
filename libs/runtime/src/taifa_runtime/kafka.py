"""How the services connect to Kafka: the TAIFA_KAFKA_* settings and the aiokafka client options they mean.

Every Kafka client of a service is built with `**settings.kafka_client_options()`, so TLS and SASL
(PLAIN or SCRAM) apply to producers, consumers and admin clients alike. The local Tansu broker
uses the plaintext defaults.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnectionSettings(BaseModel):
    """Mixed into a service's `Settings` (pydantic-settings, env prefix `TAIFA_`)."""

    # A settings error must never echo the inputs: they include passwords.
    model_config = ConfigDict(hide_input_in_errors=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port[,host:port]).")
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256/512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (with a SASL_* protocol).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (with a SASL_* protocol).")
    kafka_ca_file: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (SSL/SASL_SSL); system CAs if unset."
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConnectionSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("TAIFA_KAFKA_SASL_USERNAME and TAIFA_KAFKA_SASL_PASSWORD are required with SASL")
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            cafile = str(self.kafka_ca_file) if self.kafka_ca_file else None
            options["ssl_context"] = ssl.create_default_context(cafile=cafile)
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None  # checked by the validator
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options

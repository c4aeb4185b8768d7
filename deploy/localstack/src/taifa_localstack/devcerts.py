"""A throwaway dev CA and the relay's ECDSA P-256 certificate, generated at run time (never committed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class DevCertificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_dev_certificates(directory: Path, identities: tuple[str, ...] = ("localhost", "127.0.0.1")) -> DevCertificates:
    """Write ca.pem, relay.pem (chain) and relay-key.pem into `directory` (mode 0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA, organization_name="Taifa Mail dev CA")
    leaf = ca.issue_cert(*identities, key_type=trustme.KeyType.ECDSA)
    files = DevCertificates(directory / "ca.pem", directory / "relay.pem", directory / "relay-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    leaf.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    with open(files.cert_file, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return files

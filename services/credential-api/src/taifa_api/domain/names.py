"""Domain-name normalisation and validation: lowercase, IDNA (UTS #46 + IDNA 2008), lengths and labels."""

from __future__ import annotations

import re
from typing import Final

import idna

from taifa_api.domain.errors import InvalidDomainName

MAX_NAME_LENGTH: Final = 246  # DNS allows 253; the TXT record's name, `_taifa.` + the name, must fit in that too
MAX_LABEL_LENGTH: Final = 63
_LDH_LABEL: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# The full stops UTS #46 maps to "." (ideographic, fullwidth, halfwidth ideographic): one of them may end a name too.
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def normalise_domain_name(raw: str) -> str:
    """The ASCII (A-label) lowercase form of `raw`, or InvalidDomainName.

    Accepts Unicode names (`bücher.example` → `xn--bcher-kva.example`, `bücher。example` too) and one trailing dot.
    Requires at least two labels, letters-digits-hyphens only, a TLD that is not all digits, and at most
    MAX_NAME_LENGTH characters (so that `_taifa.<name>`, where its verification record lives, is a DNS name).
    """
    name = raw.strip().translate(_DOTS)
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME_LENGTH * 4:
        raise InvalidDomainName("domain name is empty or too long")
    if any(ch.isspace() for ch in name) or "@" in name or "/" in name:
        raise InvalidDomainName("domain name contains characters that are not allowed")
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomainName("domain name is not a valid internationalised domain name") from exc
    if len(ascii_name) > MAX_NAME_LENGTH:
        raise InvalidDomainName(
            f"domain name is longer than {MAX_NAME_LENGTH} characters (its verification record _taifa.<name> "
            "would be longer than DNS allows)"
        )
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise InvalidDomainName("domain name needs at least two labels")
    for label in labels:
        if not label or len(label) > MAX_LABEL_LENGTH or not _LDH_LABEL.match(label):
            raise InvalidDomainName("domain name has an invalid label")
    if labels[-1].isdigit():
        raise InvalidDomainName("the top-level label cannot be numeric")
    return ascii_name

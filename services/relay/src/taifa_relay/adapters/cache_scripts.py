"""The Lua scripts the relay runs on the auth cache's Redis, and what they need: AUTH's and the re-checks' read
(`READ`, run as EVALSHA_RO), MAIL's re-check and per-minute count in one round trip (`MAIL_CHECK`, EVALSHA), and
the stand-in entry that keeps an unknown username's AUTH as costly as a known one's (case A11)."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from taifa_events.auth_cache import AuthCacheEntry, CachedSecret

# Parsed for an unknown username, so that its reply takes as long as a known one's: a v2 entry with two secrets
# and an allowlist, as a rotated, restricted credential has.
NO_ID = UUID(int=0)
STAND_IN = {
    name.encode(): value.encode()
    for name, value in AuthCacheEntry(
        credential_id=NO_ID,
        account_id=NO_ID,
        domain_id=NO_ID,
        domain="stand-in.invalid",
        secret_hash="0" * 64,
        hash_scheme="sha256",
        active=False,
        position=1,
        secrets=(
            CachedSecret(id=NO_ID, hash="0" * 64, scheme="sha256"),
            CachedSecret(id=UUID(int=1), hash="1" * 64, scheme="sha256", expires_at=1),
        ),
        allowed_cidrs=("192.0.2.0/24",),
    )
    .to_redis()
    .items()
}


# AUTH's read and the re-checks' read, each one script (atomic as the MULTI it replaces, and one command to encode and
# one reply to parse instead of MULTI, each command, its QUEUED and EXEC): KEYS are the entry, the epoch, the watermark
# and (AUTH) the two failure counters; the reply is 1/0 (entry found or not), the entry's HGETALL, then each other key's
# GET (nil: missing). For a missing entry, AUTH asks for ARGV[1] copies of ARGV[2] in its place, so that an unknown
# username's reply is as large and costs Redis the same work as a known one's (case A11: similar timing).
READ: Final = """
local entry = redis.call('HGETALL', KEYS[1])
local found = 1
if #entry == 0 then
  found = 0
  for i = 1, tonumber(ARGV[1]) do entry[i] = ARGV[2] end
end
local out = {found, entry}
for i = 2, #KEYS do out[i + 1] = redis.call('GET', KEYS[i]) end
return out
"""
# What AUTH's read returns in place of a missing entry: as many strings as a rotated, restricted entry has, of its
# average length.
STAND_IN_ARGS = (
    str(2 * len(STAND_IN)),
    "x" * (sum(len(k) + len(v) for k, v in STAND_IN.items()) // (2 * len(STAND_IN))),
)


def fields_of(flat: list[bytes]) -> dict[bytes, bytes]:
    """An HGETALL reply (field, value, field, value...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


# MAIL of a logged-in session whose entry was judged valid (at AUTH or a re-read): the re-read and the per-minute count
# in one script, so that a refused MAIL still takes nothing from the minute. It counts only when the cache is trusted
# (epoch present, watermark not below the highest one this relay has read) and the entry is exactly the one judged
# (every field equal): the judgement would then be the same, and the application has already applied it at this
# clock. Otherwise nothing is written and the entry is returned for the usual judgement (then the count is a second
# command, as without this script). KEYS: only the counter it writes. The auth keys come in ARGV and are only read:
# the relay's ACL lets it read them, never write them (`%R~taifa:auth:*`), and it checks a script's commands one by
# one. One Redis primary holds the auth cache and the counters (not Redis Cluster): `no-cluster`.
# ARGV: entry key, epoch key, watermark key, highest watermark read (digits), the minute limit (0: none), the
# counter's TTL, then the judged entry's fields (field, value, ...).
# Returns {1, 1, epoch, watermark}: counted; {1, 0, ...}: over the limit, nothing counted; {0, 0, epoch, watermark,
# the entry's HGETALL}: not the judged entry or not trusted, nothing counted.
MAIL_CHECK: Final = """#!lua flags=no-cluster
local entry = redis.call('HGETALL', ARGV[1])
local epoch = redis.call('GET', ARGV[2])
local watermark = redis.call('GET', ARGV[3])
local same = epoch and watermark and string.match(watermark, '^%d+$') and #entry == #ARGV - 6
if same then
  local mark = string.gsub(watermark, '^0+', '')
  local seen = ARGV[4]
  if seen ~= '0' and (#mark < #seen or (#mark == #seen and mark < seen)) then same = false end
end
if same then
  local judged = {}
  for i = 7, #ARGV, 2 do judged[ARGV[i]] = ARGV[i + 1] end
  for i = 1, #entry, 2 do
    if judged[entry[i]] ~= entry[i + 1] then
      same = false
      break
    end
  end
end
if not same then return {0, 0, epoch, watermark, entry} end
local count = redis.call('INCRBY', KEYS[1], 1)
if count == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6])) end
local limit = tonumber(ARGV[5])
if limit > 0 and count > limit then
  redis.call('DECRBY', KEYS[1], 1)
  return {1, 0, epoch, watermark}
end
return {1, 1, epoch, watermark}
"""

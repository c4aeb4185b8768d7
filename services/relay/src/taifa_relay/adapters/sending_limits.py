"""The sending-limit counters in Redis (`application.ports.SendingLimits`): one Lua script checks and counts
every counter a command takes atomically (INCRBY; over a limit: DECRBY what it added, refuse), so that relay
instances on one Redis share each limit exactly. Run with EVALSHA (redis-py's Script, EVAL once after a
NOSCRIPT). A crossing of 80 %/100 % of an account's daily quota is LPUSHed as a JSON notice for the projector's
flusher by the same script: exactly one increment crosses each threshold, so it is announced once, and counted and
announced cannot come apart (a client gone mid-RCPT, a relay killed or a Redis error between two commands lost it)."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Final

from redis.exceptions import RedisError, ResponseError
from taifa_events import usage

from taifa_relay.adapters import metrics
from taifa_relay.adapters.redis_connection import REDIS_TIMEOUT_SECONDS, relay_redis
from taifa_relay.adapters.redis_multiplex import MultiplexedRedis
from taifa_relay.application.ports import CacheUnavailable, RecipientTaken, WriteRefused

log = logging.getLogger("taifa.relay.limits")


# KEYS: the counters, then (with a notice) the quota notices' list; ARGV[1]: n; then for each counter its limit (0:
# count, never refuse) and its TTL; then, optionally, a quota notice's JSON up to its last two fields: when the first
# counter (the account's day) crosses a threshold of its limit, the notice is completed with the threshold percent
# and the count and LPUSHed (`usage.crossed_threshold`'s rule: the highest of 80 and 100 with before < limit * p / 100
# <= after). Returns {index of the counter that refused (0: none), count of each counter after the command}.
_TAKE: Final = """
local n = tonumber(ARGV[1])
local counters, notice = #KEYS, nil
if #ARGV == 2 * #KEYS then counters, notice = #KEYS - 1, ARGV[#ARGV] end
local counts = {}
for i = 1, counters do
  local key = KEYS[i]
  local c = redis.call('INCRBY', key, n)
  if c == n then redis.call('EXPIRE', key, tonumber(ARGV[2 * i + 1])) end
  local limit = tonumber(ARGV[2 * i])
  if limit > 0 and c > limit then
    for j = 1, i do redis.call('DECRBY', KEYS[j], n) end
    counts[i] = c - n
    return {i, unpack(counts)}
  end
  counts[i] = c
end
if notice then
  local quota, before, crossed = tonumber(ARGV[2]), counts[1] - n, nil
  for _, percent in ipairs({THRESHOLDS}) do
    local limit = quota * percent / 100
    if before < limit and limit <= counts[1] then crossed = percent end
  end
  if crossed then
    redis.call('LPUSH', KEYS[#KEYS], notice .. ',"percent":' .. crossed .. ',"count":' .. counts[1] .. '}')
  end
end
return {0, unpack(counts)}
""".replace("{THRESHOLDS}", "{" + ", ".join(str(percent) for percent in usage.QUOTA_THRESHOLDS) + "}")


class RedisSendingLimits:
    """The counters of every relay instance, in the Redis of the auth cache."""

    def __init__(
        self, url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS, scripts: MultiplexedRedis | None = None
    ) -> None:
        self._redis = relay_redis(url, timeout=timeout, retry_on_timeout=False)
        # The script on the connection shared with the auth cache's reads (adapters.redis_multiplex).
        self._scripts = scripts if scripts is not None else MultiplexedRedis(self._redis, timeout=timeout)
        self._take_sha = hashlib.sha1(_TAKE.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    async def _run(self, keys: list[str], args: list[int | str]) -> list[int]:
        try:
            result = await self._scripts.evalsha(self._take_sha, _TAKE, keys, list(args))
        except ResponseError as exc:
            metrics.REDIS_WRITES_REFUSED.inc()
            log.error("Redis refused the sending-limit script", extra={"error": str(exc)[:200]})
            raise WriteRefused(type(exc).__name__) from None
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(type(exc).__name__) from None
        return [int(value) for value in result]

    async def take_message(self, credential_id: str, per_minute: int, now: float) -> bool:
        key = usage.minute_limit_key(credential_id, usage.minute_start(now))
        refused, *_ = await self._run([key], [1, per_minute, usage.MINUTE_LIMIT_TTL_SECONDS])
        return refused == 0

    async def take_recipient(
        self, credential_id: str, account_id: str, per_day: int | None, quota: int, now: float
    ) -> RecipientTaken:
        day = usage.utc_day(now)
        # The credential's day is counted without a limit too (0: count, never refuse): a messages_per_day set
        # during the day is then compared with everything sent that day, not only with what follows it.
        keys = [usage.account_quota_key(account_id, day), usage.day_limit_key(credential_id, day)]
        args: list[int | str] = [1, quota, usage.ACCOUNT_QUOTA_TTL_SECONDS, per_day or 0, usage.DAY_LIMIT_TTL_SECONDS]
        if quota > 0:  # the script completes and pushes it only if this recipient crosses 80 % or 100 %
            keys.append(usage.QUOTA_NOTICES_KEY)
            args.append(_notice_head(credential_id, account_id, day, quota, now))
        refused, account_count, *_ = await self._run(keys, args)
        metrics.QUOTA_USED.observe(account_count / quota if quota else 1.0)
        if refused == 1:
            return RecipientTaken("quota", account_count)
        if refused == 2:
            return RecipientTaken("limits", account_count)
        percent = usage.crossed_threshold(account_count - 1, account_count, quota)
        if percent is not None:  # the script pushed its notice
            metrics.QUOTA_THRESHOLDS.labels(percent=str(percent)).inc()
        return RecipientTaken(None, account_count)

    async def close(self) -> None:
        await self._scripts.aclose()
        await self._redis.aclose()


def _notice_head(credential_id: str, account_id: str, day: str, quota: int, now: float) -> str:
    """A `usage.QuotaNotice`'s JSON without its closing brace and its last two fields, `percent` and `count`, which
    the script adds (it alone knows whether, and which threshold, this recipient crossed)."""
    head = {
        "account_id": account_id,
        "credential_id": credential_id,
        "day": day,
        "quota": quota,
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
    }
    return json.dumps(head, separators=(",", ":"))[:-1]

//! The Lua scripts of the Redis store: each is one atomic step on one
//! user's keys (or on one app's access token), which share a hash slot.

use std::sync::LazyLock;

use redis::Script;

/// Lua shared by the scripts on a user's index (`KEYS[1]`).
///
/// - `index(key)`: turns an index left by an earlier release (a hash: store
///   id → end, and `k` → `<until>:<session_key>`) into the sorted set.
/// - `keep_until(key, floor)`: makes the index live until its last member
///   ends (and at least until `floor`).
/// - `ending(key)`: every member of an `ending` set, which lives until its
///   last member ends.
macro_rules! index_lib {
    () => {
        r"
local function keep_until(key, floor)
  local last = floor
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > last then last = tonumber(top[2]) end
  local k = redis.call('ZRANGEBYSCORE', key, '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
  if k[2] and -tonumber(k[2]) > last then last = -tonumber(k[2]) end
  if last > 0 then redis.call('PEXPIREAT', key, last) end
end
local function index(key)
  if redis.call('TYPE', key).ok ~= 'hash' then return end
  local all = redis.call('HGETALL', key)
  redis.call('DEL', key)
  for i = 1, #all, 2 do
    if all[i] == 'k' then
      local ms, k = string.match(all[i + 1], '^(%d+):(.*)$')
      if ms then redis.call('ZADD', key, -tonumber(ms), 'k:' .. k) end
    else
      local ends = tonumber(string.match(all[i + 1], '^%d+'))
      if ends then redis.call('ZADD', key, ends, all[i]) end
    end
  end
  keep_until(key, 0)
end
local function ending(key)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local ids = {}
  for i = 1, #all, 2 do ids[#ids + 1] = all[i] end
  if #all > 0 then redis.call('PEXPIREAT', key, all[#all]) end
  return ids
end
"
    };
}

/// A login's one atomic step on the user's keys (`KEYS[1]` the index,
/// `KEYS[2]` its `ending` set): drops ended members, puts the newest
/// `session_key` (`ARGV[5]`, the member `k:<key>`, until `ARGV[6]`; none if
/// empty), adds the session `ARGV[1]` ending at `ARGV[2]`, and moves the
/// oldest others beyond `ARGV[4]` sessions (0: no cap) to `ending`;
/// `ARGV[3]` is now. Returns every
/// member of `ending` (this login's, and any a failed call left), for the
/// caller to delete and announce. Work: O(log n) in the index's size, plus
/// what it moves; never a read of the whole index.
pub(super) static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now)
if ARGV[5] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(0')
  redis.call('ZADD', KEYS[1], -tonumber(ARGV[6]), ARGV[5])
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local over = 0
if tonumber(ARGV[4]) > 0 then
  over = redis.call('ZCOUNT', KEYS[1], '(0', '+inf') - tonumber(ARGV[4])
end
if over > 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'WITHSCORES', 'LIMIT', 0, over + 1)
  for i = 1, #oldest, 2 do
    if over > 0 and oldest[i] ~= ARGV[1] then
      redis.call('ZADD', KEYS[2], oldest[i + 1], oldest[i])
      redis.call('ZREM', KEYS[1], oldest[i])
      over = over - 1
    end
  end
end
keep_until(KEYS[1], tonumber(ARGV[2]))
return ending(KEYS[2])
"
    ))
});

/// A revoke's one atomic step: moves every session of the index to
/// `ending` and forgets the newest `session_key`; returns every member of
/// `ending`. Nothing leaves the index without being listed here.
pub(super) static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'WITHSCORES')
for i = 1, #live, 2 do redis.call('ZADD', KEYS[2], live[i + 1], live[i]) end
redis.call('DEL', KEYS[1])
return ending(KEYS[2])
"
    ))
});

/// The live sessions of an index (scored after now, `ARGV[1]`), converting
/// an index in the previous release's layout first, as every script does.
pub(super) static SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
"
    ))
});

/// Puts the newest `session_key` (member `ARGV[1]`, until `ARGV[2]`).
pub(super) static PUT_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(0')
redis.call('ZADD', KEYS[1], -tonumber(ARGV[2]), ARGV[1])
keep_until(KEYS[1], tonumber(ARGV[2]))
return 1
"
    ))
});

/// The newest `session_key` member and its (negated) end.
pub(super) static GET_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
"
    ))
});

/// The prefix of the newest-`session_key` member of an index.
pub(super) const KEY_MEMBER: &str = "k:";

/// Moves the idle deadline inside the record and the key's expiry with it.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
",
    )
});

/// Replaces a record if, but for its idle deadline, it is still the one
/// read (`ARGV[1]`), keeping its expiry and its current idle deadline (the
/// 8 bytes at offset `ARGV[3]`, which `TOUCH` rewrites in place): a change
/// of session data neither loses a concurrent idle extension nor retries
/// because of one. Returns 0 when something else changed meanwhile (or the
/// record is gone).
pub(super) static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local old, new, off = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function rest(r) return r:sub(1, off) .. r:sub(off + 9) end
if #cur ~= #old or rest(cur) ~= rest(old) then return 0 end
redis.call('SET', KEYS[1], new:sub(1, off) .. cur:sub(off + 1, off + 8) .. new:sub(off + 9), 'KEEPTTL')
return 1
",
    )
});

/// Deletes the shared access token if it is still the given one.
/// The value is `<obtained ms>:<expires ms>:<token>`.
pub(super) static DISCARD_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^%d+:%d+:(.*)$') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Deletes the refresh lock if the caller still owns it.
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

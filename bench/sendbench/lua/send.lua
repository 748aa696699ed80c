-- Sends: every request a POST of a fresh comment to one room, as one of
-- many users (Bearer tokens). Run with one connection per wrk thread
-- (-t N -c N): a thread's requests then go one after another, so the time
-- between request() and response() is that request's latency, and the
-- latency can be kept per answer status (wrk's own histogram mixes them).
-- Each thread sends as its own slice of the users, round robin: with U
-- users, R sends/s in all, a user sends every U / R seconds.
-- Optionally paced: delay() holds the thread to rate / threads sends/s.
-- Each user keeps the room's slow mode as the viewer page does: its next
-- send waits until slow_mode_ms after its previous answer (delay() holds
-- the thread for it), so a fast answer never makes a closed loop send as
-- a user who must still wait (which would measure 429s, not sends).
-- Optionally warmed up on the same connections: requests sent before
-- measure_from are sent alike but not counted, so that each server process
-- has met the users of the connections it holds (its caches) when counting
-- starts, as a process that has been up a while has.
-- wrk args: <data file: a Lua chunk returning
--   {path=, tokens={...}, threads=, rate= (0: as fast as answered),
--    nonce= (client_id prefix), base= (first text number),
--    measure_from= (CLOCK_MONOTONIC µs: count requests sent from then on),
--    slow_mode_ms= (each user's interval; 0: none)}>
-- Reports pullbench's JSON line (report.lua) and one SENDBENCH-JSON line.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "../../pullbench/lua/report.lua")

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } sendbench_timespec;
int clock_gettime(int clock_id, sendbench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("sendbench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000000 + tonumber(timespec.tv_nsec) / 1000
end

local TEXTS = { "主播太厉害了哈哈哈", "前方高能预警!!!", "这波操作666", "awsl 好可爱", "来了来了", "弹幕护体" }
local HEADERS = { ["Content-Type"] = "application/json" }

-- Globals: report.lua and done() read them from each thread. Only numbers
-- and strings: wrk 4.1's thread:get() copies a table with one pop too many,
-- which breaks a nested table and can crash wrk. So a histogram is a set of
-- globals, "h<name>_<bucket>" (<name>: "all" or a status), and "seen" lists
-- the statuses answered.
sends = 0
answered = 0
-- Sent before measure_from (not counted).
warm_sends = 0
seen = ""
hmin, hmax = math.huge, -1
-- Pacing: slots skipped because the thread fell more than a second behind.
skipped = 0
-- Times the thread waited for its next user's slow mode.
held = 0

local path, tokens, nonce, base, sent_at, thread_count, measure_from
-- Slow mode: per user (index in tokens), when it may send again (ms); the
-- user of the request in flight.
local slow_mode_ms, ready_at, current = 0, {}, nil
local pacing = false
local interval_ms, next_at_ms = 0, nil
-- Thread 0's request() is called once before the run, to check it
-- (wrk's script_verify_request): that one is not a send.
local verifying = false

function init(args)
  local data = dofile(args[1])
  path = data.path
  nonce = data.nonce
  base = data.base
  measure_from = data.measure_from or 0
  slow_mode_ms = data.slow_mode_ms or 0
  local threads = data.threads
  thread_count = threads
  tokens = {}
  for i, token in ipairs(data.tokens) do
    if (i - 1) % threads == thread_id then
      table.insert(tokens, token)
    end
  end
  if #tokens == 0 then
    error("thread " .. thread_id .. " has no users: give at least as many users as connections")
  end
  if data.rate > 0 then
    pacing = true
    interval_ms = 1000 * threads / data.rate
    -- Threads start spread over one interval, not all at once.
    next_at_ms = now_us() / 1000 + interval_ms * thread_id / threads
  elseif slow_mode_ms <= 0 then
    -- No delay() at all: wrk then sends each request as soon as it can.
    delay = nil
  end
  verifying = thread_id == 0
end

function delay()
  local now_ms = now_us() / 1000
  local wait = 0
  if pacing then
    if now_ms - next_at_ms > 1000 then
      -- More than a second behind: skip the missed slots rather than send
      -- them in a burst.
      local missed = math.floor((now_ms - next_at_ms) / interval_ms)
      skipped = skipped + missed
      next_at_ms = next_at_ms + missed * interval_ms
    end
    wait = next_at_ms - now_ms
    next_at_ms = next_at_ms + interval_ms
  end
  -- The next request's user (as request() picks it) may still be in slow mode.
  local ready = ready_at[((sends + warm_sends) % #tokens) + 1]
  if ready ~= nil and ready - now_ms > wait then
    wait = ready - now_ms
    held = held + 1
  end
  if wait < 0 then
    return 0
  end
  return math.floor(wait)
end

function request()
  local n = sends + warm_sends
  if verifying then
    verifying = false
  else
    sent_at = now_us()
    if sent_at >= measure_from then
      sends = sends + 1
    else
      warm_sends = warm_sends + 1
      sent_at = nil
    end
  end
  -- Every text differs (a number no other thread, nor another run, uses):
  -- moderation's repeat and flood rules would otherwise block the same text
  -- sent by many users at once, and the run would measure retractions.
  local body = string.format(
    '{"text": "%s %d", "client_id": "%s-%d-%d"}',
    TEXTS[(n % #TEXTS) + 1], base + n * thread_count + thread_id, nonce, thread_id, n
  )
  current = (n % #tokens) + 1
  HEADERS["Authorization"] = "Bearer " .. tokens[current]
  return wrk.format("POST", path, HEADERS, body)
end

-- Latency buckets 2 % wide: bucket b holds [GROWTH^b, GROWTH^(b+1)) µs.
local GROWTH = 1.02
local LOG_GROWTH = math.log(GROWTH)

local function record(name, b)
  local key = "h" .. name .. "_" .. b
  _G[key] = (_G[key] or 0) + 1
end

function response(status, headers, body)
  if current ~= nil and slow_mode_ms > 0 then
    ready_at[current] = now_us() / 1000 + slow_mode_ms
  end
  if sent_at == nil then
    -- The warm-up's (or the verifying request's, never sent).
    return
  end
  answered = answered + 1
  local name = tostring(status)
  local count = "n" .. name
  if _G[count] == nil then
    _G[count] = 0
    seen = seen .. " " .. name
  end
  _G[count] = _G[count] + 1
  local b = math.floor(math.log(math.max(now_us() - sent_at, 1)) / LOG_GROWTH)
  if b < hmin then hmin = b end
  if b > hmax then hmax = b end
  record("all", b)
  record(name, b)
end

-- The main state: merge every thread's counts after pullbench's line.
local threads = {}
local pull_setup, pull_done = setup, done

function setup(thread)
  pull_setup(thread)
  table.insert(threads, thread)
end

local function percentiles(h, low, high)
  local total = 0
  for b = low, high do
    total = total + (h[b] or 0)
  end
  local out, seen_count, wanted, w = {}, 0, { 50, 90, 99 }, 1
  local max = 0
  for b = low, high do
    local count = h[b] or 0
    if count > 0 then
      seen_count = seen_count + count
      -- A bucket's middle, in µs.
      local value = GROWTH ^ (b + 0.5)
      max = value
      while w <= #wanted and seen_count >= math.ceil(total * wanted[w] / 100) do
        out["p" .. wanted[w]] = value
        w = w + 1
      end
    end
  end
  return string.format(
    '{"count": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}',
    total, out.p50 or 0, out.p90 or 0, out.p99 or 0, max
  )
end

function done(summary, latency, requests)
  pull_done(summary, latency, requests)
  local total_sent, total_answered, total_skipped, total_held = 0, 0, 0, 0
  local counts, names = {}, { "all" }
  local low, high = math.huge, -1
  for _, thread in ipairs(threads) do
    total_sent = total_sent + (tonumber(thread:get("sends")) or 0)
    total_answered = total_answered + (tonumber(thread:get("answered")) or 0)
    total_skipped = total_skipped + (tonumber(thread:get("skipped")) or 0)
    total_held = total_held + (tonumber(thread:get("held")) or 0)
    low = math.min(low, tonumber(thread:get("hmin")) or math.huge)
    high = math.max(high, tonumber(thread:get("hmax")) or -1)
    for name in string.gmatch(thread:get("seen") or "", "%S+") do
      if counts[name] == nil then
        counts[name] = 0
        table.insert(names, name)
      end
      counts[name] = counts[name] + (tonumber(thread:get("n" .. name)) or 0)
    end
  end
  local parts, lat = {}, {}
  for _, name in ipairs(names) do
    if name ~= "all" then
      table.insert(parts, string.format('"%s": %d', name, counts[name]))
    end
    local h = {}
    for _, thread in ipairs(threads) do
      for b = low, high do
        local count = tonumber(thread:get("h" .. name .. "_" .. b))
        if count then
          h[b] = (h[b] or 0) + count
        end
      end
    end
    table.insert(lat, string.format('"%s": %s', name, percentiles(h, low, high)))
  end
  io.write(string.format(
    'SENDBENCH-JSON {"sent": %d, "answered": %d, "skipped": %d, "held": %d, "statuses": {%s}, "latency_us": {%s}}\n',
    total_sent, total_answered, total_skipped, total_held, table.concat(parts, ", "), table.concat(lat, ", ")
  ))
end

-- Many rooms: each request takes a (room, cursor) pair from a list drawn
-- with the rooms' popularity (a few big rooms, a long tail), so the server
-- answers from many memoized states; optionally every Nth request is a send.
-- wrk args: <data file: a Lua chunk returning {pulls=, send_every=, sends=, tokens=}>
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

local pulls, send_every, send_paths, tokens
-- A global, so report.lua reads it from each thread at the end.
sends = 0
local count = 0
local pull_headers = { ["Accept-Encoding"] = "gzip" }

function init(args)
  local data = dofile(args[1])
  -- Formatted once: a request is then one table lookup.
  pulls = {}
  for i, path in ipairs(data.pulls) do
    pulls[i] = wrk.format("GET", path, pull_headers)
  end
  send_every = data.send_every or 0
  send_paths = data.sends or {}
  tokens = data.tokens or {}
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end

local function send_request()
  sends = sends + 1
  local body = string.format(
    '{"text": "bench %d", "color": "#ffcc00", "mode": "scroll", "client_id": "wrk-%d-%d-%d"}',
    sends, thread_id or 0, sends, math.random(1000000000)
  )
  return wrk.format("POST", send_paths[math.random(#send_paths)], {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(sends % #tokens) + 1],
    ["Accept-Encoding"] = "gzip",
  }, body)
end

function request()
  count = count + 1
  if send_every > 0 and count % send_every == 0 then
    return send_request()
  end
  return pulls[math.random(#pulls)]
end

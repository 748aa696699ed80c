-- One hot room: every connection asks the same question (one room, one
-- cursor), as all viewers of a big room do between two of its seconds.
-- wrk args: <path with ?after=cursor>
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  -- No request() function: wrk sends this one prebuilt request, like the
  -- bare baseline run, so the load generator costs the same in both.
  wrk.method = "GET"
  wrk.path = args[1]
  wrk.headers["Accept-Encoding"] = "gzip"
end

-- Shared by every scenario: remember the threads, then report the run as
-- one JSON line (marked, so the runner finds it among wrk's own output).
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local sends = 0
  for _, thread in ipairs(threads) do
    sends = sends + (tonumber(thread:get("sends")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'PULLBENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "sends": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, sends,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
  ))
end

-- wrk script for bench/gateway_bench.py.
--
-- done() prints one line "WRK_JSON {...}" with the figures the benchmark needs,
-- so it never has to parse wrk's human-readable summary (whose units change
-- with magnitude). Latencies are in microseconds, as wrk records them.
--
-- Optional pacing: `wrk ... -s wrk_report.lua URL -- rate=R` sends R requests
-- per second per wrk thread on a fixed schedule (wrk2 is not in Debian). Each
-- request claims the next slot of the thread's schedule, whichever connection
-- sends it, so the rate does not follow the server's latency as a plain
-- think-time delay would. Latency is still measured from the actual send, so
-- the figures are only honest while the rate stays well below saturation
-- (the benchmark checks the achieved rate).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clock_id, wrk_timespec *tp);
]])

local CLOCK_MONOTONIC = 1
local timespec = ffi.new("wrk_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

function init(args)
  local rate = nil
  for _, arg in ipairs(args) do
    local value = arg:match("^rate=(.+)$")
    if value then
      rate = tonumber(value)
    end
  end
  if rate == nil or rate <= 0 then
    return
  end
  -- wrk looks for a global delay() after init(), so defining it here turns pacing on.
  local interval = 1000 / rate
  local next_slot = nil
  delay = function()
    local now = now_ms()
    if next_slot == nil then
      next_slot = now
    end
    local wait = next_slot - now
    next_slot = next_slot + interval
    if wait < 0 then
      return 0 -- behind schedule: send at once and catch up
    end
    return wait -- wrk truncates to whole milliseconds; the schedule itself stays exact
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end

-- Shared helpers for cartd's wrk scripts (loaded with dofile from the script's
-- own directory): thread numbering and seeding, the session file and the
-- RESULT line, one format for every script (cartd's routes and the
-- tutorial's), so that scripts/perf.sh reads and judges them alike.
local M = {}

-- wrk's setup(): numbers the threads, so each has its own `tid` (1, 2, ...).
-- Use as `setup = common.setup`.
local counter = 0
function M.setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

-- Seeds this thread's random numbers apart from the other threads'. Call
-- from init(); `tid` is the global M.setup gave this thread.
function M.seed()
  math.randomseed(os.time() * 1000 + (tid or 0))
end

-- One session id per line of `path`.
function M.load_ids(path)
  assert(path, "pass the sessions file after --, e.g. wrk ... -- /path/sessions.txt")
  local ids = {}
  for line in io.lines(path) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  assert(#ids > 0, "no session ids in " .. path)
  return ids
end

-- A distinct client address for the cart at `index` (10.x.y.z), sent as
-- X-Forwarded-For when a script is asked to (a cartd trusting 127.0.0.1 as
-- its proxy then counts each cart's client apart, as real shoppers are).
function M.client_of(index)
  return string.format("10.%d.%d.%d", math.floor(index / 65536) % 256, math.floor(index / 256) % 256, index % 256)
end

-- One machine-parseable line, printed once at the end.
function M.done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end

return M

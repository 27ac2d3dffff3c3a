-- wrk script: GET /v1/cart with a cart-session-id chosen at random per request.
-- usage: wrk -t2 -c64 -d15s -s v1-get-cart.lua http://127.0.0.1:8080 -- sessions.txt
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local ids, n
function init(args)
  ids = {}
  for line in io.lines(args[1]) do if #line > 0 then ids[#ids + 1] = line end end
  n = #ids
  math.randomseed(os.time() * 1000 + (tid or 0))
end

local headers = {}
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  return wrk.format("GET", "/v1/cart", headers)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end

-- wrk script: GET /v1/cart with a cart-session-id chosen at random per request.
-- usage: wrk -t2 -c64 -d15s -s v1-get-cart.lua http://127.0.0.1:8080 -- sessions.txt
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local ids, n
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  math.randomseed(os.time() * 1000 + (tid or 0))
end

local headers = {}
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  return wrk.format("GET", "/v1/cart", headers)
end

done = common.done

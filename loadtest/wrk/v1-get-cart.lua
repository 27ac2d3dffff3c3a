-- wrk script: a cart read, GET PATH (default /v1/cart) with a cart-session-id
-- chosen at random per request. tutorial-get-cart.lua is this with
-- /get-cart.
-- usage: wrk -t2 -c64 -d15s -s v1-get-cart.lua http://127.0.0.1:8080 -- sessions.txt [PATH]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n, path
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  path = args[2] or "/v1/cart"
  common.seed()
end

local headers = {}
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  return wrk.format("GET", path, headers)
end

done = common.done

-- wrk script: a cart read, GET PATH (default /v1/cart) with a cart-session-id
-- chosen at random per request. tutorial-get-cart.lua is this with
-- /get-cart.
-- usage: wrk -t2 -c64 -d15s -s v1-get-cart.lua http://127.0.0.1:8080 -- sessions.txt [PATH] [xff]
--   xff: send X-Forwarded-For with a client address per cart (common.client_of)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n, path, xff
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  path = args[2] or "/v1/cart"
  xff = args[3] == "xff"
  common.seed()
end

local headers = {}
function request()
  local i = math.random(n)
  headers["cart-session-id"] = ids[i]
  if xff then headers["X-Forwarded-For"] = common.client_of(i) end
  return wrk.format("GET", path, headers)
end

done = common.done

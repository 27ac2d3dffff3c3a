-- wrk script for the tutorial's read: GET /get-cart with the cart-session-id
-- of an existing cart, picked at random from a file of session ids. Runs
-- against the tutorial peer (loadtest/peers/tutorial) and cartd alike.
-- usage: wrk -t2 -c64 -d15s -s tutorial-get-cart.lua http://127.0.0.1:3000 -- sessions.txt
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  common.seed()
end

local headers = {}
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  return wrk.format("GET", "/get-cart", headers)
end

done = common.done

-- wrk script for the tutorial's write: POST /add-to-cart of a random line
-- (product prod-1..PRODUCTS, item inv-1..inv-100, 1-5 units) to an existing
-- cart picked at random from a file of session ids. Runs against the
-- tutorial peer (loadtest/peers/tutorial) and cartd alike.
-- usage: wrk -t2 -c64 -d15s -s tutorial-add-to-cart.lua http://127.0.0.1:3000 -- sessions.txt [PRODUCTS]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n, products
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  products = tonumber(args[2] or "10000")
  common.seed()
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  local body = string.format('{"product_id":"prod-%d","inventory_id":"inv-%d","quantity":%d}',
    math.random(products), math.random(100), math.random(5))
  return wrk.format("POST", "/add-to-cart", headers, body)
end

done = common.done

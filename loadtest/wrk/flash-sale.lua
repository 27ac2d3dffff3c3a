-- wrk script: every request asks for one more unit of the same item on a new
-- line (a product id never used before) of a random existing cart: the flash
-- sale. 200 = held, 409 = sold out. Each cart gains about requests / sessions
-- lines, which the line limit must allow (CART__LIMITS__MAX_LINES); every
-- answer carries the whole cart, so give it many sessions (scripts/perf.sh
-- uses 20,000 empty carts) to measure holds rather than big carts.
-- usage: wrk -t2 -c64 -d15s -s flash-sale.lua http://127.0.0.1:8080 -- sessions.txt ITEM [PREFIX]
-- (PREFIX starts the new product ids, "f-" by default: runs on the same carts
-- need different ones, or a request would move an earlier run's line)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n, item, prefix, seq
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  item = args[2] or "flash-1"
  prefix = args[3] or "f-"
  seq = 0
  common.seed()
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  local body = string.format('{"inventory_id":"%s","quantity":1}', item)
  seq = seq + 1
  return wrk.format("PUT", "/v1/cart/items/" .. prefix .. (tid or 0) .. "-" .. seq, headers, body)
end

done = common.done

-- wrk script: PUT /v1/cart/items/p-<n> {inventory_id, quantity} on an existing
-- cart (cart-session-id chosen at random per request from a file of session
-- ids): each request sets a line and so holds stock in PostgreSQL.
-- usage: wrk -t2 -c64 -d15s -s set-line.lua http://127.0.0.1:8080 -- sessions.txt ITEMS PREFIX PRODUCTS
--   ITEMS: inventory ids PREFIX1..PREFIX<ITEMS> (default 10000, PREFIX "sku-")
--   PRODUCTS: product ids per cart (default 20; the cart's line limit must allow it)
--   XFF: "xff" sends X-Forwarded-For with a client address per cart (common.client_of)
-- Prints the RESULT line of common.lua, as every wrk script here does.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup

local ids, n, items, prefix, products, xff
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  items = tonumber(args[2] or "10000")
  prefix = args[3] or "sku-"
  products = tonumber(args[4] or "20")
  xff = args[5] == "xff"
  common.seed()
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  local i = math.random(n)
  headers["cart-session-id"] = ids[i]
  if xff then headers["X-Forwarded-For"] = common.client_of(i) end
  local body = string.format('{"inventory_id":"%s%d","quantity":%d}', prefix, math.random(items), math.random(3))
  return wrk.format("PUT", "/v1/cart/items/p-" .. math.random(products), headers, body)
end

done = common.done

-- wrk script: the flash sale on scarce stock. Like flash-sale.lua, every
-- request asks for one more unit of ITEM on a new line of a random cart, but
-- the item has far fewer units than the run asks for, so most answers are
-- refusals. Counts the answers by kind, which the RESULT line alone cannot
-- tell apart: 200 = held, 409 = refused (insufficient_stock), anything else
-- is an error the caller must judge.
-- usage: wrk -t2 -c64 -d15s -s flash-scarce.lua http://127.0.0.1:8080 -- sessions.txt ITEM
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local threads = {}
function setup(thread)
  common.setup(thread)
  table.insert(threads, thread)
end

local ids, n, item, seq
function init(args)
  ids = common.load_ids(args[1])
  n = #ids
  item = args[2] or "flash-1"
  seq = 0
  held, refused, other = 0, 0, 0
  common.seed()
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  headers["cart-session-id"] = ids[math.random(n)]
  local body = string.format('{"inventory_id":"%s","quantity":1}', item)
  seq = seq + 1
  return wrk.format("PUT", "/v1/cart/items/s-" .. (tid or 0) .. "-" .. seq, headers, body)
end

function response(status, _headers, _body)
  if status == 200 then
    held = held + 1
  elseif status == 409 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  common.done(summary, latency, requests)
  local h, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    h = h + t:get("held")
    r = r + t:get("refused")
    o = o + t:get("other")
  end
  io.write(string.format("ANSWERS held=%d refused=%d other=%d\n", h, r, o))
end

-- wrk script: the flash sale on scarce stock. The requests of flash-sale.lua
-- (one more unit of ITEM on a new line of a random cart, product ids
-- starting "s-"), but the item has far fewer units than the run asks for, so
-- most answers are refusals; this script counts the answers by kind, which
-- the RESULT line alone cannot tell apart: 200 = held, 409 = refused
-- (insufficient_stock), anything else is an error the caller must judge.
-- usage: wrk -t2 -c64 -d15s -s flash-scarce.lua http://127.0.0.1:8080 -- sessions.txt ITEM
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")
dofile(dir .. "flash-sale.lua")

local threads = {}
function setup(thread)
  common.setup(thread)
  table.insert(threads, thread)
end

local sale_init = init
function init(args)
  sale_init({ args[1], args[2], "s-" })
  held, refused, other = 0, 0, 0
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

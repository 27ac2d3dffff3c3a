-- wrk script for the tutorial's read: GET /get-cart with the cart-session-id
-- of an existing cart, picked at random from a file of session ids (the
-- requests of v1-get-cart.lua on the tutorial's path). Runs against the
-- tutorial peer (loadtest/peers/tutorial) and cartd alike.
-- usage: wrk -t2 -c64 -d15s -s tutorial-get-cart.lua http://127.0.0.1:3000 -- sessions.txt
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "v1-get-cart.lua")

local read_init = init
function init(args)
  read_init({ args[1], "/get-cart" })
end

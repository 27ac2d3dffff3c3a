// The tutorial's cart-session service (Express + ioredis), the reference
// scripts/perf.sh measures cartd's tutorial routes against. See ../README.md
// for what it reproduces and the three deliberate differences.
"use strict";

const crypto = require("node:crypto");
const express = require("express");
const Redis = require("ioredis");

const port = Number(process.env.PORT || 3000);
const redisOptions = {
  host: process.env.REDIS_HOST || "127.0.0.1",
  port: Number(process.env.REDIS_PORT || 6379),
};
const SESSION_TTL_SECS = 900;

const redis = new Redis(redisOptions);

// A handler whose promise rejects answers 500 rather than taking Node down.
const handle = (fn) => (req, res) => {
  fn(req, res).catch(() => {
    if (!res.headersSent) res.status(500).json({ message: "Internal error" });
  });
};

const app = express();
app.use(express.json());

app.post(
  "/add-to-cart",
  handle(async (req, res) => {
    const { product_id: productId, inventory_id: inventoryId, quantity } = req.body;
    let sessionId = req.get("cart-session-id");
    if (sessionId && !(await redis.exists(`sessions:${sessionId}`))) {
      sessionId = undefined;
    }
    if (!sessionId) {
      sessionId = crypto.randomUUID();
      await redis.setex(`sessions:${sessionId}`, SESSION_TTL_SECS, sessionId);
      res.set("cart-session-id", sessionId);
    }
    await redis.hset(`cart:${sessionId}`, productId, JSON.stringify({ inventory_id: inventoryId, quantity }));
    res.status(200).json({ message: "Product added to cart successfully", cartSessionId: sessionId });
  })
);

app.get(
  "/get-cart",
  handle(async (req, res) => {
    const sessionId = req.get("cart-session-id");
    if (!sessionId) {
      res.status(400).json({ data: [] });
      return;
    }
    const fields = await redis.hgetall(`cart:${sessionId}`);
    const productIds = Object.keys(fields);
    if (productIds.length === 0) {
      res.status(404).json({ message: "Cart is empty", data: [] });
      return;
    }
    const data = productIds.map((productId) => {
      const line = JSON.parse(fields[productId]);
      return { product_id: productId, inventory_id: line.inventory_id, quantity: line.quantity };
    });
    res.status(200).json({ message: "Cart retrieved successfully", data });
  })
);

// The tutorial's expiry listener: when sessions:<id> expires, delete
// cart:<id>. A subscribed connection can only listen, so DEL goes through
// the main one.
async function listenForExpiry() {
  const subscriber = new Redis(redisOptions);
  await redis.config("SET", "notify-keyspace-events", "Ex");
  await subscriber.subscribe("__keyevent@0__:expired");
  subscriber.on("message", (_channel, key) => {
    if (key.startsWith("sessions:")) {
      redis.del(`cart:${key.slice("sessions:".length)}`).catch(() => {});
    }
  });
}

listenForExpiry().catch((e) => {
  console.error(`tutorial: expiry listener failed: ${e}`);
  process.exit(1);
});
app.listen(port, "127.0.0.1", () => console.log(`tutorial listening on http://127.0.0.1:${port}`));

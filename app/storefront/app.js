// The storefront: a product list with live available counts and a cart panel.
//
// Rules it keeps:
// - The cart shown is always the last cart the server answered with: a line
//   appears only once the server confirmed it, and a refused change leaves the
//   panel as it was.
// - The countdown uses the server's clock: the offset between the browser's
//   clock and the `Date` header of the server's answers corrects it.
// - Stock comes from `GET /v1/inventory/events` (a snapshot, then changes);
//   while that stream is down the page polls `GET /v1/inventory` instead.

const SESSION_KEY = 'cartd.session';
const ENDED = 'your hold ended; the items went back on sale';
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000];
const POLL_MS = 2000;

const state = {
  catalog: null,
  stock: new Map(), // inventory_id -> {available, reserved, sold}
  cart: null, // the server's last answer, or null
  order: null,
  offsetMs: 0, // server clock minus browser clock, the middle of [offsetLo, offsetHi]
  offsetLo: -Infinity,
  offsetHi: Infinity,
  busy: false,
  checkingExpiry: false,
  events: null,
  pollTimer: null,
  reconnectMs: 1000,
};

const $ = (id) => document.getElementById(id);

// ---------- talking to the server ----------

// `Date` has whole seconds, cut down: when the server answered, its clock
// read between `date` and `date + 1 s`, somewhere between our sending and our
// receiving. Each answer bounds the offset; keep the tightest bounds seen.
function noteServerClock(res, sentAt, receivedAt) {
  const date = res.headers.get('date');
  const server = date ? Date.parse(date) : Number.NaN;
  if (Number.isNaN(server)) return;
  const lo = Math.max(state.offsetLo, server - receivedAt);
  const hi = Math.min(state.offsetHi, server + 1000 - sentAt);
  if (lo <= hi) {
    state.offsetLo = lo;
    state.offsetHi = hi;
  } else {
    // The browser's clock moved: start again from this answer.
    state.offsetLo = server - receivedAt;
    state.offsetHi = server + 1000 - sentAt;
  }
  state.offsetMs = (state.offsetLo + state.offsetHi) / 2;
}

function serverNow() {
  return Date.now() + state.offsetMs;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One request, retried with back-off while the server answers 503 (every
// cart call sets a state, so repeating it is safe). Returns {status, body, res}.
async function call(method, path, { body, session } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (session) headers['cart-session-id'] = session;
  for (let attempt = 0; ; attempt++) {
    let res;
    const sentAt = Date.now();
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      res = null;
    }
    if (res) noteServerClock(res, sentAt, Date.now());
    if (res && res.status !== 503) {
      let parsed = null;
      const text = await res.text();
      if (text) {
        try { parsed = JSON.parse(text); } catch (e) { parsed = null; }
      }
      setStatus('');
      return { status: res.status, body: parsed, res };
    }
    if (attempt >= RETRY_DELAYS_MS.length) {
      setStatus('The shop is busy right now: try again in a moment.');
      return { status: res ? res.status : 0, body: null, res };
    }
    const wait = RETRY_DELAYS_MS[attempt];
    setStatus(`The shop is busy: try again — retrying in ${Math.ceil(wait / 1000)} s…`);
    await sleep(wait);
  }
}

function setStatus(text) {
  $('status').textContent = text;
}

function setMessage(text) {
  $('cart-message').textContent = text;
}

// ---------- formatting ----------

let money = null;
function formatPrice(minor) {
  if (!money) {
    money = new Intl.NumberFormat('en', { style: 'currency', currency: state.catalog.currency });
  }
  const digits = money.resolvedOptions().maximumFractionDigits;
  return money.format(minor / 10 ** digits);
}

function productById(id) {
  return state.catalog.products.find((p) => p.product_id === id);
}

// Whole seconds left, rounded down: the estimate of the server's clock can be
// off by a fraction of a second, and showing more time than the hold has
// would be the worse mistake.
function formatLeft(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

// ---------- rendering ----------

function renderProducts() {
  const list = $('products');
  const template = $('product-template');
  list.replaceChildren();
  for (const p of state.catalog.products) {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.testid = `product-${p.product_id}`;
    li.dataset.product = p.product_id;
    li.querySelector('.name').textContent = p.name;
    li.querySelector('.price').textContent = formatPrice(p.price);
    const avail = li.querySelector('.avail');
    avail.dataset.testid = `avail-${p.product_id}`;
    const add = li.querySelector('.add');
    add.dataset.testid = `add-${p.product_id}`;
    add.setAttribute('aria-label', `Add ${p.name} to cart`);
    add.addEventListener('click', () => change(p.product_id, lineQuantity(p.product_id) + 1));
    list.append(li);
  }
  renderStock();
}

function renderStock() {
  for (const li of $('products').children) {
    const p = productById(li.dataset.product);
    const level = state.stock.get(p.inventory_id);
    const avail = li.querySelector('.avail');
    const add = li.querySelector('.add');
    if (!level) {
      avail.textContent = '–';
      li.querySelector('.avail-label').textContent = 'not stocked';
      add.disabled = true;
      continue;
    }
    avail.textContent = String(level.available);
    li.querySelector('.avail-label').textContent = 'available';
    li.classList.toggle('sold-out', level.available <= 0);
    add.disabled = state.busy || level.available <= 0;
    add.textContent = level.available <= 0 ? 'Sold out' : 'Add to cart';
  }
}

function lineQuantity(productId) {
  const line = state.cart && state.cart.lines.find((l) => l.product_id === productId);
  return line ? line.quantity : 0;
}

function renderCart() {
  const lines = $('lines');
  const template = $('line-template');
  lines.replaceChildren();
  const cartLines = state.cart ? state.cart.lines : [];
  let total = 0;
  for (const line of cartLines) {
    const p = productById(line.product_id);
    const name = p ? p.name : line.product_id;
    const price = p ? p.price : 0;
    total += price * line.quantity;
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.testid = `line-${line.product_id}`;
    li.querySelector('.name').textContent = name;
    li.querySelector('.qty-label').textContent = `Quantity of ${name}`;
    const qty = li.querySelector('.qty');
    qty.value = String(line.quantity);
    qty.dataset.testid = `qty-${line.product_id}`;
    qty.disabled = state.busy;
    qty.addEventListener('change', () => {
      const n = Number.parseInt(qty.value, 10);
      if (Number.isInteger(n) && n >= 0) change(line.product_id, n);
      else qty.value = String(line.quantity);
    });
    const dec = li.querySelector('.dec');
    dec.dataset.testid = `dec-${line.product_id}`;
    dec.setAttribute('aria-label', `One less ${name}`);
    dec.disabled = state.busy;
    dec.addEventListener('click', () => change(line.product_id, line.quantity - 1));
    const inc = li.querySelector('.inc');
    inc.dataset.testid = `inc-${line.product_id}`;
    inc.setAttribute('aria-label', `One more ${name}`);
    inc.disabled = state.busy;
    inc.addEventListener('click', () => change(line.product_id, line.quantity + 1));
    li.querySelector('.subtotal').textContent = formatPrice(price * line.quantity);
    const remove = li.querySelector('.remove');
    remove.dataset.testid = `remove-${line.product_id}`;
    remove.setAttribute('aria-label', `Remove ${name} from cart`);
    remove.disabled = state.busy;
    remove.addEventListener('click', () => change(line.product_id, 0));
    lines.append(li);
  }
  $('cart-empty').hidden = cartLines.length > 0;
  $('total').textContent = formatPrice(total);
  $('checkout').disabled = state.busy || cartLines.length === 0;
  $('abandon').disabled = state.busy || !state.cart;
  renderTimer();
  renderStock();
}

function renderTimer() {
  const timer = $('timer');
  if (!state.cart || state.cart.lines.length === 0) {
    timer.hidden = true;
    return;
  }
  const left = Date.parse(state.cart.expires_at) - serverNow();
  timer.hidden = false;
  timer.textContent = `Items held for ${formatLeft(left)}`;
  timer.dataset.left = String(Math.max(0, Math.floor(left / 1000)));
  timer.classList.toggle('low', left < 120000);
  if (left <= 0) checkExpired();
}

function renderOrder() {
  const section = $('order');
  if (!state.order) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  $('order-id').textContent = state.order.order_id;
  const list = $('order-lines');
  list.replaceChildren();
  let total = 0;
  for (const line of state.order.lines) {
    const p = productById(line.product_id);
    const price = p ? p.price : 0;
    total += price * line.quantity;
    const li = document.createElement('li');
    li.dataset.testid = `order-line-${line.product_id}`;
    li.textContent = `${line.quantity} × ${p ? p.name : line.product_id} — ${formatPrice(price * line.quantity)}`;
    list.append(li);
  }
  $('order-total').textContent = formatPrice(total);
}

function setBusy(busy) {
  state.busy = busy;
  document.body.dataset.busy = String(busy);
  renderCart();
}

// ---------- the cart ----------

function session() {
  return localStorage.getItem(SESSION_KEY);
}

function acceptCart(cart) {
  state.cart = cart;
  localStorage.setItem(SESSION_KEY, cart.cart_session_id);
}

function holdEnded(hadLines) {
  localStorage.removeItem(SESSION_KEY);
  state.cart = null;
  if (hadLines) setMessage(ENDED);
  refreshStock();
}

// Sets a product's line to `quantity` (0 removes it).
async function change(productId, quantity) {
  if (state.busy) return;
  const p = productById(productId);
  if (!p) return;
  const quantityBefore = lineQuantity(productId);
  const id = session();
  setMessage('');
  state.order = null;
  renderOrder();
  setBusy(true);
  try {
    let r;
    if (quantity <= 0) {
      if (!id) return;
      r = await call('DELETE', `/v1/cart/items/${encodeURIComponent(productId)}`, { session: id });
    } else {
      r = await call('PUT', `/v1/cart/items/${encodeURIComponent(productId)}`, {
        body: { inventory_id: p.inventory_id, quantity },
        session: id,
      });
    }
    if (r.status === 200 && r.body) {
      acceptCart(r.body);
      return;
    }
    const code = r.body && r.body.error;
    if (r.status === 404 && code === 'session_not_found') {
      holdEnded(state.cart !== null && state.cart.lines.length > 0);
    } else if (r.status === 409 && code === 'insufficient_stock') {
      const left = r.body.available ?? 0;
      const free = left + quantityBefore;
      setMessage(
        left <= 0
          ? `Sorry, ${p.name} is sold out; your cart is unchanged.`
          : `Only ${free} of ${p.name} can be in your cart (${left} more left); your cart is unchanged.`,
      );
      if (r.body.available !== undefined) {
        const level = state.stock.get(p.inventory_id);
        if (level) state.stock.set(p.inventory_id, { ...level, available: r.body.available });
      }
    } else if (r.status === 409 && code === 'too_many_lines') {
      setMessage('Your cart has as many different products as it can hold.');
    } else if (r.status === 429 && code === 'hold_limit_reached') {
      const may = r.body.may_hold ?? 0;
      setMessage(
        may > 0
          ? `At most ${may} of ${p.name} can be in your cart (a limit per shopper); your cart is unchanged.`
          : `You already hold as many of ${p.name} as one shopper may; your cart is unchanged.`,
      );
    } else if (r.status === 429) {
      setMessage('Too many carts from your connection just now; please try again shortly.');
    } else if (r.status === 404 && code === 'inventory_not_found') {
      setMessage(`${p.name} is not stocked at the moment.`);
    } else if (r.status === 400 && r.body) {
      setMessage(r.body.message);
    } else if (r.status !== 503 && r.status !== 0) {
      setMessage('Something went wrong; your cart is unchanged.');
    }
  } finally {
    setBusy(false);
  }
}

async function checkout() {
  const id = session();
  if (!id || state.busy) return;
  setMessage('');
  setBusy(true);
  try {
    const r = await call('POST', '/v1/cart/checkout', { session: id });
    if ((r.status === 201 || r.status === 200) && r.body) {
      state.order = r.body;
      state.cart = null;
      localStorage.removeItem(SESSION_KEY);
      renderOrder();
      refreshStock();
    } else if (r.status === 404) {
      holdEnded(true);
    } else if (r.status === 409) {
      setMessage('Your cart is empty.');
    } else if (r.status !== 503 && r.status !== 0) {
      setMessage('Checkout failed; your cart is unchanged.');
    }
  } finally {
    setBusy(false);
  }
}

async function abandon() {
  const id = session();
  if (!id || state.busy) return;
  setMessage('');
  setBusy(true);
  try {
    const r = await call('DELETE', '/v1/cart', { session: id });
    if (r.status === 204 || r.status === 404) {
      state.cart = null;
      localStorage.removeItem(SESSION_KEY);
      setMessage('Your cart is empty; the items went back on sale.');
      refreshStock();
    }
  } finally {
    setBusy(false);
  }
}

// Reads the cart back from the server (after a reload, or when the countdown
// reaches zero).
async function loadCart() {
  const id = session();
  if (!id) {
    state.cart = null;
    return;
  }
  const r = await call('GET', '/v1/cart', { session: id });
  if (r.status === 200 && r.body) {
    acceptCart(r.body);
  } else if (r.status === 404 || r.status === 400) {
    // Ended while the page was closed: say so only if it held something.
    holdEnded(state.cart !== null && state.cart.lines.length > 0);
  }
}

async function checkExpired() {
  if (state.checkingExpiry || state.busy) return;
  state.checkingExpiry = true;
  const hadLines = state.cart !== null && state.cart.lines.length > 0;
  try {
    const id = session();
    const r = id ? await call('GET', '/v1/cart', { session: id }) : { status: 404 };
    if (r.status === 200 && r.body) {
      acceptCart(r.body);
      // The server's clock says not yet: look again in a second.
      await sleep(1000);
    } else if (r.status === 404 || r.status === 400) {
      holdEnded(hadLines);
    }
  } finally {
    state.checkingExpiry = false;
    renderCart();
  }
}

// ---------- live stock ----------

function applyLevels(items) {
  for (const item of items) {
    state.stock.set(item.inventory_id, { available: item.available, reserved: item.reserved, sold: item.sold });
  }
  renderStock();
}

async function refreshStock() {
  const ids = [...new Set(state.catalog.products.map((p) => p.inventory_id))];
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100);
    const r = await call('GET', `/v1/inventory?ids=${chunk.map(encodeURIComponent).join(',')}`);
    if (r.status === 200 && r.body) applyLevels(r.body.items);
  }
}

function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(refreshStock, POLL_MS);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function connectEvents() {
  if (typeof EventSource === 'undefined') {
    startPolling();
    return;
  }
  const ids = [...new Set(state.catalog.products.map((p) => p.inventory_id))];
  const url = ids.length <= 100 ? `/v1/inventory/events?ids=${ids.map(encodeURIComponent).join(',')}` : '/v1/inventory/events';
  const events = new EventSource(url);
  state.events = events;
  document.body.dataset.sse = 'connecting';
  events.addEventListener('open', () => {
    document.body.dataset.sse = 'live';
    state.reconnectMs = 1000;
    stopPolling();
  });
  events.addEventListener('snapshot', (e) => applyLevels(JSON.parse(e.data).items));
  events.addEventListener('stock', (e) => applyLevels(JSON.parse(e.data).items));
  events.addEventListener('error', () => {
    // The browser reconnects by itself after a dropped stream, but not after
    // an error status (e.g. 503 when the server has too many streams): then
    // poll and try again later.
    startPolling();
    if (events.readyState === EventSource.CLOSED) {
      document.body.dataset.sse = 'closed';
      state.events = null;
      const wait = state.reconnectMs;
      state.reconnectMs = Math.min(state.reconnectMs * 2, 30000);
      setTimeout(connectEvents, wait);
    } else {
      document.body.dataset.sse = 'reconnecting';
    }
  });
}

document.addEventListener('visibilitychange', () => {
  // A hidden tab gives its connection back (browsers allow 6 per site).
  if (document.hidden && state.events) {
    state.events.close();
    state.events = null;
    document.body.dataset.sse = 'closed';
  } else if (!document.hidden && !state.events && state.catalog) {
    connectEvents();
  }
});

// ---------- start ----------

async function start() {
  $('checkout').addEventListener('click', checkout);
  $('abandon').addEventListener('click', abandon);
  const r = await call('GET', '/v1/catalog');
  if (r.status !== 200 || !r.body) {
    setStatus('The catalogue could not be loaded; reload the page to try again.');
    return;
  }
  state.catalog = r.body;
  renderProducts();
  await Promise.all([refreshStock(), loadCart()]);
  renderCart();
  connectEvents();
  setInterval(renderTimer, 250);
  document.body.dataset.ready = 'true';
}

start();

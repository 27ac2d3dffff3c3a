//! Plans a batch of holds in memory.
//!
//! The batch's transaction first locks and reads what its calls can touch
//! (their carts, the lines they change, each cart's number of lines, the
//! `available` count of every item involved); [`plan`] then replays the calls
//! in order on that snapshot, exactly as `cartd_set_hold` (V6) would one after
//! the other, and returns each call's row plus the net writes: one statement
//! per table for the whole batch instead of four to six statements per call.
//! That is what makes a batch cheap: PostgreSQL's cost per statement, not per
//! row, dominated the PL/pgSQL loop (measured ~0.13 ms per hold).
//!
//! The one path the planner does not replay is a call on a cart past its
//! deadline (the SQL function releases that cart's whole ledger, which the
//! snapshot does not hold): [`Plan::Reference`] sends the batch to
//! `cartd_set_hold_batch` in the same transaction. A call refused for stock
//! names its item in [`Ready::short`], so the caller can release carts past
//! their deadline that hold it and plan again, as the SQL function does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::batch::{HoldCall, HoldRow};

/// A cart row, as locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CartState {
    pub deadline: i64,
    pub version: i64,
    /// Its number of lines (`carts.lines`).
    pub lines: i32,
}

/// One line of the ledger: which item it holds, how many units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub item: String,
    pub quantity: i32,
}

/// What the batch's transaction read after taking its locks.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    /// The calls' carts that exist.
    pub carts: HashMap<Uuid, CartState>,
    /// The lines the calls name that exist: by cart, then by product.
    pub lines: HashMap<Uuid, HashMap<String, Held>>,
    /// `available` of every existing item the calls name or their lines hold.
    pub available: HashMap<String, i64>,
}

impl Snapshot {
    /// The line `product` of `cart`, if it exists.
    pub(crate) fn line(&self, cart: Uuid, product: &str) -> Option<&Held> {
        self.lines.get(&cart).and_then(|by_product| by_product.get(product))
    }
}

/// The outcome of planning.
#[derive(Debug)]
pub(super) enum Plan {
    /// A call meets a cart past its deadline: run the SQL function instead.
    Reference,
    /// Every call's row and the writes that make them true.
    Ready(Ready),
}

#[derive(Debug)]
pub(super) struct Ready {
    /// One row per call, in the calls' order.
    pub rows: Vec<HoldRow>,
    /// Items some call found short of stock.
    pub short: BTreeSet<String>,
    pub writes: Writes,
}

/// The net effect of a batch, one entry per row to change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Writes {
    /// Units to move from `available` to `reserved` per item (negative:
    /// back), never 0, in `inventory_id` order.
    pub reserve: BTreeMap<String, i64>,
    /// Lines to create: cart, product, item, quantity.
    pub insert: Vec<(Uuid, String, String, i32)>,
    /// Lines to change to this item and quantity.
    pub update: Vec<(Uuid, String, String, i32)>,
    /// Lines to remove.
    pub delete: Vec<(Uuid, String)>,
    /// Carts' new version, deadline and number of lines, by id.
    pub carts: Vec<(Uuid, i64, i64, i32)>,
}

fn row(status: &str, version: i64, deadline: i64, available: i64, taken: i64, released: i64) -> HoldRow {
    HoldRow {
        status: status.to_owned(),
        version,
        deadline,
        available,
        taken: i32::try_from(taken).unwrap_or(i32::MAX),
        released: i32::try_from(released).unwrap_or(i32::MAX),
    }
}

/// Replays `calls` in order on `snapshot`; see the module docs.
pub(super) fn plan(calls: &[HoldCall], snapshot: &Snapshot) -> Plan {
    let mut carts = snapshot.carts.clone();
    let mut available = snapshot.available.clone();
    // The lines the calls changed, as they stand now; a line absent here is
    // as in the snapshot.
    let mut lines: BTreeMap<(Uuid, &str), Option<Held>> = BTreeMap::new();
    let mut reserve: BTreeMap<String, i64> = BTreeMap::new();
    let mut short = BTreeSet::new();
    let mut rows = Vec::with_capacity(calls.len());

    for call in calls {
        let Some(cart) = carts.get_mut(&call.cart) else {
            rows.push(row("session_not_found", 0, 0, 0, 0, 0));
            continue;
        };
        if cart.deadline <= call.now {
            return Plan::Reference;
        }
        // Every call on a live cart takes a version, as the SQL does, even
        // one that is then refused.
        cart.version += 1;
        let version = cart.version;
        let key = (call.cart, call.product.as_str());
        let old = match lines.get(&key) {
            Some(line) => line.clone(),
            None => snapshot.line(call.cart, &call.product).cloned(),
        };
        let (taken, released, new_line) = match (call.quantity, &call.item) {
            (Some(quantity), item) => {
                let Some(item) = item else {
                    rows.push(row("unknown_item", version, 0, 0, 0, 0));
                    continue;
                };
                let exists = available.contains_key(item);
                if old.is_none() && cart.lines >= call.max_lines {
                    let status = if exists { "too_many_lines" } else { "unknown_item" };
                    rows.push(row(status, version, 0, 0, 0, 0));
                    continue;
                }
                let same_item = old.as_ref().is_some_and(|o| &o.item == item);
                let need =
                    i64::from(quantity) - if same_item { old.as_ref().map_or(0, |o| i64::from(o.quantity)) } else { 0 };
                if need != 0 || !same_item {
                    let Some(free) = available.get_mut(item) else {
                        rows.push(row("unknown_item", version, 0, 0, 0, 0));
                        continue;
                    };
                    if *free < need {
                        short.insert(item.clone());
                        rows.push(row("insufficient_stock", version, 0, *free, 0, 0));
                        continue;
                    }
                    *free -= need;
                    *reserve.entry(item.clone()).or_insert(0) += need;
                }
                let (taken, released) = match &old {
                    Some(o) if !same_item => {
                        *available.get_mut(&o.item).expect("the snapshot has every item a line holds") +=
                            i64::from(o.quantity);
                        *reserve.entry(o.item.clone()).or_insert(0) -= i64::from(o.quantity);
                        (i64::from(quantity), i64::from(o.quantity))
                    }
                    _ => (need.max(0), (-need).max(0)),
                };
                if old.is_none() {
                    cart.lines += 1;
                }
                (taken, released, Some(Held { item: item.clone(), quantity }))
            }
            (None, _) => match &old {
                Some(o) => {
                    *available.get_mut(&o.item).expect("the snapshot has every item a line holds") +=
                        i64::from(o.quantity);
                    *reserve.entry(o.item.clone()).or_insert(0) -= i64::from(o.quantity);
                    cart.lines -= 1;
                    (0, i64::from(o.quantity), None)
                }
                None => (0, 0, None),
            },
        };
        lines.insert(key, new_line);
        if let Some(deadline) = call.deadline
            && deadline > cart.deadline
        {
            cart.deadline = deadline;
        }
        rows.push(row("ok", version, cart.deadline, 0, taken, released));
    }

    let mut writes = Writes::default();
    reserve.retain(|_, units| *units != 0);
    writes.reserve = reserve;
    for ((cart, product), after) in lines {
        match (snapshot.line(cart, product), after.as_ref()) {
            (None, Some(h)) => writes.insert.push((cart, product.to_owned(), h.item.clone(), h.quantity)),
            (Some(_), None) => writes.delete.push((cart, product.to_owned())),
            (Some(b), Some(a)) if a != b => writes.update.push((cart, product.to_owned(), a.item.clone(), a.quantity)),
            _ => {}
        }
    }
    // Every call on a live cart moved its version: those are the carts to write.
    writes.carts = carts
        .into_iter()
        .filter(|(id, cart)| snapshot.carts.get(id).is_some_and(|before| before.version != cart.version))
        .map(|(id, cart)| (id, cart.version, cart.deadline, cart.lines))
        .collect();
    writes.carts.sort_unstable_by_key(|c| c.0);
    Plan::Ready(Ready { rows, short, writes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn call(cart: Uuid, product: &str, line: Option<(&str, i32)>) -> HoldCall {
        HoldCall {
            cart,
            product: product.to_owned(),
            item: line.map(|(i, _)| i.to_owned()),
            quantity: line.map(|(_, q)| q),
            deadline: None,
            max_lines: 2,
            now: NOW,
        }
    }

    fn snapshot(carts: &[Uuid], lines: &[(Uuid, &str, &str, i32)], items: &[(&str, i64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for c in carts {
            s.carts.insert(*c, CartState { deadline: NOW + 100, version: 7, lines: 0 });
        }
        for (c, p, i, q) in lines {
            s.lines.entry(*c).or_default().insert((*p).to_owned(), Held { item: (*i).to_owned(), quantity: *q });
            s.carts.get_mut(c).expect("lines of known carts").lines += 1;
        }
        for (i, a) in items {
            s.available.insert((*i).to_owned(), *a);
        }
        s
    }

    fn ready(plan: Plan) -> Ready {
        match plan {
            Plan::Ready(r) => r,
            Plan::Reference => panic!("expected a plan"),
        }
    }

    fn statuses(r: &Ready) -> Vec<&str> {
        r.rows.iter().map(|r| r.status.as_str()).collect()
    }

    #[test]
    fn holds_on_one_item_are_granted_in_order_until_it_runs_short() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let s = snapshot(&[a, b, c], &[], &[("hot", 5)]);
        let calls = [call(a, "p", Some(("hot", 3))), call(b, "p", Some(("hot", 3))), call(c, "p", Some(("hot", 2)))];
        let r = ready(plan(&calls, &s));
        assert_eq!(statuses(&r), ["ok", "insufficient_stock", "ok"]);
        assert_eq!(r.rows[1].available, 2, "what was left when the second call came");
        assert_eq!(r.short.iter().collect::<Vec<_>>(), ["hot"]);
        assert_eq!(r.writes.reserve, BTreeMap::from([("hot".to_owned(), 5)]));
        assert_eq!(r.writes.insert.len(), 2);
        assert_eq!(r.rows.iter().map(|r| r.version).collect::<Vec<_>>(), [8, 8, 8]);
    }

    #[test]
    fn a_line_moved_to_another_item_gives_the_old_one_back_and_the_net_is_written_once() {
        let a = Uuid::from_u128(1);
        let s = snapshot(&[a], &[(a, "p", "x", 4)], &[("x", 0), ("y", 10)]);
        let calls = [call(a, "p", Some(("y", 6))), call(a, "p", Some(("x", 1))), call(a, "p", Some(("x", 2)))];
        let r = ready(plan(&calls, &s));
        assert_eq!(statuses(&r), ["ok", "ok", "ok"]);
        assert_eq!((r.rows[0].taken, r.rows[0].released), (6, 4));
        assert_eq!((r.rows[1].taken, r.rows[1].released), (1, 6));
        assert_eq!((r.rows[2].taken, r.rows[2].released), (1, 0));
        // x: 4 released then 1 + 1 taken; y: 6 taken then released.
        assert_eq!(r.writes.reserve, BTreeMap::from([("x".to_owned(), -2)]));
        assert_eq!(r.writes.update, vec![(a, "p".to_owned(), "x".to_owned(), 2)]);
        assert_eq!(r.writes.carts, vec![(a, 10, NOW + 100, 1)]);
    }

    #[test]
    fn the_line_limit_counts_lines_added_and_removed_earlier_in_the_batch() {
        let a = Uuid::from_u128(1);
        let s = snapshot(&[a], &[(a, "p1", "x", 1)], &[("x", 10)]);
        let calls = [
            call(a, "p2", Some(("x", 1))),
            call(a, "p3", Some(("x", 1))),
            call(a, "p3", Some(("nope", 1))),
            call(a, "p1", None),
            call(a, "p3", Some(("x", 1))),
        ];
        let r = ready(plan(&calls, &s));
        assert_eq!(statuses(&r), ["ok", "too_many_lines", "unknown_item", "ok", "ok"]);
        assert_eq!(r.writes.delete, vec![(a, "p1".to_owned())]);
        assert_eq!(r.writes.insert.len(), 2);
        assert_eq!(r.writes.reserve, BTreeMap::from([("x".to_owned(), 1)]));
    }

    #[test]
    fn a_line_added_then_removed_writes_nothing_but_the_cart() {
        let a = Uuid::from_u128(1);
        let s = snapshot(&[a], &[], &[("x", 10)]);
        let mut first = call(a, "p", Some(("x", 3)));
        first.deadline = Some(NOW + 500);
        let r = ready(plan(&[first, call(a, "p", None), call(a, "gone", None)], &s));
        assert_eq!(statuses(&r), ["ok", "ok", "ok"]);
        assert_eq!(r.rows[1].released, 3);
        assert_eq!(r.rows[2].deadline, NOW + 500, "a later deadline moves the cart's");
        assert_eq!(
            r.writes,
            Writes { carts: vec![(a, 10, NOW + 500, 0)], ..Writes::default() },
            "nothing moved in the end"
        );
    }

    #[test]
    fn missing_carts_are_refused_and_expired_ones_go_to_the_sql_function() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let s = snapshot(&[a], &[], &[("x", 10)]);
        let r = ready(plan(&[call(b, "p", Some(("x", 1)))], &s));
        assert_eq!(statuses(&r), ["session_not_found"]);
        assert_eq!(r.writes, Writes::default());
        let mut late = call(a, "p", Some(("x", 1)));
        late.now = NOW + 100;
        assert!(matches!(plan(&[call(a, "p", Some(("x", 1))), late], &s), Plan::Reference));
    }
}

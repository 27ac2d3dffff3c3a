//! The hold rule: what one change to a cart line does to the ledger of holds.
//!
//! Every [`Inventory`](crate::ports::Inventory) follows it. The in-memory
//! ledger applies it under its lock; the PostgreSQL adapter's planned hold
//! batch replays a batch's calls through it on the rows it locked. The SQL
//! function `cartd_set_hold` in the baseline migration is the reference path
//! and fallback; a differential test keeps it answering what this rule answers
//! (`adapters/tests/postgres_batch.rs`).
//!
//! The rule, for a call on one cart line:
//! 1. A cart the ledger does not hold is refused ([`HoldDecision::NoCart`]);
//!    a cart past its deadline is released by the caller and refused
//!    ([`HoldDecision::Expired`]).
//! 2. Every other call takes the cart's next version, granted or refused:
//!    versions only need to grow, and one rule for both answers keeps the
//!    implementations from drifting (a refused call leaves a gap).
//! 3. A new line must fit the line limit; an item the ledger does not know is
//!    refused (before the line limit is reported, when both apply).
//! 4. Only the difference moves when a line keeps its item; a line moved to
//!    another item gives its old hold back and takes the new one whole;
//!    removing a line gives its hold back. What must be taken has to be
//!    available, or the call is refused and nothing moves.
//! 5. A given deadline only ever moves the cart's deadline later.
//!
//! Holds of carts past their deadline never block: when a call is refused
//! for stock ([`Refusal::InsufficientStock`]), the caller releases the carts
//! past their deadline that hold the item and decides once more.

use crate::Timestamp;

/// A cart as the ledger holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerCart {
    /// When the cart's holds end.
    pub deadline: Timestamp,
    /// The version its last call took (0 for a cart no call has touched).
    pub version: u64,
    /// How many lines it holds.
    pub lines: u32,
}

/// One call of the rule: the line `product` of a cart goes from `old` (as
/// the ledger holds it) to `new` (`None`: removed).
///
/// Items are whatever the caller names them by (`I`): the in-memory ledger's
/// validated ids, the PostgreSQL planner's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRequest<'a, I> {
    /// The line as the ledger holds it now: item and units.
    pub old: Option<(&'a I, u32)>,
    /// The line as the call wants it: item and units (at least 1).
    pub new: Option<(&'a I, u32)>,
    /// A deadline to move the cart's to, when later.
    pub new_deadline: Option<Timestamp>,
    /// The most lines a cart may hold.
    pub max_lines: u16,
    /// The caller's now.
    pub now: Timestamp,
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The item does not exist.
    UnknownItem,
    /// The line is new and the cart already holds the most lines it may.
    TooManyLines,
    /// The item has fewer units free than the call must take.
    InsufficientStock {
        /// Units of the item free when the call was decided.
        available: i64,
    },
}

/// What a granted call changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant<'a, I> {
    /// The version the call took: the cart's new version.
    pub version: u64,
    /// The cart's deadline after the call.
    pub deadline: Timestamp,
    /// How many lines the cart holds after the call.
    pub lines: u32,
    /// Units of the new line's item to move from `available` to `reserved`
    /// (negative: back); `None` when that item's counts do not change.
    pub reserve: Option<(&'a I, i64)>,
    /// The old line's item and the units it gives back to `available`, when
    /// the line moved to another item or was removed.
    pub give_back: Option<(&'a I, u32)>,
    /// Units the call moved from `available` to `reserved`, all items together.
    pub taken: u32,
    /// Units the call moved from `reserved` back to `available`.
    pub released: u32,
}

/// The rule's answer to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldDecision<'a, I> {
    /// The ledger does not hold the cart (never opened, released, checked out).
    NoCart,
    /// The cart is past its deadline: the caller releases it; the call is
    /// answered as for a cart the ledger does not hold.
    Expired,
    /// Refused: only the cart's version moves, to `version`.
    Refused {
        /// The version the call took.
        version: u64,
        /// Why.
        refusal: Refusal,
    },
    /// Granted: apply the [`Grant`].
    Granted(Grant<'a, I>),
}

/// Decides one call on `cart` (`None`: not in the ledger). `available` tells
/// the units of an item free now, or `None` for an item that does not exist.
/// Pure: the caller applies the answer (see the module docs).
pub fn decide<'a, I: PartialEq>(
    cart: Option<LedgerCart>,
    request: &HoldRequest<'a, I>,
    available: impl Fn(&I) -> Option<i64>,
) -> HoldDecision<'a, I> {
    let Some(cart) = cart else { return HoldDecision::NoCart };
    if cart.deadline <= request.now {
        return HoldDecision::Expired;
    }
    let version = cart.version + 1;
    let refused = |refusal| HoldDecision::Refused { version, refusal };
    let mut lines = cart.lines;
    let (reserve, give_back, taken, released) = match (request.new, request.old) {
        (Some((item, quantity)), old) => {
            let same_item = old.is_some_and(|(old_item, _)| old_item == item);
            if old.is_none() && cart.lines >= u32::from(request.max_lines) {
                return refused(if available(item).is_none() { Refusal::UnknownItem } else { Refusal::TooManyLines });
            }
            let kept = if same_item { old.map_or(0, |(_, q)| i64::from(q)) } else { 0 };
            let need = i64::from(quantity) - kept;
            let reserve = if need != 0 || !same_item {
                let Some(free) = available(item) else { return refused(Refusal::UnknownItem) };
                if free < need {
                    return refused(Refusal::InsufficientStock { available: free });
                }
                Some((item, need))
            } else {
                None
            };
            if old.is_none() {
                lines += 1;
            }
            match old {
                Some((old_item, old_quantity)) if !same_item => {
                    (reserve, Some((old_item, old_quantity)), quantity, old_quantity)
                }
                _ => (reserve, None, clamp(need), clamp(-need)),
            }
        }
        (None, Some((old_item, old_quantity))) => {
            lines -= 1;
            (None, Some((old_item, old_quantity)), 0, old_quantity)
        }
        (None, None) => (None, None, 0, 0),
    };
    let deadline = match request.new_deadline {
        Some(later) if later > cart.deadline => later,
        _ => cart.deadline,
    };
    HoldDecision::Granted(Grant { version, deadline, lines, reserve, give_back, taken, released })
}

/// `units` when positive, else 0, as a count of units moved.
fn clamp(units: i64) -> u32 {
    u32::try_from(units.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_000;

    fn cart(lines: u32) -> Option<LedgerCart> {
        Some(LedgerCart { deadline: Timestamp::from_millis(NOW + 100), version: 7, lines })
    }

    fn request<'a>(
        old: Option<(&'a &'static str, u32)>,
        new: Option<(&'a &'static str, u32)>,
    ) -> HoldRequest<'a, &'static str> {
        HoldRequest { old, new, new_deadline: None, max_lines: 2, now: Timestamp::from_millis(NOW) }
    }

    fn stock(item: &&str) -> Option<i64> {
        match *item {
            "x" => Some(5),
            "y" => Some(0),
            _ => None,
        }
    }

    #[test]
    fn only_the_difference_moves_when_a_line_keeps_its_item() {
        let HoldDecision::Granted(g) = decide(cart(1), &request(Some((&"x", 4)), Some((&"x", 6))), stock) else {
            panic!("granted")
        };
        assert_eq!(
            (g.reserve, g.give_back, g.taken, g.released, g.lines, g.version),
            (Some((&"x", 2)), None, 2, 0, 1, 8)
        );
        let HoldDecision::Granted(g) = decide(cart(1), &request(Some((&"x", 4)), Some((&"x", 1))), stock) else {
            panic!("granted")
        };
        assert_eq!((g.reserve, g.taken, g.released), (Some((&"x", -3)), 0, 3));
        let HoldDecision::Granted(g) = decide(cart(1), &request(Some((&"y", 4)), Some((&"y", 4))), stock) else {
            panic!("granted")
        };
        assert_eq!((g.reserve, g.give_back, g.taken, g.released), (None, None, 0, 0), "nothing to take from y's 0");
    }

    #[test]
    fn a_moved_line_gives_its_old_hold_back_and_takes_the_new_one_whole() {
        let HoldDecision::Granted(g) = decide(cart(1), &request(Some((&"y", 3)), Some((&"x", 5))), stock) else {
            panic!("granted")
        };
        assert_eq!((g.reserve, g.give_back, g.taken, g.released, g.lines), (Some((&"x", 5)), Some((&"y", 3)), 5, 3, 1));
        assert_eq!(
            decide(cart(1), &request(Some((&"x", 3)), Some((&"y", 1))), stock),
            HoldDecision::Refused { version: 8, refusal: Refusal::InsufficientStock { available: 0 } },
            "the old hold does not count towards another item"
        );
    }

    #[test]
    fn refusals_take_a_version_and_name_the_first_rule_broken() {
        let full = cart(2);
        assert_eq!(
            decide(full, &request(None, Some((&"nope", 1))), stock),
            HoldDecision::Refused { version: 8, refusal: Refusal::UnknownItem },
            "an unknown item is reported before the line limit"
        );
        assert_eq!(
            decide(full, &request(None, Some((&"x", 1))), stock),
            HoldDecision::Refused { version: 8, refusal: Refusal::TooManyLines }
        );
        assert!(matches!(decide(full, &request(Some((&"x", 1)), Some((&"x", 2))), stock), HoldDecision::Granted(_)));
        assert_eq!(
            decide(cart(0), &request(None, Some((&"x", 6))), stock),
            HoldDecision::Refused { version: 8, refusal: Refusal::InsufficientStock { available: 5 } }
        );
        assert_eq!(
            decide(cart(1), &request(Some((&"x", 1)), Some((&"nope", 1))), stock),
            HoldDecision::Refused { version: 8, refusal: Refusal::UnknownItem }
        );
    }

    #[test]
    fn missing_and_expired_carts_take_no_version() {
        assert_eq!(decide(None, &request(None, Some((&"x", 1))), stock), HoldDecision::NoCart);
        let mut late = request(None, Some((&"x", 1)));
        late.now = Timestamp::from_millis(NOW + 100);
        assert_eq!(decide(cart(0), &late, stock), HoldDecision::Expired);
    }

    #[test]
    fn removing_a_line_gives_it_back_and_removing_nothing_still_takes_a_version() {
        let HoldDecision::Granted(g) = decide(cart(1), &request(Some((&"x", 4)), None), stock) else { panic!() };
        assert_eq!((g.reserve, g.give_back, g.taken, g.released, g.lines), (None, Some((&"x", 4)), 0, 4, 0));
        let HoldDecision::Granted(g) = decide(cart(1), &request(None, None), stock) else { panic!() };
        assert_eq!((g.give_back, g.released, g.lines, g.version), (None, 0, 1, 8));
    }

    #[test]
    fn a_deadline_only_moves_later() {
        let mut r = request(None, None);
        r.new_deadline = Some(Timestamp::from_millis(NOW + 50));
        let HoldDecision::Granted(g) = decide(cart(0), &r, stock) else { panic!() };
        assert_eq!(g.deadline, Timestamp::from_millis(NOW + 100));
        r.new_deadline = Some(Timestamp::from_millis(NOW + 500));
        let HoldDecision::Granted(g) = decide(cart(0), &r, stock) else { panic!() };
        assert_eq!(g.deadline, Timestamp::from_millis(NOW + 500));
    }

    // --- The rule against a naive model -------------------------------------
    //
    // The model does not move differences: it gives a line's whole hold back,
    // then takes the new line whole, and refuses when that is impossible; what
    // a call took and released is read off the net change per item. Both run
    // the same random calls on a small ledger, including carts past their
    // deadline (whose holds must never block), and must agree on every answer
    // and every count.

    /// The ledger's items, and one it has never heard of.
    const ITEMS: [&str; 4] = ["a", "b", "c", "unknown"];
    const STOCKED: usize = 3;

    /// A cart in the test ledger: deadline, version, product -> (item, units).
    type TestCart = (i64, u64, BTreeMap<u8, (&'static str, u32)>);

    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct Ledger {
        available: BTreeMap<&'static str, i64>,
        reserved: BTreeMap<&'static str, i64>,
        carts: BTreeMap<u8, TestCart>,
    }

    impl Ledger {
        fn release(&mut self, cart: u8) {
            if let Some((_, _, lines)) = self.carts.remove(&cart) {
                for (item, q) in lines.values() {
                    *self.available.get_mut(item).unwrap() += i64::from(*q);
                    *self.reserved.get_mut(item).unwrap() -= i64::from(*q);
                }
            }
        }

        fn release_expired_holding(&mut self, item: &str, now: i64) {
            let expired: Vec<u8> = self
                .carts
                .iter()
                .filter(|(_, (deadline, _, lines))| *deadline <= now && lines.values().any(|(i, _)| *i == item))
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                self.release(id);
            }
        }
    }

    /// One call: cart, product, wanted line (item index, units; 0 units removes), max lines, now, new deadline.
    #[derive(Clone, Debug)]
    struct Call {
        cart: u8,
        product: u8,
        line: Option<(usize, u32)>,
        max_lines: u16,
        now: i64,
        deadline: Option<i64>,
    }

    type Answer = Result<(u64, i64, u32, u32), (Option<u64>, &'static str, i64)>;

    /// The rule, applied as the in-memory ledger applies it.
    fn by_rule(l: &mut Ledger, c: &Call) -> Answer {
        for attempt in 0..2 {
            let view = l.carts.get(&c.cart).map(|(deadline, version, lines)| LedgerCart {
                deadline: Timestamp::from_millis(*deadline),
                version: *version,
                lines: u32::try_from(lines.len()).unwrap(),
            });
            let old_line = l.carts.get(&c.cart).and_then(|(_, _, lines)| lines.get(&c.product)).copied();
            let old = old_line.as_ref().map(|(i, q)| (i, *q));
            let new = c.line.map(|(i, q)| (&ITEMS[i], q));
            let req = HoldRequest {
                old,
                new,
                new_deadline: c.deadline.map(Timestamp::from_millis),
                max_lines: c.max_lines,
                now: Timestamp::from_millis(c.now),
            };
            let available = l.available.clone();
            match decide(view, &req, |i| available.get(*i).copied()) {
                HoldDecision::NoCart => return Err((None, "session_not_found", 0)),
                HoldDecision::Expired => {
                    l.release(c.cart);
                    return Err((None, "session_not_found", 0));
                }
                HoldDecision::Refused { refusal: Refusal::InsufficientStock { .. }, .. } if attempt == 0 => {
                    let item = ITEMS[c.line.unwrap().0];
                    l.release_expired_holding(item, c.now);
                }
                HoldDecision::Refused { version, refusal } => {
                    l.carts.get_mut(&c.cart).unwrap().1 = version;
                    return Err(match refusal {
                        Refusal::UnknownItem => (Some(version), "unknown_item", 0),
                        Refusal::TooManyLines => (Some(version), "too_many_lines", 0),
                        Refusal::InsufficientStock { available } => (Some(version), "insufficient_stock", available),
                    });
                }
                HoldDecision::Granted(g) => {
                    let (reserve, give_back) = (g.reserve.map(|(i, n)| (*i, n)), g.give_back.map(|(i, n)| (*i, n)));
                    if let Some((item, n)) = reserve {
                        *l.available.get_mut(item).unwrap() -= n;
                        *l.reserved.get_mut(item).unwrap() += n;
                    }
                    if let Some((item, n)) = give_back {
                        *l.available.get_mut(item).unwrap() += i64::from(n);
                        *l.reserved.get_mut(item).unwrap() -= i64::from(n);
                    }
                    let entry = l.carts.get_mut(&c.cart).unwrap();
                    match c.line {
                        Some((i, q)) => entry.2.insert(c.product, (ITEMS[i], q)),
                        None => entry.2.remove(&c.product),
                    };
                    assert_eq!(u32::try_from(entry.2.len()).unwrap(), g.lines, "the grant's line count");
                    entry.0 = g.deadline.as_millis();
                    entry.1 = g.version;
                    return Ok((g.version, g.deadline.as_millis(), g.taken, g.released));
                }
            }
        }
        unreachable!("a second refusal for stock returns")
    }

    /// The naive model.
    fn by_model(l: &mut Ledger, c: &Call) -> Answer {
        let Some((deadline, _, _)) = l.carts.get(&c.cart) else { return Err((None, "session_not_found", 0)) };
        if *deadline <= c.now {
            l.release(c.cart);
            return Err((None, "session_not_found", 0));
        }
        let (_, version, lines) = l.carts.get_mut(&c.cart).unwrap();
        *version += 1;
        let (version, old, count) = (*version, lines.get(&c.product).copied(), lines.len());
        if let Some((i, q)) = c.line {
            let item = ITEMS[i];
            let known = l.available.contains_key(item);
            if old.is_none() && count >= usize::from(c.max_lines) {
                return Err((Some(version), if known { "too_many_lines" } else { "unknown_item" }, 0));
            }
            if !known {
                return Err((Some(version), "unknown_item", 0));
            }
            // Everything back, then the new line whole.
            let back = old.filter(|(oi, _)| *oi == item).map_or(0, |(_, oq)| i64::from(oq));
            if l.available[item] + back < i64::from(q) {
                l.release_expired_holding(item, c.now);
                if l.available[item] + back < i64::from(q) {
                    return Err((Some(version), "insufficient_stock", l.available[item]));
                }
            }
        }
        let before = l.reserved.clone();
        if let Some((oi, oq)) = old {
            *l.available.get_mut(oi).unwrap() += i64::from(oq);
            *l.reserved.get_mut(oi).unwrap() -= i64::from(oq);
        }
        let (deadline, _, lines) = l.carts.get_mut(&c.cart).unwrap();
        match c.line {
            Some((i, q)) => {
                lines.insert(c.product, (ITEMS[i], q));
                *l.available.get_mut(ITEMS[i]).unwrap() -= i64::from(q);
                *l.reserved.get_mut(ITEMS[i]).unwrap() += i64::from(q);
            }
            None => {
                lines.remove(&c.product);
            }
        }
        if let Some(d) = c.deadline {
            *deadline = (*deadline).max(d);
        }
        let deadline = *deadline;
        let (mut taken, mut released) = (0, 0);
        for (item, after) in &l.reserved {
            let delta = after - before[item];
            taken += u32::try_from(delta.max(0)).unwrap();
            released += u32::try_from((-delta).max(0)).unwrap();
        }
        Ok((version, deadline, taken, released))
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            0u8..4,
            0u8..3,
            prop_oneof![Just(None), (0usize..4, 1u32..6).prop_map(Some)],
            1u16..3,
            0i64..3,
            prop_oneof![Just(None), (0i64..6).prop_map(Some)],
        )
            .prop_map(|(cart, product, line, max_lines, now, deadline)| Call {
                cart,
                product,
                line,
                max_lines,
                now,
                deadline,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_rule_answers_and_moves_what_the_naive_model_does(
            stock in proptest::collection::vec(0i64..8, 3),
            deadlines in proptest::collection::vec(1i64..5, 3),
            calls in proptest::collection::vec(call(), 1..40),
        ) {
            let mut start = Ledger::default();
            for (item, units) in ITEMS[..STOCKED].iter().zip(&stock) {
                start.available.insert(item, *units);
                start.reserved.insert(item, 0);
            }
            // Carts 0..3 are open (cart 3 never is), with deadlines that pass
            // while the calls' clock (0..3, never going back) runs.
            for (id, deadline) in deadlines.iter().enumerate() {
                start.carts.insert(u8::try_from(id).unwrap(), (*deadline, 0, BTreeMap::new()));
            }
            let (mut rule, mut model) = (start.clone(), start);
            let mut now = 0;
            for c in &calls {
                // The calls' clock never goes back.
                now = now.max(c.now);
                let c = Call { now, ..c.clone() };
                let (a, b) = (by_rule(&mut rule, &c), by_model(&mut model, &c));
                prop_assert_eq!(a, b, "call {:?}", c);
                prop_assert_eq!(&rule, &model);
                for (item, units) in ITEMS[..STOCKED].iter().copied().zip(&stock) {
                    let held: i64 = rule.carts.values().flat_map(|(_, _, l)| l.values()).filter(|(i, _)| *i == item).map(|(_, q)| i64::from(*q)).sum();
                    prop_assert_eq!(rule.reserved[item], held, "reserved == the ledger's holds of {}", item);
                    prop_assert!(rule.available[item] >= 0, "never oversold");
                    prop_assert_eq!(rule.available[item] + rule.reserved[item], *units, "conservation");
                }
            }
        }
    }
}

//! The merge rule: what merging one cart (the source) into another (the
//! target) does to the ledger of holds, in one step.
//!
//! Every source line moves into the target with the units it already holds
//! (never released and taken again, so no other shopper can take them in
//! between). Where a product is in both carts the strategy decides the
//! merged quantity ([`MergeStrategy::Sum`] or [`MergeStrategy::Max`]) and the
//! target's item is kept; only what the merged line needs beyond the units
//! both carts hold for that item is taken from stock, clamped to what is
//! available, to the per-line limit and to the line limit. Units the merged
//! cart does not keep go back to `available`. Nothing is ever oversold and no
//! unit is held twice: the source holds nothing afterwards.
//!
//! Pure, like [`crate::hold`]: adapters read the two carts and the free
//! counts under their locks, call [`plan_merge`], and apply the plan.

use std::collections::BTreeMap;

use crate::{CartId, InventoryId, Line, ProductId, Quantity, Timestamp};

/// How quantities of a product in both carts combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MergeStrategy {
    /// The two quantities added (Magento's choice). The default.
    #[default]
    Sum,
    /// The larger of the two (commercetools' choice).
    Max,
}

/// Why a merged line got fewer units than the strategy asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shortage {
    /// Not enough units of the item were free.
    InsufficientStock,
    /// The per-line limit (`limits.max_quantity`).
    QuantityLimit,
    /// The target already held the most lines it may: the source line was
    /// not added and its units went back to stock.
    TooManyLines,
}

impl Shortage {
    /// The reason as the API spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Shortage::InsufficientStock => "insufficient_stock",
            Shortage::QuantityLimit => "quantity_over_limit",
            Shortage::TooManyLines => "too_many_lines",
        }
    }
}

/// A merged line that got less than asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// The product.
    pub product_id: ProductId,
    /// The quantity the strategy asked for.
    pub requested: u32,
    /// The quantity the merged cart holds (0: the line was not added).
    pub granted: u32,
    /// Why it is less.
    pub reason: Shortage,
}

/// What a merge changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergePlan {
    /// The target's lines after the merge, in product order.
    pub lines: Vec<Line>,
    /// The lines of [`MergePlan::lines`] that are new or changed in the target.
    pub changed: Vec<Line>,
    /// Units to move from `available` to `reserved` per item (negative:
    /// back), counting the source's holds as given up; never 0.
    pub reserve: BTreeMap<InventoryId, i64>,
    /// Lines that got less than the strategy asked for, in product order.
    pub shortfalls: Vec<Shortfall>,
}

impl MergePlan {
    /// Units the merge takes from `available`, all items together.
    #[must_use]
    pub fn taken(&self) -> u64 {
        self.reserve.values().filter(|u| **u > 0).map(|u| u.unsigned_abs()).sum()
    }

    /// Units the merge gives back to `available`, all items together.
    #[must_use]
    pub fn released(&self) -> u64 {
        self.reserve.values().filter(|u| **u < 0).map(|u| u.unsigned_abs()).sum()
    }
}

/// The per-cart limits a merge respects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeLimits {
    /// Most units on one line.
    pub max_quantity: u32,
    /// Most lines in a cart.
    pub max_lines: u16,
}

/// One merge, as the use case asks the ledger for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeCall {
    /// The cart merged away (the source).
    pub from: CartId,
    /// The cart merged into (the target).
    pub into: CartId,
    /// How quantities of a product in both carts combine.
    pub strategy: MergeStrategy,
    /// The limits the merged cart respects.
    pub limits: MergeLimits,
    /// A deadline to move the target's to, when later (sliding expiry).
    pub new_deadline: Option<Timestamp>,
    /// The caller's now.
    pub now: Timestamp,
}

/// One product's line in the merged cart, before stock is counted.
struct Pending<'a> {
    product: &'a ProductId,
    item: &'a InventoryId,
    /// What the strategy asked for.
    requested: u32,
    /// After the quantity limit.
    wanted: u32,
    /// Units of `item` the two carts already hold for this product.
    held: u32,
    changed: bool,
}

/// Plans merging `source` into `target` (each in product order, one line per
/// product); `available` tells the free units of an item now.
pub fn plan_merge(
    target: &[Line],
    source: &[Line],
    strategy: MergeStrategy,
    limits: MergeLimits,
    available: impl Fn(&InventoryId) -> i64,
) -> MergePlan {
    let mut by_product: BTreeMap<&ProductId, (Option<&Line>, Option<&Line>)> = BTreeMap::new();
    for line in target {
        by_product.entry(&line.product_id).or_default().0 = Some(line);
    }
    for line in source {
        by_product.entry(&line.product_id).or_default().1 = Some(line);
    }
    let mut before: BTreeMap<&InventoryId, i64> = BTreeMap::new();
    for line in target.iter().chain(source) {
        *before.entry(&line.inventory_id).or_default() += i64::from(line.quantity.get());
    }

    let mut shortfalls = Vec::new();
    let mut line_count = target.len();
    let mut pending = Vec::with_capacity(by_product.len());
    for (product, lines) in &by_product {
        let (requested, item, held, changed) = match *lines {
            (Some(t), None) => (t.quantity.get(), &t.inventory_id, t.quantity.get(), false),
            (None, Some(s)) => {
                if line_count >= usize::from(limits.max_lines) {
                    let requested = s.quantity.get();
                    shortfalls.push(Shortfall {
                        product_id: (*product).clone(),
                        requested,
                        granted: 0,
                        reason: Shortage::TooManyLines,
                    });
                    continue;
                }
                line_count += 1;
                (s.quantity.get(), &s.inventory_id, s.quantity.get(), true)
            }
            (Some(t), Some(s)) => {
                let (tq, sq) = (t.quantity.get(), s.quantity.get());
                let requested = match strategy {
                    MergeStrategy::Sum => tq.saturating_add(sq),
                    MergeStrategy::Max => tq.max(sq),
                };
                let held = tq + if s.inventory_id == t.inventory_id { sq } else { 0 };
                (requested, &t.inventory_id, held, true)
            }
            (None, None) => unreachable!("every entry has a line"),
        };
        // A line only the target has is left as it is.
        let wanted = if changed { requested.min(limits.max_quantity) } else { requested };
        pending.push(Pending { product, item, requested, wanted, held, changed });
    }

    // Units the merged lines hold of their items without taking any: what
    // they keep of what the two carts held. The rest goes back, and what
    // goes back can be taken again by a line that needs more.
    let mut kept: BTreeMap<&InventoryId, i64> = BTreeMap::new();
    for p in &pending {
        *kept.entry(p.item).or_default() += i64::from(p.wanted.min(p.held));
    }
    let mut pool: BTreeMap<&InventoryId, i64> = before
        .iter()
        .map(|(item, units)| (*item, available(item) + units - kept.get(item).copied().unwrap_or(0)))
        .collect();

    let mut lines = Vec::with_capacity(pending.len());
    let mut changed = Vec::new();
    for p in pending {
        let mut granted = p.wanted.min(p.held);
        if p.wanted > p.held {
            let free = pool.get_mut(p.item).expect("every item held is in the pool");
            let take = i64::from(p.wanted - p.held).min((*free).max(0));
            *free -= take;
            granted += u32::try_from(take).expect("at most the difference of two u32");
        }
        if granted < p.requested {
            let reason = if granted < p.wanted { Shortage::InsufficientStock } else { Shortage::QuantityLimit };
            shortfalls.push(Shortfall { product_id: p.product.clone(), requested: p.requested, granted, reason });
        }
        let line = Line {
            product_id: p.product.clone(),
            inventory_id: p.item.clone(),
            quantity: Quantity::new(granted).expect("a merged line keeps at least the target's or source's units"),
        };
        if p.changed {
            changed.push(line.clone());
        }
        lines.push(line);
    }
    shortfalls.sort_by(|a, b| a.product_id.cmp(&b.product_id));

    let mut after: BTreeMap<&InventoryId, i64> = BTreeMap::new();
    for line in &lines {
        *after.entry(&line.inventory_id).or_default() += i64::from(line.quantity.get());
    }
    let reserve = before
        .iter()
        .map(|(item, units)| ((*item).clone(), after.get(item).copied().unwrap_or(0) - units))
        .filter(|(_, delta)| *delta != 0)
        .collect();
    MergePlan { lines, changed, reserve, shortfalls }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn line(p: &str, i: &str, q: u32) -> Line {
        Line {
            product_id: ProductId::parse(p).unwrap(),
            inventory_id: InventoryId::parse(i).unwrap(),
            quantity: Quantity::new(q).unwrap(),
        }
    }

    fn free(units: &[(&str, i64)]) -> impl Fn(&InventoryId) -> i64 {
        let units: BTreeMap<String, i64> = units.iter().map(|(i, n)| ((*i).to_owned(), *n)).collect();
        move |item| units.get(item.as_str()).copied().unwrap_or(0)
    }

    const LIMITS: MergeLimits = MergeLimits { max_quantity: 10, max_lines: 3 };

    #[test]
    fn source_lines_move_with_their_units_and_nothing_is_taken_or_released() {
        let plan = plan_merge(&[line("p1", "a", 2)], &[line("p2", "b", 3)], MergeStrategy::Sum, LIMITS, free(&[]));
        assert_eq!(plan.lines, [line("p1", "a", 2), line("p2", "b", 3)]);
        assert_eq!(plan.changed, [line("p2", "b", 3)]);
        assert!(plan.reserve.is_empty(), "the units stay held: {:?}", plan.reserve);
        assert!(plan.shortfalls.is_empty());
    }

    #[test]
    fn sum_keeps_both_holds_and_max_gives_the_smaller_back() {
        let (t, s) = ([line("p1", "a", 2)], [line("p1", "a", 3)]);
        let sum = plan_merge(&t, &s, MergeStrategy::Sum, LIMITS, free(&[]));
        assert_eq!((sum.lines.clone(), sum.reserve.len()), (vec![line("p1", "a", 5)], 0));
        let max = plan_merge(&t, &s, MergeStrategy::Max, LIMITS, free(&[]));
        assert_eq!(max.lines, [line("p1", "a", 3)]);
        assert_eq!(max.reserve, BTreeMap::from([(InventoryId::parse("a").unwrap(), -2)]));
    }

    #[test]
    fn a_product_held_from_two_items_keeps_the_targets_and_takes_only_the_extra_clamped_to_stock() {
        let plan =
            plan_merge(&[line("p1", "a", 2)], &[line("p1", "b", 4)], MergeStrategy::Sum, LIMITS, free(&[("a", 1)]));
        assert_eq!(plan.lines, [line("p1", "a", 3)], "2 held + 1 free of a");
        assert_eq!(
            plan.shortfalls,
            [Shortfall {
                product_id: ProductId::parse("p1").unwrap(),
                requested: 6,
                granted: 3,
                reason: Shortage::InsufficientStock
            }]
        );
        let a = InventoryId::parse("a").unwrap();
        let b = InventoryId::parse("b").unwrap();
        assert_eq!(plan.reserve, BTreeMap::from([(a, 1), (b, -4)]));
    }

    #[test]
    fn the_line_limits_clamp_and_report() {
        let t = [line("p1", "a", 8), line("p2", "a", 1), line("p3", "a", 1)];
        let s = [line("p1", "a", 5), line("p4", "b", 2)];
        let plan = plan_merge(&t, &s, MergeStrategy::Sum, LIMITS, free(&[("a", 100), ("b", 100)]));
        assert_eq!(plan.lines, [line("p1", "a", 10), line("p2", "a", 1), line("p3", "a", 1)]);
        let reasons: Vec<_> =
            plan.shortfalls.iter().map(|s| (s.product_id.as_str(), s.requested, s.granted, s.reason)).collect();
        assert_eq!(reasons, [("p1", 13, 10, Shortage::QuantityLimit), ("p4", 2, 0, Shortage::TooManyLines)]);
        let a = InventoryId::parse("a").unwrap();
        let b = InventoryId::parse("b").unwrap();
        assert_eq!(plan.reserve, BTreeMap::from([(a, -3), (b, -2)]), "what was not kept goes back");
    }

    #[test]
    fn units_one_line_gives_back_can_be_taken_by_another() {
        // p1 moves from b to a (target's item), giving up 4 of b; p2 needs 3
        // more of b and none are free but those 4.
        let t = [line("p1", "a", 1), line("p2", "b", 1)];
        let s = [line("p1", "b", 4), line("p2", "b", 3)];
        let plan = plan_merge(&t, &s, MergeStrategy::Sum, LIMITS, free(&[("a", 5), ("b", 0)]));
        assert_eq!(plan.lines, [line("p1", "a", 5), line("p2", "b", 4)]);
        assert!(plan.shortfalls.is_empty(), "{:?}", plan.shortfalls);
    }

    fn cart(max_lines: usize) -> impl Strategy<Value = Vec<Line>> {
        proptest::collection::btree_map(0u8..5, (0u8..3, 1u32..8), 0..max_lines).prop_map(|lines| {
            lines.into_iter().map(|(p, (i, q))| line(&format!("p{p}"), &format!("i{i}"), q)).collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Conservation, no oversell, limits, and every shortfall told.
        #[test]
        fn merges_never_oversell_and_account_for_every_unit(
            target in cart(4),
            source in cart(5),
            free_units in proptest::collection::vec(0i64..6, 3),
            sum in any::<bool>(),
            max_quantity in 1u32..12,
        ) {
            let limits = MergeLimits { max_quantity, max_lines: 4 };
            let strategy = if sum { MergeStrategy::Sum } else { MergeStrategy::Max };
            let avail = |item: &InventoryId| free_units[usize::from(item.as_str().as_bytes()[1] - b'0')];
            let plan = plan_merge(&target, &source, strategy, limits, avail);
            for (item, delta) in &plan.reserve {
                prop_assert!(*delta <= avail(item), "took {} of {} with {} free", delta, item, avail(item));
            }
            let held = |lines: &[Line], item: &InventoryId| -> i64 {
                lines.iter().filter(|l| &l.inventory_id == item).map(|l| i64::from(l.quantity.get())).sum()
            };
            for i in 0..3 {
                let item = InventoryId::parse(&format!("i{i}")).unwrap();
                let delta = plan.reserve.get(&item).copied().unwrap_or(0);
                prop_assert_eq!(held(&plan.lines, &item), held(&target, &item) + held(&source, &item) + delta, "units of {}", item);
            }
            prop_assert!(plan.lines.len() <= usize::from(limits.max_lines).max(target.len()));
            for l in &plan.lines {
                let t = target.iter().find(|t| t.product_id == l.product_id);
                let s = source.iter().find(|s| s.product_id == l.product_id);
                // Never less than the target had (unless the limit was lowered below it).
                if let Some(t) = t {
                    prop_assert!(l.quantity.get() >= t.quantity.get().min(max_quantity));
                    prop_assert_eq!(&l.inventory_id, &t.inventory_id);
                    if s.is_none() {
                        prop_assert_eq!(l, t, "a line only the target has is left alone");
                    }
                }
                let requested = match (t, s, strategy) {
                    (Some(t), Some(s), MergeStrategy::Sum) => t.quantity.get() + s.quantity.get(),
                    (Some(t), Some(s), MergeStrategy::Max) => t.quantity.get().max(s.quantity.get()),
                    (Some(t), None, _) => t.quantity.get(),
                    (None, Some(s), _) => s.quantity.get(),
                    (None, None, _) => unreachable!(),
                };
                let told = plan.shortfalls.iter().find(|f| f.product_id == l.product_id);
                match told {
                    Some(f) => prop_assert_eq!((f.requested, f.granted), (requested, l.quantity.get())),
                    None => prop_assert_eq!(l.quantity.get(), requested, "a line that got less says so"),
                }
            }
            for s in &source {
                if !plan.lines.iter().any(|l| l.product_id == s.product_id) {
                    let told = plan.shortfalls.iter().any(|f| f.product_id == s.product_id && f.granted == 0 && f.reason == Shortage::TooManyLines);
                    prop_assert!(told, "a dropped source line is reported");
                }
            }
        }
    }
}

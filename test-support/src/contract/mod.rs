//! The contract every adapter of a port must keep, written once against the port
//! traits and run against every implementation: the in-memory adapters, the
//! fault-injecting wrapper, Redis and PostgreSQL.
//!
//! # Shape
//!
//! Each behaviour is one generic `pub async fn name(store, clock)` in
//! [`sessions`] or [`inventory`]. It receives an **already constructed, empty**
//! store, so an adapter that needs async construction (a connection pool, a fresh
//! key prefix, a fresh schema) does that work in its fixture, not in the
//! contract. The clock gives the test its `now`; every timestamp the test passes
//! to the port is relative to it, so the same functions run unchanged under the
//! in-memory adapters' manual clock and under a real clock.
//!
//! # Running the suite for an adapter
//!
//! In a test file, write an `async fn` returning `(store, clock)` and hand its
//! path to the suite's macro; each behaviour becomes its own `#[tokio::test]`
//! named after it:
//!
//! ```ignore
//! async fn redis_sessions() -> (RedisSessions, SystemClock) {
//!     (cartd_test_support::stores::redis_sessions().await, SystemClock)
//! }
//!
//! mod session_store {
//!     cartd_test_support::session_store_contract!(super::redis_sessions);
//! }
//! ```
//!
//! The list of behaviours lives in the macros below, next to the functions, so a
//! new adapter cannot forget one; the test `every_contract_function_is_in_its_macro`
//! fails when a function is missing from its macro's list.
//!
//! # Isolation
//!
//! The fixture must hand out a store nobody else uses: some behaviours count
//! what `release_expired` returns over the whole store.
//!
//! # Time
//!
//! No contract function waits. Both ports take `now` as an argument, and the
//! PostgreSQL ledger and the Redis script compare deadlines with that argument,
//! so neither suite needs real waiting. A session store that relied on key TTLs
//! alone (rather than also comparing the stored deadline with the `now` it is
//! given) would see sessions expire only when real time passes; the session
//! tests marked `REDIS: needs real sleeping` would then need the fixture's clock
//! to be the real one and the test to sleep until the deadlines it uses (at most
//! a few seconds after the test's `now`).

pub mod inventory;
pub mod quotas;
pub mod sessions;

/// Expands to one `#[tokio::test]` per name: each gets a fresh `(store, clock)`
/// from `$fixture().await` and runs `cartd_test_support::contract::$suite::$name`
/// with it.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident, $fixture:path, [$($name:ident),+ $(,)?]) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, clock) = $fixture().await;
                $crate::contract::$suite::$name(store, clock).await;
            }
        )+
    };
}

/// The [`domain::ports::SessionStore`] contract, one test per behaviour.
/// `$fixture`: path of an `async fn() -> (impl SessionStore, impl Clock)`.
#[macro_export]
macro_rules! session_store_contract {
    ($fixture:path) => {
        $crate::contract_tests!(
            sessions,
            $fixture,
            [
                load_of_unknown_session_is_none,
                created_session_is_empty_and_carries_its_deadline,
                session_is_invisible_after_its_deadline,
                apply_sets_a_line_and_returns_the_cart,
                apply_replaces_a_line_rather_than_adding_to_it,
                lines_are_one_per_product_in_product_order,
                apply_ignores_older_versions_of_a_line,
                removed_line_is_not_resurrected_by_an_older_change,
                apply_on_missing_session_changes_nothing,
                apply_only_applies_like_apply_and_says_whether_the_session_exists,
                apply_does_not_revive_an_ended_session,
                close_reports_whether_session_was_live,
                closed_session_keeps_nothing,
                sliding_deadline_moves_with_apply,
                deadline_never_moves_back_when_changes_arrive_out_of_order,
                sessions_are_independent,
                an_idempotency_key_is_claimed_once_and_settled_by_its_claimant,
                a_dropped_or_ended_idempotency_key_can_be_claimed_again,
            ]
        );
    };
}

/// The [`domain::ports::Inventory`] contract, one test per behaviour.
/// `$fixture`: path of an `async fn() -> (impl Inventory, impl Clock)`.
#[macro_export]
macro_rules! inventory_contract {
    ($fixture:path) => {
        $crate::contract_tests!(
            inventory,
            $fixture,
            [
                stock_of_unknown_item_is_none,
                set_available_creates_an_item,
                set_available_keeps_reserved_and_sold,
                open_cart_is_idempotent,
                set_hold_on_unknown_cart_is_session_not_found,
                set_hold_moves_only_the_difference,
                receipt_versions_increase_with_every_change,
                every_call_on_a_live_cart_takes_a_version_granted_or_refused,
                new_deadline_moves_the_carts_deadline,
                an_earlier_new_deadline_does_not_shorten_the_cart,
                set_hold_reports_the_units_it_moved,
                releases_report_the_deadlines_of_the_carts_they_released,
                reserved_total_sums_every_items_holds,
                moving_a_line_to_another_item_moves_its_hold,
                insufficient_stock_changes_nothing_and_reports_available,
                unknown_item_is_refused_and_changes_nothing,
                too_many_lines_is_refused_but_existing_lines_may_change,
                release_returns_units_exactly_once,
                releases_racing_over_the_same_carts_give_each_unit_back_once,
                checkout_turns_reserved_into_sold,
                checkout_retry_returns_the_same_order,
                order_of_names_the_order_a_cart_became_and_nothing_else,
                merge_moves_the_source_into_the_target_once,
                merge_with_a_missing_or_expired_cart_is_session_not_found,
                checkout_of_an_empty_cart_is_cart_empty,
                checkout_of_an_expired_cart_is_session_not_found_and_releases_its_holds,
                checkout_of_an_unknown_or_released_cart_is_session_not_found,
                checked_out_cart_cannot_be_changed_or_released,
                release_expired_releases_only_carts_at_or_past_their_deadline,
                release_expired_respects_its_limit,
                expired_holds_never_block,
                set_hold_on_an_expired_cart_is_session_not_found,
                list_stock_pages_through_every_item_in_byte_order,
                stock_of_returns_each_known_item_once_in_byte_order,
            ]
        );
    };
}

/// The [`domain::ports::Quotas`] contract, one test per behaviour.
/// `$fixture`: path of an `async fn() -> (impl Quotas, impl Clock)`.
#[macro_export]
macro_rules! quotas_contract {
    ($fixture:path) => {
        $crate::contract_tests!(
            quotas,
            $fixture,
            [
                carts_per_minute_refuses_the_next_cart_until_the_minute_ends,
                open_carts_refuses_until_a_cart_ends_or_is_forgotten,
                held_units_count_across_a_clients_carts_and_refuse_beyond_the_cap,
                lowering_a_hold_is_always_admitted_and_reports_what_was_counted,
                held_units_end_at_the_carts_deadline_with_no_call,
                forgetting_a_cart_frees_its_units_of_every_item,
                a_cart_known_only_by_its_holds_is_forgotten_too,
                a_later_deadline_keeps_an_open_cart_counted,
                under_fixed_expiry_a_count_ends_with_its_open_carts_deadline,
                under_sliding_expiry_a_change_keeps_all_the_carts_counts_alive,
                standing_lists_refused_clients_and_the_top_holders_of_an_item,
            ]
        );
    };
}

#[cfg(test)]
mod tests {
    /// The names of the `pub async fn`s of a suite's source.
    fn functions(source: &str) -> Vec<&str> {
        source
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|l| l.split('(').next().expect("a function name"))
            .collect()
    }

    /// The names listed in `macro_name`'s expansion in this file.
    fn listed<'a>(this_file: &'a str, macro_name: &str) -> Vec<&'a str> {
        let start = this_file.find(&format!("macro_rules! {macro_name} {{")).expect("the macro");
        let body = &this_file[start..];
        let open = body.find('[').expect("the list opens");
        let close = body.find(']').expect("the list closes");
        body[open + 1..close].split(',').map(str::trim).filter(|n| !n.is_empty()).collect()
    }

    #[test]
    fn every_contract_function_is_in_its_macro() {
        let this_file = include_str!("mod.rs");
        for (macro_name, source) in [
            ("session_store_contract", include_str!("sessions.rs")),
            ("inventory_contract", include_str!("inventory.rs")),
            ("quotas_contract", include_str!("quotas.rs")),
        ] {
            let mut defined = functions(source);
            let mut run = listed(this_file, macro_name);
            assert!(defined.len() > 5, "{macro_name}: the suite's functions were found");
            defined.sort_unstable();
            run.sort_unstable();
            assert_eq!(defined, run, "{macro_name} must run every contract function, each once");
        }
    }
}

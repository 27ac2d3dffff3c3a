//! The storefront's catalogue: what each product is called and costs, and
//! which inventory item holds its stock. Read from a JSON file named in the
//! settings (or the built-in demo catalogue) and validated at start, so a bad
//! entry stops the binary with a message that names it instead of showing a
//! broken page.

use std::collections::HashSet;
use std::path::Path;

use domain::{InventoryId, ProductId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The built-in catalogue: products for the demo items `inv-1` .. `inv-12`
/// that the in-memory backend seeds at start.
pub const DEMO_CATALOG: &str = include_str!("../storefront/demo-catalog.json");

/// Most products a catalogue may list (the page shows them all at once).
pub const MAX_PRODUCTS: usize = 500;
/// Highest price, in minor units.
pub const MAX_PRICE: u64 = 100_000_000;

/// A catalogue, as the file holds it and `GET /v1/catalog` serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// ISO 4217 code of every price, e.g. `EUR`.
    #[schema(example = "EUR", min_length = 3, max_length = 3)]
    pub currency: String,
    /// The products, in the order the page shows them.
    pub products: Vec<Product>,
}

/// One product on the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The cart line's product id.
    #[schema(example = "prod-1", pattern = "^[A-Za-z0-9._:-]+$")]
    pub product_id: String,
    /// Shown to shoppers (1-100 characters).
    #[schema(example = "Espresso cup")]
    pub name: String,
    /// Price of one unit, in minor units of `currency` (cents).
    #[schema(example = 1250, minimum = 0, maximum = 100_000_000)]
    pub price: u64,
    /// The inventory item the units are held from.
    #[schema(example = "inv-1", pattern = "^[A-Za-z0-9._:-]+$")]
    pub inventory_id: String,
}

/// Why a catalogue was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalogue {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON of the catalogue's shape.
    #[error("catalogue {origin} is not valid: {source}")]
    Parse {
        /// The file, or `built-in`.
        origin: String,
        /// Where and what.
        #[source]
        source: serde_json::Error,
    },
    /// An entry breaks a rule.
    #[error("catalogue {origin}: {entry}: {reason}")]
    Entry {
        /// The file, or `built-in`.
        origin: String,
        /// Which entry, e.g. `products[3] (product_id "mug")`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Catalog {
    /// The built-in demo catalogue.
    ///
    /// # Panics
    /// Never: a unit test checks the built-in file is valid.
    #[must_use]
    pub fn demo() -> Self {
        Self::parse(DEMO_CATALOG, "built-in").expect("the built-in catalogue is valid")
    }

    /// Reads and validates the catalogue at `path`.
    ///
    /// # Errors
    /// [`CatalogError`] naming the file and the bad entry.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| CatalogError::Read { path: origin.clone(), source })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates `text`; `origin` names it in errors.
    ///
    /// # Errors
    /// [`CatalogError`] naming the bad entry.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(text).map_err(|source| CatalogError::Parse { origin: origin.to_owned(), source })?;
        catalog.validate(origin)?;
        Ok(catalog)
    }

    fn validate(&self, origin: &str) -> Result<(), CatalogError> {
        let fail = |entry: String, reason: String| CatalogError::Entry { origin: origin.to_owned(), entry, reason };
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(fail("currency".into(), format!("{:?} is not a three-letter code like EUR", self.currency)));
        }
        if self.products.is_empty() {
            return Err(fail("products".into(), "must list at least one product".into()));
        }
        if self.products.len() > MAX_PRODUCTS {
            return Err(fail("products".into(), format!("lists more than {MAX_PRODUCTS} products")));
        }
        let mut seen = HashSet::new();
        for (n, p) in self.products.iter().enumerate() {
            let entry = format!("products[{n}] (product_id {:?})", p.product_id);
            ProductId::parse(&p.product_id).map_err(|e| fail(entry.clone(), format!("product_id {e}")))?;
            InventoryId::parse(&p.inventory_id).map_err(|e| fail(entry.clone(), format!("inventory_id {e}")))?;
            let name_len = p.name.trim().chars().count();
            if name_len == 0 || p.name.chars().count() > 100 {
                return Err(fail(entry, "name must be 1 to 100 characters".into()));
            }
            if p.price > MAX_PRICE {
                return Err(fail(entry, format!("price must be at most {MAX_PRICE} (minor units)")));
            }
            if !seen.insert(p.product_id.as_str()) {
                return Err(fail(entry, "product_id appears twice".into()));
            }
        }
        Ok(())
    }

    /// The distinct inventory items the products use, in catalogue order.
    #[must_use]
    pub fn inventory_ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.products.iter().filter(|p| seen.insert(p.inventory_id.as_str())).map(|p| p.inventory_id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalogue_is_valid_and_uses_the_demo_items() {
        let c = Catalog::demo();
        assert!(!c.products.is_empty());
        for (n, p) in c.products.iter().enumerate() {
            assert_eq!(p.inventory_id, format!("inv-{}", n + 1), "the demo seeds inv-1 .. inv-N");
        }
    }

    fn entry_error(json: &str) -> String {
        Catalog::parse(json, "shop.json").unwrap_err().to_string()
    }

    #[test]
    fn a_bad_entry_is_named_with_what_is_wrong() {
        let ok = r#"{"product_id": "a", "name": "A", "price": 1, "inventory_id": "inv-1"}"#;
        for (bad, expected) in [
            (
                r#"{"product_id": "b c", "name": "B", "price": 1, "inventory_id": "inv-2"}"#,
                "products[1] (product_id \"b c\"): product_id",
            ),
            (
                r#"{"product_id": "b", "name": " ", "price": 1, "inventory_id": "inv-2"}"#,
                "products[1] (product_id \"b\"): name",
            ),
            (
                r#"{"product_id": "b", "name": "B", "price": 1, "inventory_id": ""}"#,
                "products[1] (product_id \"b\"): inventory_id",
            ),
            (
                r#"{"product_id": "b", "name": "B", "price": 100000001, "inventory_id": "i"}"#,
                "products[1] (product_id \"b\"): price",
            ),
            (
                r#"{"product_id": "a", "name": "B", "price": 1, "inventory_id": "i"}"#,
                "products[1] (product_id \"a\"): product_id appears twice",
            ),
        ] {
            let err = entry_error(&format!(r#"{{"currency": "EUR", "products": [{ok}, {bad}]}}"#));
            assert!(err.starts_with("catalogue shop.json: "), "{err}");
            assert!(err.contains(expected), "{err} does not contain {expected}");
        }
        assert!(entry_error(r#"{"currency": "euro", "products": []}"#).contains("currency"));
        assert!(entry_error(r#"{"currency": "EUR", "products": []}"#).contains("at least one"));
        let err = entry_error(
            r#"{"currency": "EUR", "products": [{"product_id": "a", "name": "A", "price": -1, "inventory_id": "i"}]}"#,
        );
        assert!(err.contains("line 1"), "serde's position is kept: {err}");
        assert!(entry_error(r#"{"currency": "EUR", "products": [], "extra": 1}"#).contains("extra"));
    }
}

//! The `inventory` plugin: an exported interface with a record and a variant
//! error.

use exports::example::inventory::stock::{Guest, Reservation, StockError};

wit_bindgen::generate!({ path: ["../../wit", "wit"], world: "example:inventory/inventory" });

/// Each SKU with its available units and warehouse.
const STOCK: &[(&str, u32, &str)] = &[
    ("sku-1", 10, "lisbon"),
    ("sku-2", 3, "osaka"),
    ("sku-3", 0, "lisbon"),
];

struct Inventory;

impl Guest for Inventory {
    fn reserve(sku: String, qty: u32) -> Result<Reservation, StockError> {
        if qty == 0 {
            return Err(StockError::InvalidQuantity);
        }
        let Some(&(_, available, warehouse)) = STOCK.iter().find(|(s, ..)| *s == sku) else {
            return Err(StockError::UnknownSku(sku));
        };
        if qty > available {
            return Err(StockError::Insufficient(available));
        }
        Ok(Reservation {
            reservation_id: format!("R-{sku}-{qty}"),
            sku,
            quantity: qty,
            warehouse: warehouse.into(),
        })
    }
}

export!(Inventory);

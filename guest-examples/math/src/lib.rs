//! The `math` plugin: world-level exports with scalars, results and a record.

wit_bindgen::generate!({ path: ["../../wit", "wit"], world: "example:math/math" });

struct Math;

impl Guest for Math {
    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn divide(a: i64, b: i64) -> Result<i64, String> {
        if b == 0 {
            return Err("division by zero".into());
        }
        a.checked_div(b).ok_or_else(|| "overflow".into())
    }

    fn stats(values: Vec<f64>) -> Stats {
        if values.is_empty() {
            return Stats {
                count: 0,
                mean: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let sum: f64 = values.iter().sum();
        Stats {
            count: values.len() as u32,
            mean: sum / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

export!(Math);

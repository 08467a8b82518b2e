//! Failpoints for tests of what can only be made to happen from inside: in debug builds,
//! `SNAPROTD_FAILPOINTS=name,name` makes each named point fire once in the process.
//! Release builds compile them to nothing.

/// Panics at point `name` the first time it is reached, when the environment asks.
pub fn panic_at(name: &str) {
    #[cfg(debug_assertions)]
    if take(name) {
        panic!("failpoint {name}");
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
fn take(name: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static ARMED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let names = std::env::var("SNAPROTD_FAILPOINTS").unwrap_or_default();
        Mutex::new(
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
        )
    });
    armed.lock().unwrap_or_else(|p| p.into_inner()).remove(name)
}

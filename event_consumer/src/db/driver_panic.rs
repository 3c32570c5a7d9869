//! The one panic of the PostgreSQL driver that is not a bug of ours, made the error it should be.
//!
//! `postgres::Config::connect` (0.19) builds a tokio runtime for each session (two epoll
//! descriptors and an event descriptor) and unwraps the result ("FIXME don't unwrap"): out of
//! file descriptors (EMFILE) it panics where it should fail. The driver offers no other way to
//! open a blocking session, so the connect runs under [`catch`]: the panic becomes a
//! [`HostCause::Local`] logged once as the outage's cause, instead of a panic message and, with
//! `RUST_BACKTRACE` set, a backtrace whose symbols cost a debug build about 90 MiB to resolve.
//! Since `descriptors.rs` keeps a reserve for the database, this is a last line of defence.
//!
//! [`HostCause::Local`]: super::HostCause::Local

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs [`catch`]: its panic is reported by the caller, not the hook.
    static CAUGHT_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic inside it is returned as its message (an unwrapped OS error as the OS
/// error: "Too many open files (os error 24)"), and the panic hook stays silent about it
/// (panics anywhere else are reported as before).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    CAUGHT_HERE.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAUGHT_HERE.with(|c| c.set(false));
    result.map_err(|payload| message(payload.as_ref()))
}

/// Wraps the hook in place (the default one, or whatever the program set) once per process.
fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAUGHT_HERE.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fn message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(text) = payload.downcast_ref::<&str>() {
        *text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.as_str()
    } else {
        return "a panic without a message".to_owned();
    };
    match os_error_code(text) {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => text.to_owned(),
    }
}

/// The code of an `io::Error` that `unwrap` printed with `Debug`: `Os { code: 24, … }`.
fn os_error_code(text: &str) -> Option<i32> {
    let after = text.split_once("Os { code: ")?.1;
    let digits = after.find(|c: char| !c.is_ascii_digit())?;
    after[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_becomes_its_message() {
        let caught = catch(|| -> u32 { panic!("no descriptor: {}", 24) });
        assert_eq!(caught, Err("no descriptor: 24".to_owned()));
        let caught = catch(|| -> u32 { std::panic::panic_any(7_u8) });
        assert_eq!(caught, Err("a panic without a message".to_owned()));
    }

    #[test]
    fn an_unwrapped_os_error_reads_as_the_os_error() {
        // What postgres does with its runtime's result.
        fn build_runtime() -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(24))
        }
        let caught = catch(|| build_runtime().unwrap());
        assert_eq!(caught.unwrap_err(), "Too many open files (os error 24)");
        let caught = catch(|| -> u32 { panic!("Os {{ code: x") });
        assert_eq!(caught, Err("Os { code: x".to_owned()));
    }

    #[test]
    fn a_value_passes_through_and_the_thread_is_no_longer_caught_after() {
        assert_eq!(catch(|| 5), Ok(5));
        assert!(!CAUGHT_HERE.with(Cell::get));
        let _ = catch(|| -> () { panic!("inside") });
        assert!(!CAUGHT_HERE.with(Cell::get));
    }
}

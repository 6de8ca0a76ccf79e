//! Terminals for `lain exec -t`: what a runtime is given to run a command on a terminal
//! ([`crate::runtime::Runtime::exec_tty`]) and what flows in while it runs.
//!
//! The command's terminal is a pseudo-terminal the runtime allocates (a pty of the kernel's host
//! on the process runtime, Docker's own with `Tty: true` on Docker); the kernel relays its bytes
//! both ways and passes on the client's window size, so the command's line discipline, job
//! control and Ctrl-C work as on a local terminal.

/// A terminal's window size in character cells.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct TtySize {
    /// Rows (1 to [`TTY_SIZE_MAX`]).
    pub rows: u16,
    /// Columns (1 to [`TTY_SIZE_MAX`]).
    pub cols: u16,
}

/// The largest number of rows or columns a terminal may be given.
pub const TTY_SIZE_MAX: u16 = 4096;

impl TtySize {
    /// The size, or why it is not one a terminal can have.
    pub fn checked(rows: u16, cols: u16) -> Result<TtySize, String> {
        if !(1..=TTY_SIZE_MAX).contains(&rows) || !(1..=TTY_SIZE_MAX).contains(&cols) {
            return Err(format!(
                "a terminal has 1 to {TTY_SIZE_MAX} rows and columns, not {rows}x{cols}"
            ));
        }
        Ok(TtySize { rows, cols })
    }
}

/// A command to run on a terminal.
#[derive(Clone, Debug)]
pub struct TtyCommand {
    /// The program and its arguments (no shell).
    pub argv: Vec<String>,
    /// Its `TERM` (checked by [`check_term`]).
    pub term: String,
    /// The terminal's size when it starts.
    pub size: TtySize,
    /// When it is killed.
    pub timeout: std::time::Duration,
}

/// What the client sends to a command running on a terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtyInput {
    /// Bytes typed (the terminal's input: Ctrl-C arrives as byte 3 and becomes SIGINT there).
    Data(Vec<u8>),
    /// The client's window changed size.
    Resize(TtySize),
}

/// The most bytes of input or output carried in one piece.
pub const TTY_CHUNK_MAX: usize = 32 << 10;

/// A terminal type (`TERM`) as a client may give it: 1 to 64 letters, digits and `.+-_`.
pub fn check_term(term: &str) -> Result<(), String> {
    let ok = !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a terminal type is 1 to 64 letters, digits and .+-_, not {term:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_terminal_types_are_bounded() {
        assert!(TtySize::checked(24, 80).is_ok());
        assert!(TtySize::checked(0, 80).is_err());
        assert!(TtySize::checked(24, TTY_SIZE_MAX + 1).is_err());
        assert!(check_term("xterm-256color").is_ok());
        assert!(check_term("").is_err());
        assert!(check_term("xterm\nPATH=/evil").is_err());
        assert!(check_term(&"x".repeat(65)).is_err());
    }
}

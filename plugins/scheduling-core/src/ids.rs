//! Dense id tables: per-node and per-proc data lives in `Vec`s indexed by the kernel's dense ids.

/// Node and proc ids must be below this; larger ids are refused by `define_proc` and ignored by
/// the calls that cannot fail, so a stray id cannot make an algorithm allocate without bound.
pub const MAX_ID: u32 = 1 << 20;

/// The entry of `table` for `id`, growing the table with defaults; `None` if `id >= MAX_ID`.
pub(crate) fn entry<T: Default>(table: &mut Vec<T>, id: u32) -> Option<&mut T> {
    if id >= MAX_ID {
        return None;
    }
    let i = id as usize;
    if table.len() <= i {
        table.resize_with(i + 1, T::default);
    }
    table.get_mut(i)
}

/// The error of `define_proc` for an id at or above [`MAX_ID`].
pub(crate) fn too_large(proc: u32) -> String {
    format!("proc id {proc} is too large (ids must be below {MAX_ID})")
}

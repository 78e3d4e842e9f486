//! Buffers the Windows kernel fills with its structures (the process list, the TCP tables, a
//! command line), and reading structures back from them only where they lie wholly inside.

/// A buffer of at least some bytes, aligned for the kernel's structures (8 bytes).
pub struct Buffer(Vec<u64>);

impl Buffer {
    pub fn new(bytes: usize) -> Buffer {
        Buffer(vec![0u64; bytes.div_ceil(8)])
    }

    /// Where the kernel writes.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }

    /// Its first `len` bytes (all of it at most).
    pub fn bytes(&self, len: usize) -> &[u8] {
        let len = len.min(self.0.len() * 8);
        // SAFETY: the vector holds `self.0.len() * 8` initialised bytes, `len` at most of
        // them are viewed, and u8 has no alignment.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), len) }
    }
}

/// A `T` read from `bytes` at `at`, when it lies wholly inside. `T` is one of the kernel's
/// plain C structures (integers and pointers: every bit pattern is a value of it).
pub fn read_at<T: Copy>(bytes: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(size_of::<T>())?;
    let inside = bytes.get(at..end)?;
    // SAFETY: `inside` holds size_of::<T>() bytes; T is a plain C structure, read unaligned.
    Some(unsafe { std::ptr::read_unaligned(inside.as_ptr().cast::<T>()) })
}

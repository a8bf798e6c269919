//! Keys as etcd's benchmark tool makes them, and the random numbers that pick them.
//!
//! etcd writes the key index as a zig-zag varint (Go's `binary.PutVarint`) at the start of a
//! zeroed `--key-size` buffer, so keys are binary and all exactly `--key-size` bytes long;
//! we do the same so both servers store byte-identical keys.

/// Bytes the zig-zag varint of `v` takes.
pub fn varint_len(v: i64) -> usize {
    let mut u = zigzag(v);
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes the key for index `index` into `buf` (zeroing the rest), as etcd's tool does.
///
/// Panics if `buf` is shorter than `varint_len(index)`; callers check the key size against
/// the key space once, up front (see [`check_key_size`]).
pub fn write_key(buf: &mut [u8], index: i64) {
    buf.fill(0);
    let mut u = zigzag(index);
    let mut i = 0;
    while u >= 0x80 {
        buf[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    buf[i] = u as u8;
}

/// The key for `index` in a fresh `key_size` buffer.
pub fn key(key_size: usize, index: i64) -> Vec<u8> {
    let mut k = vec![0; key_size];
    write_key(&mut k, index);
    k
}

/// Refuses a key size too small to hold every index of the key space.
pub fn check_key_size(key_size: usize, key_space_size: u64) -> anyhow::Result<()> {
    anyhow::ensure!(key_space_size > 0, "expected positive --key-space-size");
    let need = varint_len(key_space_size as i64 - 1);
    anyhow::ensure!(
        key_size >= need,
        "--key-size {key_size} cannot hold {key_space_size} distinct keys (needs {need} bytes)"
    );
    Ok(())
}

/// SplitMix64: tiny, fast, good enough to spread keys; seeded per client so runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0); the modulo bias is irrelevant at benchmark sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random printable bytes, like etcd's `RandString` values.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| b'a' + (self.below(26) as u8)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_go_put_varint() {
        // Go: binary.PutVarint(buf, 1) -> [2]; 64 -> [0x80, 0x01]; -1 -> [1].
        assert_eq!(key(4, 1), vec![2, 0, 0, 0]);
        assert_eq!(key(4, 64), vec![0x80, 0x01, 0, 0]);
        assert_eq!(key(2, -1), vec![1, 0]);
        assert_eq!(varint_len(63), 1);
        assert_eq!(varint_len(64), 2);
    }

    #[test]
    fn key_size_must_hold_the_key_space() {
        assert!(check_key_size(8, 1_000_000).is_ok());
        assert!(check_key_size(1, 64).is_ok());
        assert!(check_key_size(1, 65).is_err());
    }
}

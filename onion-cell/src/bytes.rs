//! Byte-level codec: a bounds-checked [`Reader`] over untrusted input and a [`Writer`] for output.
//!
//! Every parser in this crate goes through [`Reader`], which never panics: each `take_*`
//! returns [`DecodeError::Truncated`] when the input is too short. Nested length-prefixed
//! structures are read with [`Reader::take_reader`], and [`Reader::should_be_exhausted`]
//! rejects trailing bytes where a format forbids them.

use thiserror::Error;

/// Why bytes from the network could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the structure did.
    #[error("truncated input: needed {needed} more byte(s)")]
    Truncated {
        /// How many more bytes were needed at the point of failure (at least).
        needed: usize,
    },
    /// Bytes remained after a structure that must fill its container exactly.
    #[error("{0} unexpected trailing byte(s)")]
    ExtraBytes(usize),
    /// A length field is inconsistent with the format or its container.
    #[error("bad length for {what}: {len}")]
    BadLength {
        /// The field or structure whose length is wrong.
        what: &'static str,
        /// The offending length.
        len: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid value for {0}")]
    BadValue(&'static str),
}

/// Result of decoding.
pub type DecodeResult<T> = Result<T, DecodeError>;

/// Why a structure could not be encoded (caller error, never a peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded form does not fit the space the format gives it.
    #[error("{what} too long: {len} bytes, at most {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A value cannot be represented on the wire.
    #[error("cannot encode {0}")]
    BadValue(&'static str),
}

/// Result of encoding.
pub type EncodeResult<T> = Result<T, EncodeError>;

/// A cursor over untrusted bytes. All reads are bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Reader<'a> {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, off: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.off)
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.off
    }

    /// The unconsumed bytes, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf.get(self.off..).unwrap_or(&[])
    }

    /// Take exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self
            .off
            .checked_add(n)
            .ok_or(DecodeError::Truncated { needed: n })?;
        match self.buf.get(self.off..end) {
            Some(s) => {
                self.off = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                needed: end - self.buf.len(),
            }),
        }
    }

    /// Take everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let rest = self.peek_rest();
        self.off = self.buf.len();
        rest
    }

    /// Take a fixed-size array.
    pub fn take_array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Take one byte.
    pub fn take_u8(&mut self) -> DecodeResult<u8> {
        Ok(u8::from_be_bytes(self.take_array()?))
    }

    /// Take a big-endian `u16`.
    pub fn take_u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    /// Take a big-endian `u32`.
    pub fn take_u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// Take a big-endian `u64`.
    pub fn take_u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// Take `n` bytes and return a reader over just them (for length-prefixed fields).
    pub fn take_reader(&mut self, n: usize) -> DecodeResult<Reader<'a>> {
        Ok(Reader::new(self.take(n)?))
    }

    /// Take bytes up to (not including) the first `terminator`, and consume the terminator.
    pub fn take_until(&mut self, terminator: u8) -> DecodeResult<&'a [u8]> {
        let rest = self.peek_rest();
        let pos = rest
            .iter()
            .position(|&b| b == terminator)
            .ok_or(DecodeError::Truncated { needed: 1 })?;
        let s = self.take(pos)?;
        self.take(1)?;
        Ok(s)
    }

    /// Decode a [`Readable`] value.
    pub fn extract<T: Readable>(&mut self) -> DecodeResult<T> {
        T::take_from(self)
    }

    /// Fail with [`DecodeError::ExtraBytes`] if anything is left.
    pub fn should_be_exhausted(&self) -> DecodeResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::ExtraBytes(n)),
        }
    }
}

/// A type that can be decoded from a [`Reader`].
pub trait Readable: Sized {
    /// Decode one value, consuming exactly its bytes.
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self>;

    /// Decode a value that must fill `bytes` exactly.
    fn from_bytes(bytes: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(bytes);
        let v = Self::take_from(&mut r)?;
        r.should_be_exhausted()?;
        Ok(v)
    }
}

/// A sink for encoded bytes.
pub trait Writer {
    /// Append bytes.
    fn write_all(&mut self, b: &[u8]);

    /// Append one byte.
    fn write_u8(&mut self, v: u8) {
        self.write_all(&[v]);
    }
    /// Append a big-endian `u16`.
    fn write_u16(&mut self, v: u16) {
        self.write_all(&v.to_be_bytes());
    }
    /// Append a big-endian `u32`.
    fn write_u32(&mut self, v: u32) {
        self.write_all(&v.to_be_bytes());
    }
    /// Append a big-endian `u64`.
    fn write_u64(&mut self, v: u64) {
        self.write_all(&v.to_be_bytes());
    }
    /// Append `n` zero bytes.
    fn write_zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.write_u8(0);
        }
    }
    /// Encode a [`Writeable`] value.
    fn write<T: Writeable + ?Sized>(&mut self, v: &T) -> EncodeResult<()> {
        v.write_onto(self)
    }
}

impl Writer for Vec<u8> {
    fn write_all(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn write_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

/// A type that can be encoded onto a [`Writer`].
pub trait Writeable {
    /// Append this value's encoding.
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()>;

    /// Encode into a fresh vector.
    fn to_bytes(&self) -> EncodeResult<Vec<u8>> {
        let mut v = Vec::new();
        self.write_onto(&mut v)?;
        Ok(v)
    }
}

/// Write `body` preceded by its length as a `u8`, failing if it does not fit.
pub fn write_u8_prefixed<W: Writer + ?Sized>(
    w: &mut W,
    what: &'static str,
    body: &[u8],
) -> EncodeResult<()> {
    let len = u8::try_from(body.len()).map_err(|_| EncodeError::TooLong {
        what,
        len: body.len(),
        max: u8::MAX as usize,
    })?;
    w.write_u8(len);
    w.write_all(body);
    Ok(())
}

/// Write `body` preceded by its length as a big-endian `u16`, failing if it does not fit.
pub fn write_u16_prefixed<W: Writer + ?Sized>(
    w: &mut W,
    what: &'static str,
    body: &[u8],
) -> EncodeResult<()> {
    let len = u16::try_from(body.len()).map_err(|_| EncodeError::TooLong {
        what,
        len: body.len(),
        max: u16::MAX as usize,
    })?;
    w.write_u16(len);
    w.write_all(body);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        assert_eq!(r.take_u16(), Ok(0x0102));
        assert_eq!(r.take_u32(), Err(DecodeError::Truncated { needed: 1 }));
        // A failed take consumes nothing.
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.take_u8(), Ok(3));
        assert_eq!(r.should_be_exhausted(), Err(DecodeError::ExtraBytes(2)));
        assert_eq!(
            r.take(usize::MAX),
            Err(DecodeError::Truncated { needed: usize::MAX })
        );
        assert_eq!(r.take_rest(), &[4, 5]);
        assert_eq!(r.should_be_exhausted(), Ok(()));
    }

    #[test]
    fn take_until_terminator() {
        let mut r = Reader::new(b"abc\0de");
        assert_eq!(r.take_until(0), Ok(&b"abc"[..]));
        assert_eq!(r.take_until(0), Err(DecodeError::Truncated { needed: 1 }));
        assert_eq!(r.take_rest(), b"de");
    }

    #[test]
    fn prefixed_writes() {
        let mut v = Vec::new();
        assert!(write_u8_prefixed(&mut v, "x", &[9; 3]).is_ok());
        assert_eq!(v, [3, 9, 9, 9]);
        let err = write_u8_prefixed(&mut v, "x", &[0; 256]);
        assert!(matches!(err, Err(EncodeError::TooLong { len: 256, .. })));
    }
}

//! The byte framings of `wit/plugin.wit` (see its header comment): Latin-1
//! text <-> bytes, reading a `record-batch`, writing an `index-list`.
//!
//! Pure Rust with no WIT types, so `cargo test` checks it natively. Every count
//! and length is checked against what is left before anything is read or
//! allocated: a bad framing is an `Err`, never a panic or a huge allocation.

use std::collections::HashSet;

const MAGIC: &[u8; 4] = b"DFR1";
const HAS_KEYS: u8 = 1;
const HAS_TIMESTAMPS: u8 = 2;
const HAS_METADATA: u8 = 4;
const HAS_LINES: u8 = 8;

/// The bytes a Latin-1 text carries: one byte per code point, none above U+00FF.
pub fn latin1_bytes(text: &str) -> Result<Vec<u8>, String> {
    if text.is_ascii() {
        return Ok(text.as_bytes().to_vec()); // the common case: a plain copy
    }
    text.chars()
        .map(|c| {
            u8::try_from(c)
                .map_err(|_| format!("code point U+{:04X} is above U+00FF", u32::from(c)))
        })
        .collect()
}

/// Bytes as Latin-1 text (byte `b` becomes the code point U+00bb).
pub fn latin1_text(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

/// The values of a `record-batch`, in order, after checking every column.
///
/// A filter reads only the values, but the whole framing is still validated
/// (keys, timestamps, metadata, trailing bytes): a conforming reader refuses
/// what the contract forbids rather than guessing.
pub fn batch_values(frame: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut r = Reader { rest: frame };
    if r.take(4, "magic")? != MAGIC {
        return Err("it does not start with the magic DFR1".into());
    }
    let count = r.u32("count")? as usize;
    let flags = r.take(1, "flags")?[0];
    if flags & !(HAS_KEYS | HAS_TIMESTAMPS | HAS_METADATA | HAS_LINES) != 0 {
        return Err(format!(
            "flags {flags:#04x} set bits other than 0, 1, 2 and 3"
        ));
    }
    if flags & HAS_METADATA != 0 && flags & HAS_LINES != 0 {
        return Err("flags set both the metadata and the line column".into());
    }
    r.column(count, 8, "positions")?; // offsets: a filter answers with indices, not offsets
    let value_lengths = r.column(count, 4, "value lengths")?;
    let values = r.slices(value_lengths, "values")?;
    if flags & HAS_KEYS != 0 {
        let mut lengths = Vec::with_capacity(count);
        for raw in r.column(count, 4, "key lengths")?.chunks_exact(4) {
            match i32::from_le_bytes(raw.try_into().unwrap()) {
                -1 => lengths.push(0), // no key: takes no bytes
                n if n >= 0 => lengths.push(n as u32),
                n => return Err(format!("key length {n} is neither -1 nor >= 0")),
            }
        }
        r.take_total(lengths.iter().map(|&n| n as usize), "keys")?;
    }
    if flags & HAS_TIMESTAMPS != 0 {
        let present = r.column(count, 1, "has-timestamp flags")?;
        let stamps = r.column(count, 8, "timestamps")?;
        for (flag, stamp) in present.iter().zip(stamps.chunks_exact(8)) {
            match flag {
                1 => {}
                0 if stamp == [0; 8] => {}
                0 => return Err("an absent timestamp is not 0".into()),
                f => return Err(format!("has-timestamp flag {f} is neither 0 nor 1")),
            }
        }
    }
    if flags & HAS_METADATA != 0 {
        let entries = r.column(count, 4, "metadata entry counts")?;
        let total = sum(u32s(entries).map(|n| n as usize), "metadata entry counts")?;
        let names_len = r.column(total, 4, "metadata name lengths")?;
        let texts_len = r.column(total, 4, "metadata text lengths")?;
        let names = r.slices(names_len, "metadata names")?;
        let texts = r.slices(texts_len, "metadata texts")?;
        for text in names.iter().chain(&texts) {
            std::str::from_utf8(text)
                .map_err(|e| format!("a metadata name or text is not UTF-8: {e}"))?;
        }
        let mut start = 0;
        for n in u32s(entries).map(|n| n as usize) {
            let record = &names[start..start + n]; // in range: `total` is their sum
            if record.iter().collect::<HashSet<_>>().len() != n {
                return Err("a record repeats a metadata name".into());
            }
            start += n;
        }
    }
    if flags & HAS_LINES != 0 {
        let file_len = r.u32("file name length")? as usize;
        std::str::from_utf8(r.take(file_len, "file name")?)
            .map_err(|e| format!("the file name is not UTF-8: {e}"))?;
        r.column(count, 8, "line numbers")?;
    }
    if !r.rest.is_empty() {
        return Err(format!("{} bytes follow the last column", r.rest.len()));
    }
    Ok(values)
}

/// An `index-list`: the count, then each index, all little-endian u32.
pub fn index_list(indices: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * indices.len());
    out.extend_from_slice(&(indices.len() as u32).to_le_bytes());
    for index in indices {
        out.extend_from_slice(&index.to_le_bytes());
    }
    out
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!(
                "{what} needs {n} bytes but {} are left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    /// `count` fixed-width items; the multiplication is checked, so a forged
    /// count fails here instead of wrapping around.
    fn column(&mut self, count: usize, width: usize, what: &str) -> Result<&'a [u8], String> {
        let n = count
            .checked_mul(width)
            .ok_or_else(|| format!("{what}: {count} items overflow"))?;
        self.take(n, what)
    }

    /// Consecutive byte strings whose u32 lengths are in `lengths`.
    fn slices(&mut self, lengths: &[u8], what: &str) -> Result<Vec<&'a [u8]>, String> {
        let mut bytes = self.take_total(u32s(lengths).map(|n| n as usize), what)?;
        Ok(u32s(lengths)
            .map(|n| {
                let (head, tail) = bytes.split_at(n as usize); // in range: checked by take_total
                bytes = tail;
                head
            })
            .collect())
    }

    fn take_total(
        &mut self,
        lengths: impl Iterator<Item = usize>,
        what: &str,
    ) -> Result<&'a [u8], String> {
        let total = sum(lengths, what)?;
        self.take(total, what)
    }
}

fn u32s(column: &[u8]) -> impl Iterator<Item = u32> + '_ {
    column
        .chunks_exact(4)
        .map(|raw| u32::from_le_bytes(raw.try_into().unwrap()))
}

fn sum(mut lengths: impl Iterator<Item = usize>, what: &str) -> Result<usize, String> {
    lengths
        .try_fold(0usize, usize::checked_add)
        .ok_or_else(|| format!("{what}: the lengths overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of wit/plugin.wit, byte for byte.
    const WORKED_EXAMPLE: &[u8] = &[
        0x44, 0x46, 0x52, 0x31, 2, 0, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2,
        0, 0, 0, 0, 0, 0, 0, 0x68, 0x69, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x6b,
    ];

    #[test]
    fn reads_the_worked_example() {
        assert_eq!(batch_values(WORKED_EXAMPLE), Ok(vec![&b"hi"[..], &b""[..]]));
    }

    #[test]
    fn every_truncation_is_refused() {
        for end in 0..WORKED_EXAMPLE.len() {
            assert!(
                batch_values(&WORKED_EXAMPLE[..end]).is_err(),
                "accepted {end} bytes"
            );
        }
    }

    #[test]
    fn trailing_bytes_unknown_flags_and_bad_key_lengths_are_refused() {
        let mut trailing = WORKED_EXAMPLE.to_vec();
        trailing.push(0);
        assert!(
            batch_values(&trailing)
                .unwrap_err()
                .contains("follow the last column")
        );
        let mut flags = WORKED_EXAMPLE.to_vec();
        flags[8] = 0x11;
        assert!(batch_values(&flags).unwrap_err().contains("flags"));
        let mut key = WORKED_EXAMPLE.to_vec();
        key[39..43].copy_from_slice(&(-2i32).to_le_bytes());
        assert!(batch_values(&key).unwrap_err().contains("key length -2"));
    }

    #[test]
    fn a_forged_count_fails_without_allocating() {
        let mut frame = b"DFR1".to_vec();
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        frame.push(0);
        assert!(batch_values(&frame).unwrap_err().contains("positions"));
    }

    #[test]
    fn metadata_is_checked() {
        // one record, value "v", metadata {a: x, a: y}: a repeated name.
        let mut frame = b"DFR1\x01\x00\x00\x00\x04".to_vec();
        frame.extend_from_slice(&[0; 8]); // position 0
        frame.extend_from_slice(&[1, 0, 0, 0, b'v']);
        frame.extend_from_slice(&[2, 0, 0, 0]); // two entries
        frame.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]); // name lengths
        frame.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]); // text lengths
        frame.extend_from_slice(b"aaxy");
        assert!(batch_values(&frame).unwrap_err().contains("repeats"));
        let last = frame.len() - 3;
        frame[last] = b'b'; // names "a", "b"
        assert_eq!(batch_values(&frame), Ok(vec![&b"v"[..]]));
        frame[last] = 0xff; // not UTF-8
        assert!(batch_values(&frame).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_line_column_is_checked() {
        // one record, value "v", line column: file "f.jsonl", line 3.
        let mut frame = b"DFR1\x01\x00\x00\x00\x08".to_vec();
        frame.extend_from_slice(&[0; 8]); // position 0
        frame.extend_from_slice(&[1, 0, 0, 0, b'v']);
        frame.extend_from_slice(&[7, 0, 0, 0]);
        frame.extend_from_slice(b"f.jsonl");
        frame.extend_from_slice(&3i64.to_le_bytes());
        assert_eq!(batch_values(&frame), Ok(vec![&b"v"[..]]));
        for end in 14..frame.len() {
            assert!(batch_values(&frame[..end]).is_err(), "accepted {end} bytes");
        }
        let mut both = frame.clone();
        both[8] = 0x0c;
        assert!(batch_values(&both).unwrap_err().contains("both"));
        frame[26] = 0xff; // the file name is not UTF-8
        assert!(batch_values(&frame).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn latin1_round_trips_every_byte_and_refuses_wider_text() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(latin1_bytes(&latin1_text(&all)), Ok(all));
        assert!(latin1_bytes("\u{0100}").unwrap_err().contains("U+0100"));
    }

    #[test]
    fn index_list_is_count_then_indices() {
        assert_eq!(index_list(&[1, 256]), [2, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0]);
    }
}

//! GPT-2's byte-level alphabet (`bytes_to_unicode`), in which byte-level BPE vocabularies spell
//! bytes: the printable bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` stand for themselves, the
//! others, in increasing order, for U+0100 onwards. The `tokenizers` crate's `ByteLevel` steps
//! apply the same table, privately; this is the crate's one copy of it.

/// The character that spells each byte (built once).
pub(crate) fn byte_spelling() -> &'static [char; 256] {
    static TABLE: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn build_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[byte as usize] = if printable {
            char::from(byte)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\u{FFFD}')
        };
    }
    table
}

/// The byte that character `c` spells, `None` for a character outside the alphabet.
pub(crate) fn byte_of(c: char) -> Option<u8> {
    let table = byte_spelling();
    table.iter().position(|&x| x == c).map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_level_table_is_gpt2s() {
        let alphabet = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet();
        let mut bytes: Vec<u8> = alphabet.iter().map(|&c| byte_of(c).unwrap()).collect();
        bytes.sort_unstable();
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('a'), Some(b'a'));
        assert_eq!(byte_of('東'), None);
    }

    #[test]
    fn byte_spelling_is_gpt2s() {
        let table = byte_spelling();
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[b' ' as usize], '\u{120}'); // Ġ
        assert_eq!(table[b'\n' as usize], '\u{10A}'); // Ċ
        assert_eq!(table[0xAD], '\u{143}');
        assert!((0..=255u8).all(|b| byte_of(table[b as usize]) == Some(b)));
    }
}
